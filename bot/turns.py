"""The turn runner: every change to a conversation goes lock → dedupe → load → dialogue → save.

A customer's message (:meth:`TurnRunner.process`), a scheduled job's change
(:meth:`TurnRunner.update`), a desk intervention (:meth:`TurnRunner.intervene`) and slots set
from outside (:meth:`TurnRunner.set_slots`) all take the conversation's lock, skip what was
applied before (a platform's retry), load the current state (not the history), let the dialogue
compute new events, and save state, events and outbox in one write, running again on the fresh
state when another process saved first. Sending is :mod:`bot.delivery`'s job. A customer
message's custom actions go through its action journal (:mod:`bot.journal`): run once, even
when the turn is run again after a crash before its save.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import constants
from bot.conflicts import ConflictBackoff
from bot.delivery import Outbox
from bot.dialogue import trust
from bot.dialogue.manager import DialogueManager
from bot.dialogue.turn import Turn
from bot.errors import ConcurrentUpdateError, DatabaseUnavailableError, DuplicateMessageError
from bot.events import BotMessage, Event, SlotSet, UserMessage
from bot.inbound import message_key, sanitize
from bot.journal import TurnJournal
from bot.locks import ConversationLocks
from bot.ports import ConversationRepository, Intervention
from bot.privacy import redact
from bot.project import Project
from bot.recent_events import RecentEvents
from bot.scheduling.conversations import Change, TurnListener
from bot.state import ConversationState

__all__ = ["TurnResult", "TurnRunner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    """What a turn appended to the conversation and what the bot said.

    A ``duplicate`` (a platform message id seen before) appended nothing; its ``messages``
    are the replies of the message's first turn, for the caller to answer again if it must.
    """

    events: list[Event] = field(default_factory=list)
    messages: list[BotMessage] = field(default_factory=list)
    duplicate: bool = False


@dataclass
class _Draft:
    """One attempt at a change: the state it leaves, its events and its outbox entries."""

    state: ConversationState
    turn: Turn
    outbox: list[BotMessage]
    count_before: int
    messages: list[BotMessage] = field(default_factory=list)
    """What the change says to the customer (``turn.messages`` unless the change says else)."""
    journaled: bool = False
    """The message's action journal holds records (``bot.journal``): the save drops them."""


@dataclass
class _Saved:
    draft: _Draft
    ids: list[int]

    @property
    def items(self) -> list[tuple[int, BotMessage]]:
        return list(zip(self.ids, self.draft.outbox, strict=True))


class _Duplicate:
    """The change's once-only key was recorded before: nothing was done."""


_DUPLICATE = _Duplicate()

_Attempt = Callable[[], Awaitable[_Draft | None]]
"""Loads the conversation and computes one attempt at a change; None: unknown conversation."""


class TurnRunner:
    """Runs the turns and changes of one project's conversations."""

    def __init__(
        self,
        project: Project,
        *,
        store: ConversationRepository,
        locks: ConversationLocks,
        dialogue: DialogueManager,
        outbox: Outbox,
    ) -> None:
        self.project = project
        self.store = store
        self.locks = locks
        self.dialogue = dialogue
        self.outbox = outbox
        self.recent = RecentEvents(store)
        self._listeners: list[TurnListener] = []

    def add_listener(self, listener: TurnListener) -> None:
        """Tell ``listener`` of every saved customer turn (the scheduler picks up reminders
        and session starts there); its failures are logged, never the customer's problem."""
        self._listeners.append(listener)

    # --- the customer's turn ------------------------------------------------------------

    async def handle(self, message: UserMessage) -> list[BotMessage]:
        """The :class:`~bot.channel.MessageHandler` every channel calls."""
        return (await self.process(message)).messages

    async def process(self, message: UserMessage, *, trusted: bool = False) -> TurnResult:
        """Run one turn; a message id seen before is not run again: its first turn's replies
        answer it (a ``duplicate`` result; nothing is saved or delivered again).

        ``trusted`` is for kefu's own messages (a reminder's intent with its entities): their
        payload counts though no button offered it. Channels never pass it.
        """
        message = sanitize(message)
        cid = message.conversation_id
        key = message_key(message)
        journal: TurnJournal | None = None

        async def attempt() -> _Draft:
            state = await self.store.load(cid) or _new_state(message)
            count_before = state.event_count
            turn = self._turn(state)
            turn.journal = journal.begin() if journal else None
            try:
                await self.dialogue.respond(turn, message, trusted=trusted)
            except DatabaseUnavailableError:  # nothing can be saved: the caller retries
                raise
            except Exception:  # a bug must cost the customer one answer, not the conversation
                log.exception("turn failed in %s", cid)
                state = await self.store.load(cid) or _new_state(message)
                turn = self._turn(state)
                self.dialogue.failed(turn, message)
            trust.remember_offers(state, turn.messages)
            outbox = self.outbox.replies(message.channel, turn.messages)
            journaled = journal is not None and journal.stored
            return _Draft(state, turn, outbox, count_before, journaled=journaled)

        async with self.locks.hold(cid):
            # The dedupe check, and what earlier turns of the message journaled, in one read.
            recorded = await self.store.recorded_actions(*key) if key else []
            if recorded is None:
                saved: _Saved | _Duplicate | None = _DUPLICATE
            else:
                if key:
                    journal = TurnJournal(self.store, key, cid, recorded)
                try:
                    saved = await self._commit(cid, key, attempt, checked=True)
                finally:
                    if journal is not None:  # its records land before a retry looks for them
                        await journal.settle()
        if not isinstance(saved, _Saved):  # a platform's retry of a message seen before
            return await self._replay(message)
        await self.outbox.deliver(message.channel, saved.items)
        turn = saved.draft.turn
        for listener in self._listeners:
            try:
                await listener(saved.draft.state, turn.events)
            except Exception:
                log.exception("turn listener failed in %s", cid)
        return TurnResult(events=turn.events, messages=turn.messages)

    async def _replay(self, message: UserMessage) -> TurnResult:
        """A ``duplicate`` result with the replies the message's first turn stored, in order.

        Nothing is saved or delivered: push channels had those replies from the outbox.
        Without the original turn in the store (deleted), the replies are ``[]``.
        """
        events = await self.store.turn_events(message.conversation_id, message.message_id or "")
        replies = [event for event in events if isinstance(event, BotMessage)]
        return TurnResult(messages=replies, duplicate=True)

    # --- changes from outside the customer's turns --------------------------------------

    async def update(
        self, conversation_id: str, change: Change, *, once_key: str | None = None
    ) -> list[BotMessage] | None:
        """Apply a scheduled job's ``change`` as a turn would: under the conversation's lock,
        on its current state, saved with its outbox in one write, then delivered.

        Returns what the bot said; None when the conversation does not exist (retention
        deleted it) or ``once_key`` was applied before (by this or another process). The
        customer's ``last_active_at`` is left as it was: a job is not the customer's activity.
        """
        channel = conversation_id.partition(":")[0]
        key = (channel, f"{conversation_id}/{once_key}") if once_key else None

        async def attempt() -> _Draft | None:
            state = await self.store.load(conversation_id)
            if state is None:
                return None
            count_before = state.event_count
            turn = self._turn(state)
            await change(turn)
            state.event_count += len(turn.events)
            trust.remember_offers(state, turn.messages)
            return _Draft(state, turn, self.outbox.pushed(channel, turn.messages), count_before)

        async with self.locks.hold(conversation_id):
            saved = await self._commit(conversation_id, key, attempt)
        if not isinstance(saved, _Saved):
            return None
        await self.outbox.deliver(channel, saved.items)
        return saved.draft.turn.messages

    async def intervene(
        self,
        conversation_id: str,
        *,
        events: Sequence[Event] = (),
        utter: Sequence[tuple[str, Mapping[str, Any]]] = (),
        pause: bool | None = None,
        message_key: tuple[str, str] | None = None,
    ) -> Intervention:
        """The desk's way into a conversation (``bot.ports.ConversationControl``).

        Runs under the conversation's lock like a turn: records ``events``, renders ``utter``
        and then each ``AgentMessage`` for the customer, pauses or resumes, saves all in one
        write and delivers through the outbox, on every channel that can push (the web chat's
        live stream included), before the lock is released.
        """

        async def attempt() -> _Draft | None:
            state = await self.store.load(conversation_id)
            if state is None:
                return None
            count_before = state.event_count
            turn = self._turn(state)
            messages = await self.dialogue.intervene(turn, events=events, utter=utter, pause=pause)
            outbox = self.outbox.interventions(state.channel, messages)
            return _Draft(state, turn, outbox, count_before, messages)

        async with self.locks.hold(conversation_id):
            saved = await self._commit(conversation_id, message_key, attempt)
            if saved is None:
                return Intervention(known=False)
            if not isinstance(saved, _Saved):
                return Intervention(known=True, duplicate=True)
            delivery = await self.outbox.deliver(saved.draft.state.channel, saved.items)
        return Intervention(known=True, delivery=delivery)

    async def set_slots(
        self, conversation_id: str, slots: dict[str, Any], *, trusted: bool = False
    ) -> None:
        """Set slots before or between turns (conversation-test fixtures, the desk, the API).

        Only a ``trusted`` caller (staff at the desk, the shop's own back end) may set a live
        conversation's action-owned slots; fixtures may in conversation tests only.
        """
        channel, _, sender = conversation_id.partition(":")
        if not trusted:
            trust.check_fixture_slots(self.project.domain.slots, channel, slots)
        slots = redact(slots)

        async def attempt() -> _Draft:
            state = await self.store.load(conversation_id) or ConversationState(
                conversation_id=conversation_id, channel=channel, sender_id=sender
            )
            count_before = state.event_count
            turn = self._turn(state)
            for name, value in slots.items():
                state.slots[name] = value
                turn.events.append(SlotSet(name=name, value=value))
            state.remember(turn.events)
            return _Draft(state, turn, [], count_before)

        async with self.locks.hold(conversation_id):
            await self._commit(conversation_id, None, attempt)

    # --- the one save loop --------------------------------------------------------------

    async def _commit(
        self,
        conversation_id: str,
        key: tuple[str, str] | None,
        attempt: _Attempt,
        *,
        checked: bool = False,
    ) -> _Saved | _Duplicate | None:
        """Dedupe on ``key`` (unless the caller ``checked`` it), then run ``attempt`` and save
        what it computed in one write, again on the fresh state while another process saved
        first. The caller holds the conversation's lock. None: the conversation is unknown
        (``attempt`` said so)."""
        if key and not checked and await self.store.is_processed(*key):
            return _DUPLICATE
        backoff = ConflictBackoff()
        while True:
            draft = await attempt()
            if draft is None:
                return None
            try:
                ids = await self.store.save(
                    draft.state,
                    draft.turn.events,
                    outbox=draft.outbox,
                    outbox_due_at=time.time() + constants.DELIVERY_LEASE,
                    message_key=key,
                    journaled=draft.journaled,
                )
            except ConcurrentUpdateError:  # another process saved first: run on its state
                if not await backoff.wait():
                    raise
                continue
            except DuplicateMessageError:  # another process saved it since the check
                return _DUPLICATE
            self.recent.extend(conversation_id, draft.count_before, draft.turn.events)
            return _Saved(draft, ids)

    def _turn(self, state: ConversationState) -> Turn:
        stored = state.event_count

        async def earlier_events() -> list[dict[str, Any]]:
            return await self.recent.get(state.conversation_id, stored)

        return Turn(
            state=state,
            domain=self.project.domain,
            flows=self.project.flows,
            rng=random.Random(f"{state.conversation_id}:{state.event_count}"),
            earlier_events=earlier_events,
        )


def _new_state(message: UserMessage) -> ConversationState:
    return ConversationState(
        conversation_id=message.conversation_id,
        channel=message.channel,
        sender_id=message.sender_id,
    )
