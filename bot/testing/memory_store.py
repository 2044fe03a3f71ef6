"""An in-memory conversation store, for testing channels, actions and flows without a database.

:class:`MemoryStore` implements every store protocol of ``bot.ports`` with the semantics of the
SQL store (``bot.store.SqlStore``), and the store's contract tests run against both: a stale
version raises ``ConcurrentUpdateError``, a claimed platform message id raises
``DuplicateMessageError``, a turn that cannot be stored as JSON raises ``StoreError`` before
anything is written, outbox entries are leased by ``claim_delivery``. Everything is kept as
JSON, as in a database, so a caller never shares a record with the store.

Several stores may share one :class:`MemoryDatabase`, as several processes share a database:
each sees the others' writes, and the version check decides who wins::

    database = MemoryDatabase()
    first, second = MemoryStore(database), MemoryStore(database)

Nothing survives the process; use ``bot.store.open_store("sqlite://")`` where the SQL itself
is under test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bot import constants
from bot.errors import ConcurrentUpdateError, DuplicateMessageError, StoreError
from bot.events import BotMessage, Event, UserMessage, event_from_dict
from bot.ports import ActionResult, PendingDelivery, RecordedAction, ScheduledJob, StoredEvent
from bot.state import ConversationState

__all__ = ["MemoryDatabase", "MemoryStore"]


@dataclasses.dataclass
class _Conversation:
    state: str
    """The state's JSON as last saved, its version included."""
    version: int
    last_active_at: float
    turns: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    """Each saved turn: the seq of its first event, their count, the events as a JSON array."""
    last_seq: int = 0


@dataclasses.dataclass
class _Entry:
    conversation_id: str
    channel: str
    message: str
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None


@dataclasses.dataclass
class MemoryDatabase:
    """What a :class:`MemoryStore` keeps; share one between stores to play several processes."""

    conversations: dict[str, _Conversation] = dataclasses.field(default_factory=dict)
    processed: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    """Claimed (channel, platform message id) → the conversation that claimed it."""
    journal: dict[tuple[str, str], dict[int, tuple[str, str]]] = dataclasses.field(
        default_factory=dict
    )
    """Message key → step → (conversation, the recorded action's JSON): the action journal."""
    outbox: dict[int, _Entry] = dataclasses.field(default_factory=dict)
    values: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    jobs: dict[str, ScheduledJob] = dataclasses.field(default_factory=dict)
    next_outbox_id: int = 1

    def outbox_conversations(self) -> list[str]:
        """The conversation of every outbox entry, whatever its status, oldest first."""
        return [entry.conversation_id for _, entry in sorted(self.outbox.items())]


class MemoryStore:
    """A :class:`~bot.ports.ConversationStore` in a dict: the SQL store's behaviour, no database.

    Each call first yields to the event loop once, as a database call would, so that tests of
    concurrent turns interleave them; the check and the write that follow happen together.
    """

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self._closed = False

    # --- conversations ------------------------------------------------------------------

    async def load(self, conversation_id: str) -> ConversationState | None:
        """The latest saved state, parsed afresh (the caller's own copy); None when new."""
        await self._enter()
        stored = self.database.conversations.get(conversation_id)
        if stored is None:
            return None
        try:
            return ConversationState.from_dict(orjson.loads(stored.state))
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"conversation {conversation_id!r}: stored state is unreadable: {exc}"
            ) from exc

    async def save(
        self,
        state: ConversationState,
        events: Sequence[Event],
        *,
        outbox: Sequence[BotMessage] = (),
        outbox_due_at: float | None = None,
        message_key: tuple[str, str] | None = None,
        journaled: bool = False,
    ) -> list[int]:
        """Persist a turn atomically; bump ``state.version``; return the outbox ids."""
        cid, now = state.conversation_id, time.time()
        if message_key is not None and not (
            isinstance(message_key, tuple)
            and len(message_key) == 2
            and all(isinstance(part, str) for part in message_key)
        ):
            raise StoreError(
                f"conversation {cid!r}: message_key must be (channel, message id) strings"
            )
        try:
            state_text = _dumps({**vars(state), "version": state.version + 1})
            events_text = _dumps([event.to_dict() for event in events])
            messages = [_dumps(message.to_dict()) for message in outbox]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"conversation {cid!r}: cannot store this turn: {exc}") from exc
        await self._enter()
        db = self.database
        if message_key in db.processed:
            channel, message_id = message_key
            raise DuplicateMessageError(
                f"message {message_id!r} on {channel!r} was already processed"
            )
        stored = db.conversations.get(cid)
        version = stored.version if stored is not None else 0
        if state.version != version:
            raise ConcurrentUpdateError(
                f"conversation {cid!r} is at version {version}, not {state.version}"
            )
        if stored is None:
            stored = db.conversations[cid] = _Conversation(state_text, 0, 0.0)
        if message_key is not None:
            db.processed[message_key] = cid
            if journaled:
                db.journal.pop(message_key, None)
        if events:
            stored.turns.append((stored.last_seq + 1, len(events), events_text))
            stored.last_seq += len(events)
        stored.state, stored.version = state_text, version + 1
        stored.last_active_at = state.last_active_at or now
        due = now if outbox_due_at is None else outbox_due_at
        ids = []
        for message in messages:
            ids.append(db.next_outbox_id)
            db.outbox[db.next_outbox_id] = _Entry(cid, state.channel, message, next_attempt_at=due)
            db.next_outbox_id += 1
        state.version += 1
        return ids

    async def is_processed(self, channel: str, message_id: str) -> bool:
        """True when ``message_id`` on ``channel`` was claimed by a saved turn."""
        await self._enter()
        return (channel, message_id) in self.database.processed

    async def recorded_actions(self, channel: str, message_id: str) -> list[RecordedAction] | None:
        """What the turns of message ``(channel, message_id)`` recorded and did not save;
        None once its turn was saved."""
        await self._enter()
        if (channel, message_id) in self.database.processed:
            return None
        steps = self.database.journal.get((channel, message_id), {})
        recorded = []
        for step, (_, text) in sorted(steps.items()):
            data = orjson.loads(text)
            result = ActionResult(events=data["events"], responses=data["responses"])
            recorded.append(RecordedAction(step=step, name=data["name"], result=result))
        return recorded

    async def record_action(
        self, channel: str, message_id: str, *, conversation_id: str, action: RecordedAction
    ) -> None:
        """Write ``action`` now, replacing what an earlier attempt recorded at its step."""
        result = action.result
        try:
            text = _dumps(
                {"name": action.name, "events": result.events, "responses": result.responses}
            )
        except TypeError as exc:
            raise StoreError(f"action {action.name!r}: its result is not JSON: {exc}") from exc
        await self._enter()
        steps = self.database.journal.setdefault((channel, message_id), {})
        steps[action.step] = (conversation_id, text)

    async def events(
        self, conversation_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """The log from ``seq > after``, oldest first, at most ``limit`` events."""
        await self._enter()
        stored = self.database.conversations.get(conversation_id)
        found: list[StoredEvent] = []
        for first, count, data in stored.turns if stored is not None else ():
            if first + count <= after + 1:
                continue
            for offset, event in enumerate(_parse_turn(conversation_id, first, data)):
                if first + offset > after:
                    found.append(StoredEvent(seq=first + offset, event=event))
                if limit is not None and len(found) >= limit:
                    return found
        return found

    async def turn_events(self, conversation_id: str, message_id: str) -> list[Event]:
        """The events saved in one turn with the customer's message ``message_id``; [] if gone."""
        await self._enter()
        stored = self.database.conversations.get(conversation_id)
        for first, _, data in reversed(stored.turns if stored is not None else []):
            events = _parse_turn(conversation_id, first, data)
            if any(isinstance(e, UserMessage) and e.message_id == message_id for e in events):
                return events
        return []

    async def delete_conversations_before(self, cutoff: float) -> int:
        """Delete conversations last active before ``cutoff`` with everything they own."""
        await self._enter()
        db = self.database
        gone = {cid for cid, c in db.conversations.items() if c.last_active_at < cutoff}
        for cid in gone:
            del db.conversations[cid]
        db.processed = {key: cid for key, cid in db.processed.items() if cid not in gone}
        for key, steps in list(db.journal.items()):
            kept = {step: row for step, row in steps.items() if row[0] not in gone}
            if kept:
                db.journal[key] = kept
            else:
                del db.journal[key]
        db.outbox = {i: e for i, e in db.outbox.items() if e.conversation_id not in gone}
        db.jobs = {i: j for i, j in db.jobs.items() if j.conversation_id not in gone}
        db.values = {
            (namespace, key): value
            for (namespace, key), value in db.values.items()
            if not _owned(namespace, key, value, gone)
        }
        return len(gone)

    # --- outbox -------------------------------------------------------------------------

    async def pending_deliveries(self, *, now: float, limit: int = 100) -> list[PendingDelivery]:
        """Pending messages due by ``now``, oldest first."""
        await self._enter()
        due: list[PendingDelivery] = []
        for delivery_id, entry in sorted(self.database.outbox.items()):
            if len(due) >= limit:
                break
            if entry.status == "pending" and entry.next_attempt_at <= now:
                message = event_from_dict(orjson.loads(entry.message))
                assert isinstance(message, BotMessage)  # only save() writes the outbox
                due.append(
                    PendingDelivery(
                        id=delivery_id,
                        channel=entry.channel,
                        message=message,
                        attempts=entry.attempts,
                    )
                )
        return due

    async def claim_delivery(self, delivery_id: int, *, now: float, until: float) -> bool:
        """Take a due pending entry for one attempt; False when another sender has it."""
        await self._enter()
        entry = self.database.outbox.get(delivery_id)
        if entry is None or entry.status != "pending" or entry.next_attempt_at > now:
            return False
        entry.next_attempt_at = until
        return True

    async def mark_delivered(self, *delivery_ids: int) -> None:
        """Record that the channel delivered these messages; they leave the pending set."""
        for entry in await self._entries(delivery_ids):
            entry.status, entry.attempts = "delivered", entry.attempts + 1

    async def mark_failed(self, delivery_id: int, *, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up for good when None."""
        for entry in await self._entries((delivery_id,)):
            entry.attempts += 1
            entry.last_error = error
            if retry_at is None:
                entry.status = "failed"
            else:
                entry.next_attempt_at = retry_at

    async def _entries(self, delivery_ids: Sequence[int]) -> list[_Entry]:
        """The entries of ``delivery_ids``; ``StoreError`` (nothing changed) if one is unknown."""
        await self._enter()
        outbox = self.database.outbox
        if any(i not in outbox for i in delivery_ids):
            raise StoreError(f"no outbox entry {', '.join(map(str, delivery_ids))}")
        return [outbox[i] for i in set(delivery_ids)]

    # --- scheduled jobs -----------------------------------------------------------------

    async def save_job(self, job: ScheduledJob) -> None:
        """Store ``job``, replacing the one with the same id."""
        try:
            data = orjson.loads(_dumps(job.data))
        except TypeError as exc:
            raise StoreError(f"job {job.id!r}: its data is not JSON: {exc}") from exc
        await self._enter()
        self.database.jobs[job.id] = dataclasses.replace(job, data=data)

    async def delete_job(self, job_id: str, *, run_at: float | None = None) -> bool:
        """Delete the job; with ``run_at``, only while it is due then or earlier."""
        await self._enter()
        job = self.database.jobs.get(job_id)
        if job is None or (run_at is not None and job.run_at > run_at):
            return False
        del self.database.jobs[job_id]
        return True

    async def jobs(
        self,
        *,
        kind: str | None = None,
        conversation_id: str | None = None,
        due_before: float | None = None,
    ) -> list[ScheduledJob]:
        """The stored jobs, soonest first, as far as the filters given keep them."""
        await self._enter()
        return [
            dataclasses.replace(job, data=orjson.loads(_dumps(job.data)))
            for job in sorted(self.database.jobs.values(), key=lambda j: (j.run_at, j.id))
            if (kind is None or job.kind == kind)
            and (conversation_id is None or job.conversation_id == conversation_id)
            and (due_before is None or job.run_at < due_before)
        ]

    # --- small values -------------------------------------------------------------------

    async def get_value(self, namespace: str, key: str) -> str | None:
        """A value stored with :meth:`put_value`, or None."""
        await self._enter()
        return self.database.values.get((namespace, key))

    async def put_value(self, namespace: str, key: str, value: str) -> None:
        """Store ``value`` under ``(namespace, key)``, replacing any previous one."""
        if not all(isinstance(part, str) for part in (namespace, key, value)):
            raise StoreError(f"namespace, key and value must be strings: {namespace!r}/{key!r}")
        await self._enter()
        self.database.values[(namespace, key)] = value

    async def increment(self, namespace: str, key: str) -> int:
        """Add one to the counter under ``(namespace, key)``; the new value."""
        await self._enter()
        value = int(self.database.values.get((namespace, key), "0")) + 1
        self.database.values[(namespace, key)] = str(value)
        return value

    async def update_value(self, namespace: str, key: str, value: str) -> bool:
        """Replace the value under ``(namespace, key)`` only if there is one."""
        if not isinstance(value, str):
            raise StoreError(f"value must be a string: {namespace!r}/{key!r}")
        await self._enter()
        if (namespace, key) not in self.database.values:
            return False
        self.database.values[(namespace, key)] = value
        return True

    async def delete_value(self, namespace: str, key: str) -> None:
        """Remove the value under ``(namespace, key)``, if any."""
        await self._enter()
        self.database.values.pop((namespace, key), None)

    async def values(self, namespace: str) -> dict[str, str]:
        """Every key of ``namespace`` with its value."""
        await self._enter()
        return {k: v for (n, k), v in self.database.values.items() if n == namespace}

    # --- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Refuse further calls; the data stays in :attr:`database` for another store."""
        self._closed = True

    async def _enter(self) -> None:
        if self._closed:
            raise StoreError("the conversation store is closed")
        await asyncio.sleep(0)  # a call made before close() still completes, as queued writes do


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _parse_turn(conversation_id: str, first: int, data: str) -> list[Event]:
    try:
        return [event_from_dict(item) for item in orjson.loads(data)]
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(
            f"conversation {conversation_id!r}: event {first} is unreadable: {exc}"
        ) from exc


def _owned(namespace: str, key: str, value: str, conversations: set[str]) -> bool:
    """True for a small value kept for one of ``conversations`` (retention deletes it)."""
    if namespace in constants.CONVERSATION_NAMESPACES:
        return key in conversations
    if namespace in constants.CONVERSATION_VALUE_NAMESPACES:
        return value in conversations
    if namespace == constants.FILE_NAMESPACE:  # a stored file names its owner (bot.files)
        try:
            owner = orjson.loads(value).get("owner")
        except (ValueError, AttributeError):
            return False
        return owner in conversations
    return False
