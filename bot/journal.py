"""The action journal: a custom action runs once per customer message, even across a crash.

A turn that ran a custom action and died before its save (the worker was killed, the database
went away) is run again when the client sends the same message (same id) again, on any worker.
Each action's result is therefore written to the store as soon as the action returns (in the
store's next group commit), under the message's key and the action's step in the turn; the
turn run again replays that result instead of calling the action, and the turn's save drops
the journal in the same write (from then on the claimed message id answers a retry,
:mod:`bot.turns`).

A database that is unreachable for a moment when the record is due is waited for
(``constants.JOURNAL_WRITE_DEADLINE``). What stays open is the window between the action's
return and its record's commit (a few milliseconds; the turn goes on meanwhile): a crash
there runs the action again. Each call carries an
idempotency key, the same on every attempt, with which an action (or its action server) can
recognise the repeat (``bot.ports.ActionRunner``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot import constants
from bot.conflicts import ConflictBackoff
from bot.errors import DatabaseUnavailableError
from bot.ports import ActionJournalStore, ActionResult, RecordedAction

__all__ = ["ActionCall", "TurnJournal"]

log = logging.getLogger(__name__)

ActionCall = Callable[[str], Awaitable[ActionResult]]
"""Runs one custom action with the idempotency key it is given."""


class TurnJournal:
    """The journal of one customer message's turn, over every attempt at it.

    ``key`` is the message key the turn claims (``bot.inbound.message_key``); ``recorded`` is
    what earlier turns of the message recorded, read with the dedupe check before the first
    attempt (one read for both), and kept for the attempts after it.

    A record is queued for the store's next group commit the moment its action returns, and
    the turn goes on without waiting for it: the turn's save, queued after it, commits with it
    or after it, so a turn that nothing interrupts pays no transaction of its own for its
    records (in the batch of its save, they are left out). :meth:`settle` waits for the
    records, before a failed turn's error reaches the client, who retries.
    """

    def __init__(
        self,
        store: ActionJournalStore,
        key: tuple[str, str],
        conversation_id: str,
        recorded: Sequence[RecordedAction] = (),
    ) -> None:
        self._store = store
        self._key = key
        self._conversation_id = conversation_id
        self._recorded = {action.step: action for action in recorded}
        self._writes: list[asyncio.Task[None]] = []
        self._preloaded = bool(recorded)
        self._step = 0

    @property
    def stored(self) -> bool:
        """Whether records of this message may be in the store (read from it, or written
        already), which the turn's save then drops. One still queued is left out of the
        batch that saves the turn; one committed in between stays, never read again."""
        return bool(self._recorded) and (
            self._preloaded or any(write.done() for write in self._writes)
        )

    def begin(self) -> TurnJournal:
        """Start an attempt: its first custom action is step 0 again."""
        self._step = 0
        return self

    async def run(self, name: str, call: ActionCall) -> ActionResult:
        """The result of this turn's next custom action ``name``: the one recorded at this
        step when it is the same action, else ``call``'s, its record queued."""
        step, self._step = self._step, self._step + 1
        recorded = self._recorded.get(step)
        if recorded is not None and recorded.name == name:
            return recorded.result
        result = await call(self.idempotency_key(step, name))
        action = RecordedAction(step=step, name=name, result=result)
        self._recorded[step] = action
        write = asyncio.create_task(self._record(action), name=f"journal record of {name}")
        self._writes.append(write)
        return result

    async def settle(self) -> None:
        """Wait until every queued record is written, or given up on (logged): a record that
        could not be written costs a retried turn that action's second call."""
        writes, self._writes = self._writes, []
        for write, outcome in zip(
            writes, await asyncio.gather(*writes, return_exceptions=True), strict=True
        ):
            if isinstance(outcome, BaseException):
                log.warning(
                    "an action's journal record was not written (%s): %s",
                    write.get_name(),
                    type(outcome).__name__,
                )

    async def _record(self, action: RecordedAction) -> None:
        """Write ``action``'s record, waiting out a database that is away for a moment (the
        action ran: its record is worth the wait); past the deadline the error goes up."""
        backoff = ConflictBackoff(deadline=constants.JOURNAL_WRITE_DEADLINE)
        while True:
            try:
                await self._store.record_action(
                    *self._key, conversation_id=self._conversation_id, action=action
                )
                return
            except DatabaseUnavailableError:
                if not await backoff.wait():
                    raise
                log.warning("recording action %s again: the database is unreachable", action.name)

    def derived_id(self, name: str) -> str:
        """A stable id for what ``name`` (a default action) derives from this turn's message,
        the same on every run of the turn: what it hands on (a message left for the desk) is
        recognised when the turn runs again."""
        channel, message_id = self._key
        text = "\0".join((channel, message_id, "derived", name))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def idempotency_key(self, step: int, name: str) -> str:
        """The key of custom action ``name`` at ``step``: the same on every attempt."""
        channel, message_id = self._key
        text = "\0".join((channel, message_id, str(step), name))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
