"""``SqlStore``: conversations, their event log, the outbox and small values, on SQLAlchemy."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    cast,
    delete,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bot import constants
from bot.conflicts import ConflictBackoff
from bot.errors import (
    ConcurrentUpdateError,
    DatabaseUnavailableError,
    DuplicateMessageError,
    KefuError,
    StoreError,
)
from bot.events import BotMessage, Event, UserMessage, event_from_dict
from bot.ports import ActionResult, PendingDelivery, RecordedAction, ScheduledJob, StoredEvent
from bot.state import ConversationState
from bot.store.engines import Database, PoolOptions, database_url, open_database
from bot.store.pg_connections import is_connection_error
from bot.store.schema import Tables

__all__ = ["SqlStore", "open_store"]

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10_000
"""Conversations whose latest state is kept in memory; beyond this the least recent go."""
MAX_BATCH = 500
"""Writes committed together at most; bounds a transaction's size and a write's latency."""
_DELETE_CHUNK = 500
_SCHEMA_LOCK_KEY = 0x6B656675  # "kefu": the advisory lock held while tables are created
_SCHEMA_RETRY_DEADLINE = 30.0
"""Seconds a store keeps retrying table creation that SQLite refused as locked."""
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,19}")  # index names stay within 63 chars
_PENDING, _DELIVERED, _FAILED = "pending", "delivered", "failed"

_T = TypeVar("_T")
_Work = Callable[[Connection], Any]


class _StateCache:
    """LRU of conversation id → (the state's JSON as last saved, its version), re-parsed on
    every hit."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def get(self, conversation_id: str) -> tuple[str, int] | None:
        entry = self._entries.get(conversation_id)
        if entry is not None:
            self._entries.move_to_end(conversation_id)
        return entry

    def version(self, conversation_id: str) -> int | None:
        """The cached state's version, without counting as a use."""
        entry = self._entries.get(conversation_id)
        return None if entry is None else entry[1]

    def put(self, conversation_id: str, text: str, version: int) -> None:
        if self._size <= 0:
            return
        self._entries[conversation_id] = (text, version)
        self._entries.move_to_end(conversation_id)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def evict(self, conversation_id: str) -> None:
        self._entries.pop(conversation_id, None)


@dataclasses.dataclass(frozen=True)
class _Turn:
    """One ``save``, serialised up front so that bad input fails before anything is queued."""

    conversation_id: str
    channel: str
    sender_id: str
    version: int
    state_text: str
    last_active_at: float
    events_text: str
    """The turn's events as one JSON array."""
    event_count: int
    outbox: list[str]
    message_key: tuple[str, str] | None
    journaled: bool
    """Delete the action journal kept under ``message_key`` in the same write."""
    now: float
    outbox_due_at: float


@dataclasses.dataclass(frozen=True)
class _Record:
    """One action journal record (``record_action``): a batch upserts its records in one
    statement, after its turns, leaving out those whose message a turn of the batch claimed."""

    row: dict[str, Any]


_Payload = _Turn | _Record | _Work
_Outcome = tuple[Any, Exception | None]


@dataclasses.dataclass(frozen=True)
class _Job:
    """A queued write: a turn to save, or other work on the connection, and who waits for it."""

    payload: _Payload
    future: asyncio.Future[Any]


class SqlStore:
    """``ConversationStore`` on SQLite or PostgreSQL, with a state cache and group commit.

    ``group_commit=False`` commits each write in its own transaction (for comparison, and for
    tools that write rarely). ``table_prefix`` names the tables ``<prefix>conversations`` etc.
    ``cache_size=0`` reads every state from the database. ``shared``: other processes write
    to this database too (workers on PostgreSQL), so a cached state serves a load only once
    the conversation's lock found it current (:meth:`check_query`, :meth:`checked`), until the
    lock is released. ``pool`` sizes PostgreSQL's pool. Call :meth:`initialize` (or use
    :func:`open_store`) before use.
    """

    def __init__(
        self,
        url: str = constants.DEFAULT_DATABASE_URL,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        group_commit: bool = True,
        table_prefix: str = "",
        pool: PoolOptions | None = None,
        shared: bool = False,
    ) -> None:
        if table_prefix and not _PREFIX.fullmatch(table_prefix):
            raise StoreError(f"invalid table prefix {table_prefix!r}: use letters, digits and _")
        db_url = database_url(url)
        self._shown_url = db_url.render_as_string(hide_password=True)
        try:
            self._db: Database = open_database(db_url, pool)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use database {self._shown_url!r}: {exc}") from exc
        self._start_wait = pool.start_wait if pool is not None else 0.0
        self._t = t = Tables(table_prefix)
        conv = t.conversations
        self._update_conversation = (
            update(conv)
            .where(conv.c.id == bindparam("b_id"))
            .values(
                state=bindparam("b_state"),
                version=bindparam("b_version"),
                last_seq=bindparam("b_last_seq"),
                last_active_at=bindparam("b_active"),
            )
        )
        self._insert_outbox = t.outbox.insert().returning(
            t.outbox.c.id, sort_by_parameter_order=True
        )
        dialect_insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        upsert = dialect_insert(t.jobs)
        self._upsert_job = upsert.on_conflict_do_update(
            index_elements=["id"],
            set_={c.name: upsert.excluded[c.name] for c in t.jobs.columns if c.name != "id"},
        )
        journal = dialect_insert(t.journal)
        self._upsert_journal = journal.on_conflict_do_update(
            index_elements=["channel", "message_id", "step"],
            set_={"action": journal.excluded.action, "result": journal.excluded.result},
        )
        jobs = t.jobs
        self._delete_job = delete(jobs).where(jobs.c.id == bindparam("job_id"))
        self._delete_due_job = self._delete_job.where(jobs.c.run_at <= bindparam("run_at"))
        self._cache = _StateCache(cache_size)
        self._shared = shared
        self._current: dict[str, int | None] = {}
        """Shared: the stored version (None: no conversation) of each conversation whose lock
        is held now, as found when it was taken and updated by the saves since."""
        self._check_sql = (
            f"SELECT version, CASE WHEN version = $2 THEN NULL ELSE state END AS state"
            f' FROM "{conv.name}" WHERE id = $1'  # quoted: the name as create_all made it
        )
        self._group_commit = group_commit
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def initialize(self) -> None:
        """Create the tables and indexes that are missing; existing data is left alone.

        A server that cannot be reached (restarting, say, while a worker starts) is tried
        again for the pool's ``start_wait`` seconds before start-up fails.
        """
        self._check_open()
        backoff = ConflictBackoff(deadline=_SCHEMA_RETRY_DEADLINE)
        reachable = ConflictBackoff(deadline=self._start_wait)
        while True:
            try:
                await self._db.write(self._create_tables)
                return
            except OperationalError as exc:
                # SQLite answers "database is locked" at once, without its busy timeout, while
                # another process switches a new file to WAL: that process is done soon.
                if "database is locked" in str(exc) and await backoff.wait():
                    continue
                if await self._unreachable_for_now(exc, reachable):
                    continue
                raise StoreError(f"cannot open database {self._shown_url!r}: {exc.orig}") from exc
            except (SQLAlchemyError, OSError) as exc:
                if await self._unreachable_for_now(exc, reachable):
                    continue
                reason = getattr(exc, "orig", None) or exc
                raise StoreError(f"cannot open database {self._shown_url!r}: {reason}") from exc

    async def _unreachable_for_now(self, exc: Exception, backoff: ConflictBackoff) -> bool:
        """Whether to try again: the server is unreachable and the deadline not passed."""
        if not _unreachable(exc):
            return False
        if not backoff.attempts:
            log.warning("database %s unreachable; trying again for a while", self._shown_url)
        return await backoff.wait()

    def _create_tables(self, conn: Connection) -> None:
        """``create_all`` under a lock, so that processes starting together do not race.

        SQLite's write transaction is that lock already; PostgreSQL takes an advisory lock
        for the transaction (``CREATE TABLE`` alone would fail on the type both create).
        """
        lock_schema(conn)
        self._t.metadata.create_all(conn)

    # --- conversations ------------------------------------------------------------------

    async def load(self, conversation_id: str) -> ConversationState | None:
        """The latest saved state, from the cache when it has it (shared: when the lock found
        it current); None for a new conversation."""
        self._check_open()
        cached = self._cache.get(conversation_id)
        if self._shared:
            if conversation_id in self._current and self._current[conversation_id] is None:
                return None  # the lock found no stored state
            if cached is not None and cached[1] != self._current.get(conversation_id):
                cached = None  # not found current under the lock
        if cached is not None:
            return _parse_state(conversation_id, *cached)
        query, params = self._t.select_state, {"conversation_id": conversation_id}
        row = await self._read(lambda conn: conn.execute(query, params).first())
        if row is None:
            return None
        self._cache.put(conversation_id, row.state, row.version)
        return _parse_state(conversation_id, row.state, row.version)

    def check_query(self, conversation_id: str) -> tuple[str, list[Any]]:
        """Shared: the query (asyncpg's, with its arguments) the conversation's lock runs on
        its own connection once taken, for :meth:`checked`: the stored version, and the
        stored state unless the cached one is of that version."""
        cached = self._cache.version(conversation_id)
        return self._check_sql, [conversation_id, -1 if cached is None else cached]

    def checked(self, conversation_id: str, row: Mapping[str, Any] | None) -> None:
        """Shared: what :meth:`check_query` found under the conversation's lock. Loads are
        served from memory until :meth:`released`: the cached state when current, else the
        state found (no conversation, when no row)."""
        if row is None:
            self._cache.evict(conversation_id)
            self._current[conversation_id] = None
            return
        if row["state"] is not None:
            self._cache.put(conversation_id, row["state"], row["version"])
        self._current[conversation_id] = row["version"]

    def released(self, conversation_id: str) -> None:
        """Shared: the conversation's lock is released; another process may write it now."""
        self._current.pop(conversation_id, None)

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
        self._check_open()
        turn = _prepare(state, events, outbox, message_key, outbox_due_at, journaled=journaled)
        try:
            ids: list[int] = await self._write(turn)
        except BaseException:
            # Failed, or cancelled with an unknown outcome: the next load asks the database.
            self._evict(turn.conversation_id)
            raise
        state.version += 1
        self._cache.put(turn.conversation_id, turn.state_text, state.version)
        if turn.conversation_id in self._current:  # saved under the lock: still current
            self._current[turn.conversation_id] = state.version
        return ids

    def _save_turns(self, conn: Connection, turns: list[_Turn]) -> list[_Outcome]:
        """Save ``turns`` with a few statements in all: check every turn, then write the rest.

        The checks read the stored versions and claimed message ids under the write lock
        (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's ``FOR UPDATE``), so a turn that fails them
        writes nothing and the others are unaffected.
        """
        t = self._t
        query = t.select_versions
        if self._db.dialect == "postgresql":
            query = query.with_for_update()  # locks rows in id order: no deadlock between batches
        conversation_ids = sorted({turn.conversation_id for turn in turns})
        versions = conn.execute(query, {"ids": conversation_ids})
        stored = {row.id: (row.version, row.last_seq) for row in versions}
        keys = {turn.message_key for turn in turns if turn.message_key is not None}
        claimed: set[tuple[str, str]] = set()
        if keys:
            rows = conn.execute(t.select_claimed, {"keys": sorted(keys)})
            claimed = {(row.channel, row.message_id) for row in rows}
        outcomes: list[_Outcome] = []
        claims: list[dict[str, Any]] = []
        forgotten: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        outbox_counts: list[int] = []
        for turn in turns:
            cid = turn.conversation_id
            if turn.message_key in claimed:
                channel, message_id = turn.message_key
                reason = f"message {message_id!r} on {channel!r} was already processed"
                outcomes.append((None, DuplicateMessageError(reason)))
                continue
            version, last_seq = stored.get(cid, (0, 0))
            if turn.version != version:
                reason = f"conversation {cid!r} is at version {version}, not {turn.version}"
                outcomes.append((None, ConcurrentUpdateError(reason)))
                continue
            if turn.message_key is not None:
                claimed.add(turn.message_key)
                channel, message_id = turn.message_key
                claims.append(
                    {
                        "channel": channel,
                        "message_id": message_id,
                        "conversation_id": cid,
                        "processed_at": turn.now,
                    }
                )
                if turn.journaled:
                    forgotten.append({"channel": channel, "message_id": message_id})
            new_seq = last_seq + turn.event_count
            stored[cid] = (version + 1, new_seq)
            if version == 0:
                inserts.append(
                    {
                        "id": cid,
                        "channel": turn.channel,
                        "sender_id": turn.sender_id,
                        "state": turn.state_text,
                        "version": 1,
                        "last_seq": new_seq,
                        "last_active_at": turn.last_active_at,
                        "created_at": turn.now,
                    }
                )
            else:
                updates.append(
                    {
                        "b_id": cid,
                        "b_state": turn.state_text,
                        "b_version": version + 1,
                        "b_last_seq": new_seq,
                        "b_active": turn.last_active_at,
                    }
                )
            if turn.event_count:
                event_rows.append(
                    {
                        "conversation_id": cid,
                        "seq": last_seq + 1,
                        "count": turn.event_count,
                        "timestamp": turn.now,
                        "data": turn.events_text,
                    }
                )
            outbox_rows.extend(
                {
                    "conversation_id": cid,
                    "channel": turn.channel,
                    "message": message,
                    "status": _PENDING,
                    "attempts": 0,
                    "next_attempt_at": turn.outbox_due_at,
                    "created_at": turn.now,
                }
                for message in turn.outbox
            )
            outbox_counts.append(len(turn.outbox))
            outcomes.append(([], None))
        for statement, params in (
            (t.insert_processed, claims),
            (t.insert_conversation, inserts),
            (self._update_conversation, updates),
            (t.insert_events, event_rows),
            (t.delete_journal, forgotten),
        ):
            if params:
                conn.execute(statement, params)
        if outbox_rows:
            new_ids = iter(conn.execute(self._insert_outbox, outbox_rows).scalars().all())
            counts = iter(outbox_counts)
            for ids_of_turn, failure in outcomes:
                if failure is None:
                    ids_of_turn.extend(next(new_ids) for _ in range(next(counts)))
        return outcomes

    async def is_processed(self, channel: str, message_id: str) -> bool:
        """True when ``message_id`` on ``channel`` was claimed by a saved turn."""
        self._check_open()
        query, params = self._t.select_processed, {"channel": channel, "message_id": message_id}
        return await self._read(lambda conn: conn.execute(query, params).first() is not None)

    async def recorded_actions(self, channel: str, message_id: str) -> list[RecordedAction] | None:
        """What the turns of message ``(channel, message_id)`` recorded and did not save;
        None once its turn was saved. One read: the turn's dedupe check and its journal."""
        self._check_open()
        query, params = self._t.select_journal, {"channel": channel, "message_id": message_id}
        rows = await self._read(lambda conn: conn.execute(query, params).all())
        if rows and rows[0].step == -1:  # claimed
            return None
        recorded = []
        for step, action, result in rows:
            try:
                data = orjson.loads(result)
                stored = ActionResult(events=data["events"], responses=data["responses"])
            except (ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"journaled action {action!r} is unreadable: {exc}") from exc
            recorded.append(RecordedAction(step=step, name=action, result=stored))
        return recorded

    async def record_action(
        self, channel: str, message_id: str, *, conversation_id: str, action: RecordedAction
    ) -> None:
        """Write ``action`` durably (group-committed with the writes queued meanwhile),
        replacing what an earlier attempt recorded at its step. In the batch of the turn that
        claims its message, it is left out: nothing would read it."""
        self._check_open()
        try:
            result = _dumps({"events": action.result.events, "responses": action.result.responses})
        except TypeError as exc:
            raise StoreError(f"action {action.name!r}: its result is not JSON: {exc}") from exc
        row = {
            "channel": channel,
            "message_id": message_id,
            "step": action.step,
            "conversation_id": conversation_id,
            "action": action.name,
            "result": result,
            "recorded_at": time.time(),
        }
        await self._write(_Record(row))

    async def events(
        self, conversation_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """The log from ``seq > after``, oldest first; an unreadable row raises ``StoreError``."""
        self._check_open()
        query = self._t.select_events
        params = {"conversation_id": conversation_id, "after": after + 1}
        stored: list[StoredEvent] = []
        for first, data in await self._read(lambda conn: conn.execute(query, params).all()):
            for offset, event in enumerate(_parse_turn(conversation_id, first, data)):
                seq = first + offset
                if seq > after:
                    stored.append(StoredEvent(seq=seq, event=event))
                if limit is not None and len(stored) >= limit:
                    return stored
        return stored

    async def turn_events(self, conversation_id: str, message_id: str) -> list[Event]:
        """The events saved in one turn with the customer's message ``message_id``; [] if gone."""
        self._check_open()
        ev = self._t.events
        query = (  # the LIKE only narrows the rows to parse; parsing decides
            select(ev.c.seq, ev.c.data)
            .where(
                ev.c.conversation_id == conversation_id,
                ev.c.data.contains(_dumps(message_id), autoescape=True),
            )
            .order_by(ev.c.seq.desc())
        )
        for first, data in await self._read(lambda conn: conn.execute(query).all()):
            events = _parse_turn(conversation_id, first, data)
            if any(isinstance(e, UserMessage) and e.message_id == message_id for e in events):
                return events
        return []

    async def delete_conversations_before(self, cutoff: float) -> int:
        """Delete conversations last active before ``cutoff`` with everything they own."""
        self._check_open()
        ids: list[str] = await self._write(lambda conn: self._delete_before(conn, cutoff))
        for cid in ids:
            self._evict(cid)
        return len(ids)

    def _delete_before(self, conn: Connection, cutoff: float) -> list[str]:
        t = self._t
        query = select(t.conversations.c.id).where(t.conversations.c.last_active_at < cutoff)
        if self._db.dialect == "postgresql":
            query = query.with_for_update()  # a turn saving meanwhile waits, then conflicts
        ids = list(conn.execute(query).scalars())
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start : start + _DELETE_CHUNK]
            for table in (t.events, t.outbox, t.processed, t.journal, t.jobs):
                conn.execute(delete(table).where(table.c.conversation_id.in_(chunk)))
            kv = t.kv
            conn.execute(
                delete(kv).where(
                    kv.c.namespace.in_(constants.CONVERSATION_NAMESPACES), kv.c.key.in_(chunk)
                )
            )
            conn.execute(
                delete(kv).where(
                    kv.c.namespace.in_(constants.CONVERSATION_VALUE_NAMESPACES),
                    kv.c.value.in_(chunk),
                )
            )
            owned = [  # a stored file's JSON starts with its owner (bot.files)
                t.kv.c.value.startswith(f'{{"owner":{_dumps(cid)},', autoescape=True)
                for cid in chunk
            ]
            conn.execute(
                delete(t.kv).where(t.kv.c.namespace == constants.FILE_NAMESPACE, or_(*owned))
            )
            conn.execute(delete(t.conversations).where(t.conversations.c.id.in_(chunk)))
        return ids

    # --- outbox -------------------------------------------------------------------------

    async def pending_deliveries(self, *, now: float, limit: int = 100) -> list[PendingDelivery]:
        """Pending messages due by ``now``, oldest first.

        A row that no longer reads as a ``BotMessage`` is marked failed with the reason, so it
        is neither returned again nor blocks the messages behind it.
        """
        self._check_open()
        ob = self._t.outbox
        query = (
            select(ob.c.id, ob.c.channel, ob.c.message, ob.c.attempts)
            .where(ob.c.status == _PENDING, ob.c.next_attempt_at <= now)
            .order_by(ob.c.id)
            .limit(limit)
        )
        due: list[PendingDelivery] = []
        for row in await self._read(lambda conn: conn.execute(query).all()):
            try:
                message = event_from_dict(orjson.loads(row.message))
                if not isinstance(message, BotMessage):
                    raise TypeError(f"a {message.event!r} event is not a bot message")
            except (ValueError, TypeError, AttributeError) as exc:
                await self.mark_failed(row.id, error=f"unreadable message: {exc}", retry_at=None)
                continue
            due.append(
                PendingDelivery(
                    id=row.id, channel=row.channel, message=message, attempts=row.attempts
                )
            )
        return due

    async def claim_delivery(self, delivery_id: int, *, now: float, until: float) -> bool:
        """Take a due pending entry for one attempt; False when another sender has it."""
        self._check_open()
        ob = self._t.outbox
        stmt = (
            update(ob)
            .where(ob.c.id == delivery_id, ob.c.status == _PENDING, ob.c.next_attempt_at <= now)
            .values(next_attempt_at=until)
        )

        def work(conn: Connection) -> bool:
            return bool(conn.execute(stmt).rowcount)

        claimed: bool = await self._write(work)
        return claimed

    async def mark_delivered(self, *delivery_ids: int) -> None:
        """Record that the channel delivered these messages; they leave the pending set."""
        values = {"status": _DELIVERED, "attempts": self._t.outbox.c.attempts + 1}
        await self._update_delivery(delivery_ids, values)

    async def mark_failed(self, delivery_id: int, *, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up for good when None."""
        values: dict[str, Any] = {"attempts": self._t.outbox.c.attempts + 1, "last_error": error}
        if retry_at is None:
            values["status"] = _FAILED
        else:
            values["next_attempt_at"] = retry_at
        await self._update_delivery((delivery_id,), values)

    async def _update_delivery(self, delivery_ids: Sequence[int], values: dict[str, Any]) -> None:
        self._check_open()
        if not delivery_ids:
            return
        ob = self._t.outbox
        stmt = update(ob).where(ob.c.id.in_(delivery_ids)).values(**values)

        def work(conn: Connection) -> None:
            if conn.execute(stmt).rowcount != len(set(delivery_ids)):
                missing = ", ".join(map(str, delivery_ids))
                raise StoreError(f"no outbox entry {missing}")

        await self._write(work)

    # --- scheduled jobs -----------------------------------------------------------------

    async def save_job(self, job: ScheduledJob) -> None:
        """Store ``job``, replacing the one with the same id."""
        self._check_open()
        try:
            data = _dumps(job.data)
        except TypeError as exc:
            raise StoreError(f"job {job.id!r}: its data is not JSON: {exc}") from exc
        row = {
            "id": job.id,
            "kind": job.kind,
            "conversation_id": job.conversation_id,
            "run_at": job.run_at,
            "data": data,
            "created_at": time.time(),
        }
        stmt = self._upsert_job

        def work(conn: Connection) -> None:
            conn.execute(stmt, row)

        await self._write(work)

    async def delete_job(self, job_id: str, *, run_at: float | None = None) -> bool:
        """Delete the job; with ``run_at``, only while it is due then or earlier (not when it
        was rescheduled for later meanwhile)."""
        self._check_open()
        stmt = self._delete_job if run_at is None else self._delete_due_job
        params = {"job_id": job_id, "run_at": run_at}

        def work(conn: Connection) -> bool:
            return bool(conn.execute(stmt, params).rowcount)

        deleted: bool = await self._write(work)
        return deleted

    async def jobs(
        self,
        *,
        kind: str | None = None,
        conversation_id: str | None = None,
        due_before: float | None = None,
    ) -> list[ScheduledJob]:
        """The stored jobs, soonest first; a row whose data is unreadable is skipped."""
        self._check_open()
        jobs = self._t.jobs
        query = select(
            jobs.c.id, jobs.c.kind, jobs.c.run_at, jobs.c.conversation_id, jobs.c.data
        ).order_by(jobs.c.run_at, jobs.c.id)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        if conversation_id is not None:
            query = query.where(jobs.c.conversation_id == conversation_id)
        if due_before is not None:
            query = query.where(jobs.c.run_at < due_before)
        found: list[ScheduledJob] = []
        for row in await self._read(lambda conn: conn.execute(query).all()):
            try:
                data = orjson.loads(row.data)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                log.error("scheduled job %s has unreadable data; skipped", row.id)
                continue
            found.append(
                ScheduledJob(
                    id=row.id,
                    kind=row.kind,
                    run_at=row.run_at,
                    conversation_id=row.conversation_id,
                    data=data,
                )
            )
        return found

    # --- small values -------------------------------------------------------------------

    async def get_value(self, namespace: str, key: str) -> str | None:
        """A value a channel stored with :meth:`put_value`, or None."""
        self._check_open()
        kv = self._t.kv
        query = select(kv.c.value).where(kv.c.namespace == namespace, kv.c.key == key)
        value: str | None = await self._read(lambda conn: conn.execute(query).scalar())
        return value

    async def put_value(self, namespace: str, key: str, value: str) -> None:
        """Store ``value`` under ``(namespace, key)``, replacing any previous one."""
        self._check_open()
        if not all(isinstance(part, str) for part in (namespace, key, value)):
            raise StoreError(f"namespace, key and value must be strings: {namespace!r}/{key!r}")
        insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        row = {"namespace": namespace, "key": key, "value": value, "updated_at": time.time()}
        stmt = insert(self._t.kv).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )

        def work(conn: Connection) -> None:
            conn.execute(stmt)

        await self._write(work)

    async def increment(self, namespace: str, key: str) -> int:
        """Add one to the counter under ``(namespace, key)`` in one statement; the new value."""
        self._check_open()
        kv = self._t.kv
        insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        row = insert(kv).values(namespace=namespace, key=key, value="1", updated_at=time.time())
        stmt = row.on_conflict_do_update(
            index_elements=["namespace", "key"],
            set_={
                "value": cast(cast(kv.c.value, Integer) + 1, Text),
                "updated_at": row.excluded.updated_at,
            },
        ).returning(kv.c.value)

        def work(conn: Connection) -> int:
            return int(conn.execute(stmt).scalar_one())

        value: int = await self._write(work)
        return value

    async def update_value(self, namespace: str, key: str, value: str) -> bool:
        """Replace the value under ``(namespace, key)`` only if there is one."""
        self._check_open()
        if not isinstance(value, str):
            raise StoreError(f"value must be a string: {namespace!r}/{key!r}")
        kv = self._t.kv
        stmt = (
            update(kv)
            .where(kv.c.namespace == namespace, kv.c.key == key)
            .values(value=value, updated_at=time.time())
        )

        def work(conn: Connection) -> bool:
            return bool(conn.execute(stmt).rowcount)

        updated: bool = await self._write(work)
        return updated

    async def delete_value(self, namespace: str, key: str) -> None:
        """Remove the value under ``(namespace, key)``, if any."""
        self._check_open()
        kv = self._t.kv
        stmt = delete(kv).where(kv.c.namespace == namespace, kv.c.key == key)

        def work(conn: Connection) -> None:
            conn.execute(stmt)

        await self._write(work)

    async def values(self, namespace: str) -> dict[str, str]:
        """Every key of ``namespace`` with its value."""
        self._check_open()
        kv = self._t.kv
        query = select(kv.c.key, kv.c.value).where(kv.c.namespace == namespace)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return {row.key: row.value for row in rows}

    # --- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Commit the writes already queued, then release the database connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer
        await self._db.dispose()

    def _evict(self, conversation_id: str) -> None:
        self._cache.evict(conversation_id)
        self._current.pop(conversation_id, None)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the conversation store is closed")

    # --- plumbing -----------------------------------------------------------------------

    async def _read(self, work: Callable[[Connection], _T]) -> _T:
        try:
            return await self._db.read(work)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _store_error(exc) from exc

    async def _write(self, payload: _Payload) -> Any:
        if self._group_commit:
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._run_writer(), name="kefu-store-writer")
            job = _Job(payload, asyncio.get_running_loop().create_future())
            self._queue.put_nowait(job)
            return await job.future
        try:
            [(result, error)] = await self._db.write(lambda conn: self._run(conn, [payload]))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _store_error(exc) from exc
        if error is not None:
            raise error
        return result

    async def _run_writer(self) -> None:
        """Commit queued writes in batches until ``close`` queues the stop marker."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < MAX_BATCH and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    break
                batch.append(job)
            live = [job for job in batch if not job.future.done()]
            if live:
                outcomes = await self._commit([job.payload for job in live])
                for job, (result, error) in zip(live, outcomes, strict=True):
                    if job.future.done():
                        continue
                    if error is None:
                        job.future.set_result(result)
                    else:
                        job.future.set_exception(_store_error(error))
            if stop:
                return

    async def _commit(self, payloads: list[_Payload]) -> list[_Outcome]:
        """Run ``payloads`` in one transaction; if it fails, replay them one savepoint each."""
        try:
            return await self._db.write(lambda conn: self._run(conn, payloads))
        except Exception as exc:
            if len(payloads) == 1:
                return [(None, exc)]
        try:
            return await self._db.write(lambda conn: self._run_isolated(conn, payloads))
        except Exception as exc:
            return [(None, exc)] * len(payloads)

    def _run(self, conn: Connection, payloads: list[_Payload]) -> list[_Outcome]:
        turns = [p for p in payloads if isinstance(p, _Turn)]
        outcomes_of_turns = self._save_turns(conn, turns) if turns else []
        # A record whose message a turn of this batch claims would never be read: not written.
        claimed = {
            turn.message_key
            for turn, (_, error) in zip(turns, outcomes_of_turns, strict=True)
            if error is None
        }
        records = [
            p.row
            for p in payloads
            if isinstance(p, _Record) and (p.row["channel"], p.row["message_id"]) not in claimed
        ]
        if records:
            conn.execute(self._upsert_journal, records)
        saved = iter(outcomes_of_turns)
        outcomes: list[_Outcome] = []
        for payload in payloads:
            if isinstance(payload, _Turn):
                outcomes.append(next(saved))
            elif isinstance(payload, _Record):
                outcomes.append((None, None))
            else:  # in the order it came, after the batch's records and turns
                outcomes.append((payload(conn), None))
        return outcomes

    def _run_isolated(self, conn: Connection, payloads: list[_Payload]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for payload in payloads:
            try:
                with conn.begin_nested():
                    outcomes.extend(self._run(conn, [payload]))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes


async def open_store(
    url: str = constants.DEFAULT_DATABASE_URL,
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
    group_commit: bool = True,
    table_prefix: str = "",
    pool: PoolOptions | None = None,
    shared: bool = False,
) -> SqlStore:
    """A ready store: constructed, tables created."""
    store = SqlStore(
        url,
        cache_size=cache_size,
        group_commit=group_commit,
        table_prefix=table_prefix,
        pool=pool,
        shared=shared,
    )
    try:
        await store.initialize()
    except BaseException:
        await store.close()
        raise
    return store


def _dumps(value: Any) -> str:
    """Compact JSON text; orjson because every turn writes its state and events through here.

    Dataclasses (inside slots) serialise as ``dataclasses.asdict`` has them; other types that
    JSON cannot hold raise ``TypeError``.
    """
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _state_dict(state: ConversationState, version: int) -> dict[str, Any]:
    """The state's fields as ``to_dict`` has them, without its deep copy (JSON copies anyway)."""
    data = dict(vars(state))
    data["version"] = version
    return data


def _prepare(
    state: ConversationState,
    events: Sequence[Event],
    outbox: Sequence[BotMessage],
    message_key: tuple[str, str] | None,
    outbox_due_at: float | None = None,
    *,
    journaled: bool = False,
) -> _Turn:
    cid, now = state.conversation_id, time.time()
    if message_key is not None and not (
        isinstance(message_key, tuple)
        and len(message_key) == 2
        and all(isinstance(part, str) for part in message_key)
    ):
        raise StoreError(f"conversation {cid!r}: message_key must be (channel, message id) strings")
    try:
        return _Turn(
            conversation_id=cid,
            channel=state.channel,
            sender_id=state.sender_id,
            version=state.version,
            state_text=_dumps(_state_dict(state, state.version + 1)),
            last_active_at=state.last_active_at or now,
            events_text=_dumps([e.to_dict() for e in events]),
            event_count=len(events),
            outbox=[_dumps(m.to_dict()) for m in outbox],
            message_key=message_key,
            journaled=journaled and message_key is not None,
            now=now,
            outbox_due_at=now if outbox_due_at is None else outbox_due_at,
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"conversation {cid!r}: cannot store this turn: {exc}") from exc


def _parse_state(conversation_id: str, text: str, version: int | None) -> ConversationState:
    try:
        state = ConversationState.from_dict(orjson.loads(text))
    except (ValueError, TypeError) as exc:
        raise StoreError(
            f"conversation {conversation_id!r}: stored state is unreadable: {exc}"
        ) from exc
    if version is not None:
        state.version = version
    return state


def _parse_turn(conversation_id: str, first: int, data: str) -> list[Event]:
    """One event-log row (a turn's events); ``StoreError`` naming it when it is unreadable."""
    try:
        batch = orjson.loads(data)
        if not isinstance(batch, list):
            raise TypeError("a stored turn is not a list of events")
        return [event_from_dict(item) for item in batch]
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(
            f"conversation {conversation_id!r}: event {first} is unreadable: {exc}"
        ) from exc


def _store_error(exc: Exception) -> KefuError:
    """Keep kefu's own errors; turn a database failure into ``StoreError``.

    A unique key violated means another process wrote the same row first (two first turns of
    one conversation, say): ``ConcurrentUpdateError``, for the turn to run again. A server
    that cannot be reached (restarting, the network cut, no free connection in time):
    ``DatabaseUnavailableError``, for the caller to answer retryably.
    """
    if isinstance(exc, KefuError):
        return exc
    if isinstance(exc, IntegrityError):
        return ConcurrentUpdateError("another writer saved the same rows first")
    if _unreachable(exc):
        return DatabaseUnavailableError(f"database unavailable: {type(_root_cause(exc)).__name__}")
    reason = getattr(exc, "orig", None) or exc
    return StoreError(f"database error: {type(reason).__name__}: {reason}")


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, or what it wraps, says the server could not be reached."""
    seen: BaseException | None = exc
    for _ in range(5):  # SQLAlchemy's wrapper, the adapter's, the driver's
        if seen is None:
            return False
        if isinstance(seen, PoolTimeoutError) or is_connection_error(seen):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def _root_cause(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and the adapter's wrappers (it names the cause)."""
    for _ in range(5):
        inner = getattr(exc, "orig", None) or exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


def lock_schema(conn: Connection) -> None:
    """Hold, for ``conn``'s transaction, the lock under which kefu creates tables: processes
    starting together on PostgreSQL would otherwise race on ``CREATE TABLE`` (SQLite's write
    transaction is that lock already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
