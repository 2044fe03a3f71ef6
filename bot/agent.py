"""The agent: one turn of one conversation, end to end.

A turn takes the conversation's lock, skips a platform message it has seen (answering it with
the replies stored the first time), loads the current state (not the history), understands
the message, lets the dialogue manager compute events, saves state, events and outgoing
messages in one write, releases the lock and delivers.
Replies for push channels (Telegram) go through the store's outbox, so a failed delivery is
retried, never lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import constants
from bot.channel import Channel
from bot.conflicts import ConflictBackoff
from bot.desk.triggers import HandoffTriggers
from bot.dialogue import commands as cmd
from bot.dialogue import trust
from bot.dialogue.command_generator import generate_commands
from bot.dialogue.default_actions import DefaultActions
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.stack import top_user_frame
from bot.dialogue.turn import Turn
from bot.errors import (
    ConcurrentUpdateError,
    DuplicateMessageError,
    PermanentDeliveryError,
    RejectedMessageError,
    TransientDeliveryError,
)
from bot.events import (
    AgentMessage,
    BotMessage,
    ConversationPaused,
    ConversationResumed,
    Event,
    SlotSet,
    UserMessage,
)
from bot.interpreter import Interpreter, Parse
from bot.ports import (
    ActionRunner,
    AnswerBackend,
    CommandSource,
    ConversationStore,
    Delivery,
    HandoffDesk,
    Intervention,
)
from bot.privacy import redact, redact_user_message
from bot.project import Project
from bot.recent_events import RecentEvents
from bot.responses import ResponseRenderer
from bot.scheduling.conversations import Change, TurnListener
from bot.settings import Settings
from bot.state import ConversationState
from bot.understanding.language import conversation_language

if TYPE_CHECKING:
    from bot.llm.backend import LLM

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TurnResult:
    """What a turn appended to the conversation and what the bot said.

    A ``duplicate`` (a platform message id seen before) appended nothing; its ``messages``
    are the replies of the message's first turn, for the caller to answer again if it must.
    """

    events: list[Event] = field(default_factory=list)
    messages: list[BotMessage] = field(default_factory=list)
    duplicate: bool = False


class Agent:
    """Runs turns for one project. Build it with :meth:`create`; close it with :meth:`close`."""

    def __init__(
        self,
        project: Project,
        *,
        settings: Settings,
        store: ConversationStore,
        interpreter: Interpreter,
        action_runner: ActionRunner | None = None,
        answer_backend: AnswerBackend | None = None,
        desk: HandoffDesk | None = None,
        triggers: HandoffTriggers | None = None,
        command_source: CommandSource | None = None,
        llm: LLM | None = None,
    ) -> None:
        self.project = project
        self.command_source = command_source
        self.llm = llm
        self.settings = settings
        self.store = store
        self.interpreter = interpreter
        self.action_runner = action_runner
        self.desk = desk
        self.triggers = triggers
        self.defaults = DefaultActions(
            answer_backend=answer_backend, desk=desk, hours=settings.business_hours
        )
        self.executor = FlowExecutor(
            renderer=ResponseRenderer(project.domain),
            action_runner=action_runner,
            defaults=self.defaults,
        )
        self.recent = RecentEvents(store)
        self.channels: dict[str, Channel] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._listeners: list[TurnListener] = []
        self._retry_task: asyncio.Task[None] | None = None

    @classmethod
    async def create(
        cls,
        project: Project,
        *,
        settings: Settings,
        store: ConversationStore | None = None,
        action_runner: ActionRunner | None = None,
        answer_backend: AnswerBackend | None = None,
        desk: HandoffDesk | None = None,
    ) -> Agent:
        """Build an agent: train or load the models; default backends for what is not given.

        With a desk, the settings' handoff triggers (not understood N times, sentiment) apply.
        """
        from bot.actions import create_action_runner
        from bot.knowledge import KnowledgeAnswerer, KnowledgeBase, default_embedders
        from bot.llm.backend import build_llm
        from bot.store import open_store
        from bot.understanding.sentiment import analyzer

        knowledge = None
        if project.knowledge_dir is not None:
            knowledge = KnowledgeBase.from_directory(project.knowledge_dir)
        interpreter = await asyncio.to_thread(
            Interpreter.train,
            project.nlu,
            entity_names=project.domain.entities,
            intents=project.domain.intents,
            cache_dir=_cache_dir(project.root),
            flows=project.flows.flows.values(),
            questions=knowledge.questions() if knowledge is not None else (),
            sentiment=analyzer(),
        )
        await asyncio.to_thread(analyzer().prepare)  # not during a first message
        if store is None:
            store = await open_store(settings.database_url)
        if action_runner is None:
            action_runner = create_action_runner(
                project_dir=project.root, endpoint=settings.action_endpoint
            )
        llm = None
        if answer_backend is None:
            if knowledge is not None:
                cache = _cache_dir(project.root)
                vectors = knowledge.with_vectors(default_embedders(), cache_dir=cache)
                await asyncio.to_thread(vectors.prepare)  # not during a first question
                answer_backend = KnowledgeAnswerer(knowledge)
            llm = build_llm(settings, project, knowledge=knowledge, offline=answer_backend)
        if llm is not None:
            answer_backend = llm.answerer
        return cls(
            project,
            settings=settings,
            store=store,
            interpreter=interpreter,
            action_runner=action_runner,
            answer_backend=answer_backend,
            desk=desk,
            triggers=None
            if desk is None
            else HandoffTriggers(
                not_understood=settings.handoff_not_understood,
                sentiment_threshold=settings.handoff_sentiment,
            ),
            command_source=llm.router if llm is not None else None,
            llm=llm,
        )

    # --- channels and lifecycle ---------------------------------------------------------

    def add_channel(self, channel: Channel) -> None:
        """Connect a channel: its messages come to :meth:`handle`, replies go to its ``send``."""
        channel.attach(self.handle)
        self.channels[channel.name] = channel

    def add_listener(self, listener: TurnListener) -> None:
        """Tell ``listener`` of every saved customer turn (the scheduler picks up reminders
        and session starts there); its failures are logged, never the customer's problem."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start retrying undelivered messages in the background."""
        load_names = getattr(self.action_runner, "load_action_names", None)
        if load_names is not None:  # a remote action server: learn its actions up front
            await load_names()
        if self._retry_task is None:
            self._retry_task = asyncio.create_task(self._retry_deliveries())

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None
        closer = getattr(self.action_runner, "close", None)
        if closer is not None:
            await closer()
        if self.llm is not None:
            await self.llm.close()
        await self.store.close()

    # --- turns --------------------------------------------------------------------------

    async def handle(self, message: UserMessage) -> list[BotMessage]:
        """The :class:`~bot.channel.MessageHandler` every channel calls."""
        return (await self.process(message)).messages

    async def process(self, message: UserMessage, *, trusted: bool = False) -> TurnResult:
        """Run one turn; a message id seen before is not run again: :meth:`_replay` answers it.

        ``trusted`` is for kefu's own messages (a reminder's intent with its entities): their
        payload counts though no button offered it. Channels never pass it.
        """
        message = _sanitize(message)
        key = _message_key(message)
        async with self._lock(message.conversation_id):
            if key and await self.store.is_processed(*key):
                return await self._replay(message)
            backoff = ConflictBackoff()
            while True:
                state = await self.store.load(message.conversation_id) or _new_state(message)
                count_before = state.event_count
                try:
                    turn = await self._run_turn(state, message, trusted=trusted)
                except Exception:  # a bug must cost the customer one answer, not the conversation
                    log.exception("turn failed in %s", message.conversation_id)
                    state = await self.store.load(message.conversation_id) or _new_state(message)
                    turn = self._failed_turn(state, message)
                trust.remember_offers(state, turn.messages)
                outbox = self._outbox(message.channel, turn.messages)
                try:
                    ids = await self.store.save(
                        state,
                        turn.events,
                        outbox=outbox,
                        outbox_due_at=time.time() + constants.DELIVERY_LEASE,
                        message_key=key,
                    )
                except ConcurrentUpdateError:  # another process saved first: run on its state
                    if not await backoff.wait():
                        raise
                    continue
                except DuplicateMessageError:  # another process saved it since the check
                    return await self._replay(message)
                self.recent.extend(message.conversation_id, count_before, turn.events)
                break
        if outbox:
            await self._deliver(message.channel, list(zip(ids, outbox, strict=True)))
        for listener in self._listeners:
            try:
                await listener(state, turn.events)
            except Exception:
                log.exception("turn listener failed in %s", message.conversation_id)
        return TurnResult(events=turn.events, messages=turn.messages)

    async def _replay(self, message: UserMessage) -> TurnResult:
        """A ``duplicate`` result with the replies the message's first turn stored, in order.

        Nothing is saved or delivered: push channels had those replies from the outbox.
        Without the original turn in the store (deleted), the replies are ``[]``.
        """
        events = await self.store.turn_events(message.conversation_id, message.message_id or "")
        replies = [event for event in events if isinstance(event, BotMessage)]
        return TurnResult(messages=replies, duplicate=True)

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
        async with self._lock(conversation_id):
            state = await self.store.load(conversation_id) or ConversationState(
                conversation_id=conversation_id, channel=channel, sender_id=sender
            )
            events: list[Event] = []
            for name, value in slots.items():
                state.slots[name] = value
                events.append(SlotSet(name=name, value=value))
            state.remember(events)
            await self.store.save(state, events)

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
        key = (channel, f"{conversation_id}/{once_key}")
        async with self._lock(conversation_id):
            if once_key and await self.store.is_processed(*key):
                return None
            backoff = ConflictBackoff()
            while True:
                state = await self.store.load(conversation_id)
                if state is None:
                    return None
                count_before = state.event_count
                turn = self._turn(state)
                await change(turn)
                state.event_count += len(turn.events)
                trust.remember_offers(state, turn.messages)
                outbox = self._pushed(channel, turn.messages)
                try:
                    ids = await self.store.save(
                        state,
                        turn.events,
                        outbox=outbox,
                        outbox_due_at=time.time() + constants.DELIVERY_LEASE,
                        message_key=key if once_key else None,
                    )
                except ConcurrentUpdateError:  # another process saved first: run on its state
                    if not await backoff.wait():
                        raise
                    continue
                except DuplicateMessageError:
                    return None
                self.recent.extend(conversation_id, count_before, turn.events)
                break
        if outbox:
            await self._deliver(channel, list(zip(ids, outbox, strict=True)))
        return turn.messages

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

    async def _run_turn(
        self, state: ConversationState, message: UserMessage, *, trusted: bool = False
    ) -> Turn:
        turn = self._turn(state)
        if message.metadata:
            state.profile.update({k: v for k, v in message.metadata.items() if k in _PROFILE_KEYS})
        command = message.metadata.get("command") if message.metadata else None
        now = time.time()
        new_session = not state.session_started_at or self._session_expired(state, now)
        # While an agent has the conversation the bot starts nothing: the message is theirs.
        if not state.paused and (new_session or command == "start"):
            state.stack.clear()
            self.executor.push_pattern(turn, "pattern_session_start")
            await self.executor.advance(turn)
            state.session_started_at = now
        language = (
            state.language
            or _base_language(message.language)
            or self.project.domain.default_language
        )
        # A platform command (Telegram's /help) means its intent, like a button would.
        # Only a payload the bot offered (or a plain /intent) counts: bot.dialogue.trust.
        sent = message.payload or (f"/{command}" if command and command != "start" else None)
        intents = self.interpreter.intents
        payload = sent if trusted else trust.trusted_payload(state, sent, intents=intents)
        parse_message = functools.partial(
            self.interpreter.parse, message.text, payload=payload, language=language
        )
        if trust.typed_payload_refused(sent, payload, text=message.text):
            parse = trust.refused_parse(message.text, language=language)
        elif payload is None and self.interpreter.may_be_slow(message.text):
            parse = await asyncio.to_thread(parse_message)  # other conversations go on meanwhile
        else:
            parse = parse_message()
        self._set_language(
            turn,
            parse.language
            if parse.from_payload
            else conversation_language(message.text, current=state.language),
        )
        turn.parse = parse.to_rasa()
        state.latest_message = turn.parse
        user_event = dataclasses.replace(
            message,
            payload=message.payload if payload else None,
            parse_data=turn.parse,
            language=parse.language,
        )
        turn.events.append(user_event)
        if command == "start" and not state.paused:
            state.remember(turn.events)
            return turn
        if state.paused:
            if self.desk is not None and await self.desk.forward(user_event):
                state.remember(turn.events)
                return turn
            state.paused = False  # no desk or no open handoff: the bot takes the conversation back
        commands = self._commands(turn, message, parse, command)
        if self.command_source is not None and command is None:
            commands = await self.command_source.commands(turn, parse, commands)
        commands = trust.outside_commands(self.project.domain.slots, commands)
        self.executor.apply(turn, commands)
        await self.executor.advance(turn)
        reason = self.triggers.after_turn(state, turn.events) if self.triggers else None
        if reason is not None:
            self.executor.push_pattern(turn, "pattern_human_handoff", reason=reason)
            await self.executor.advance(turn)
        state.remember(turn.events)
        state.note_utterances(turn.events)
        return turn

    def _failed_turn(self, state: ConversationState, message: UserMessage) -> Turn:
        """A turn that keeps the customer's message and apologises, changing nothing else."""
        turn = Turn(state=state, domain=self.project.domain, flows=self.project.flows)
        turn.events.append(message)
        self.executor.utter(turn, "utter_internal_error_rasa")
        state.remember(turn.events)
        return turn

    def _commands(
        self, turn: Turn, message: UserMessage, parse: Parse, command: str | None
    ) -> list[cmd.Command]:
        if message.metadata.get("truncated"):
            return [cmd.InternalError("rasa_internal_error_user_input_too_long")]
        if not message.text.strip() and not message.payload and not message.attachments:
            return [cmd.InternalError("rasa_internal_error_user_input_empty")]
        return generate_commands(turn, parse, synonyms=self.project.nlu.synonyms, command=command)

    def _set_language(self, turn: Turn, language: str) -> None:
        if turn.state.language == language:
            return
        turn.state.language = language
        if "language" in turn.domain.slots:
            turn.set_slot("language", language)

    def _session_expired(self, state: ConversationState, now: float) -> bool:
        minutes = self.project.domain.session_config.session_expiration_time
        return (
            minutes > 0 and state.last_active_at > 0 and now - state.last_active_at > minutes * 60
        )

    @contextlib.asynccontextmanager
    async def _lock(self, conversation_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)

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
        live stream included).
        """
        async with self._lock(conversation_id):
            if message_key and await self.store.is_processed(*message_key):
                return Intervention(known=True, duplicate=True)
            backoff = ConflictBackoff()
            while True:
                state = await self.store.load(conversation_id)
                if state is None:
                    return Intervention(known=False)
                turn = Turn(
                    state=state,
                    domain=self.project.domain,
                    flows=self.project.flows,
                    rng=random.Random(f"{conversation_id}:{state.event_count}"),
                )
                if pause is True:
                    state.paused = True
                    turn.emit(ConversationPaused())
                for event in events:
                    turn.emit(event)  # masked like every event a turn emits
                recorded = list(turn.events)
                for name, context in utter:
                    self.executor.utter(turn, name, None, **context)
                messages = list(turn.messages)
                for event in recorded:
                    if isinstance(event, AgentMessage):
                        messages += _agent_messages(conversation_id, event)
                if pause is False:
                    before = len(turn.messages)
                    await self._resume(turn)
                    messages += turn.messages[before:]
                trust.remember_offers(state, messages)
                state.remember(turn.events)
                state.note_utterances(turn.events)
                channel = self.channels.get(state.channel)
                outbox = [p for m in messages for p in channel.deliveries(m)] if channel else []
                try:
                    ids = await self.store.save(
                        state,
                        turn.events,
                        outbox=outbox,
                        outbox_due_at=time.time() + constants.DELIVERY_LEASE,
                        message_key=message_key,
                    )
                except ConcurrentUpdateError:  # another process saved first: run on its state
                    if not await backoff.wait():
                        raise
                    continue
                except DuplicateMessageError:  # another process recorded it since the check
                    return Intervention(known=True, duplicate=True)
                break
            if channel is None or not outbox:
                return Intervention(known=True)
            return Intervention(
                known=True, delivery=await self._push(channel, list(zip(ids, outbox, strict=True)))
            )

    async def _resume(self, turn: Turn) -> None:
        """Hand the conversation back to the bot at a clean point: the task the handoff
        interrupted is offered again (yes resumes it, no drops it), nothing stale is said."""
        state = turn.state
        state.paused = False
        turn.emit(ConversationResumed())
        interrupted = top_user_frame(state.stack)
        if interrupted is None:
            state.stack.clear()
            return
        flow = self.project.flows.get(interrupted["flow_id"])
        self.executor.push_pattern(
            turn,
            "pattern_continue_interrupted",
            interrupted_flow_options=flow.readable_name if flow else interrupted["flow_id"],
            interrupted_frame=interrupted["frame_id"],
            previous_flow_name="pattern_human_handoff",
        )
        await self.executor.advance(turn)

    async def _push(self, channel: Channel, items: list[tuple[int, BotMessage]]) -> Delivery:
        """Deliver a desk intervention's messages in order; how it went."""
        sent: list[int] = []
        try:
            for position, (delivery_id, message) in enumerate(items):
                outcome = await self._attempt(channel, delivery_id, message, attempts=0)
                if outcome.sent:
                    sent.append(delivery_id)
                    continue
                if not outcome.holds_later:
                    continue
                for later_id, _ in items[position + 1 :]:
                    await self.store.mark_failed(
                        later_id, error="waiting for an earlier message", retry_at=outcome.retry_at
                    )
                return Delivery.QUEUED if outcome.retry_at is not None else Delivery.UNREACHABLE
        finally:
            await self.store.mark_delivered(*sent)
        return Delivery.SENT

    # --- delivery -----------------------------------------------------------------------

    def _pushed(self, channel_name: str, messages: list[BotMessage]) -> list[BotMessage]:
        """What a job's messages put in the outbox: on every channel that pushes (the web
        chat's live stream too), part by part."""
        channel = self.channels.get(channel_name)
        if channel is None or not channel.pushes:
            return []
        return [part for message in messages for part in channel.deliveries(message)]

    def _outbox(self, channel_name: str, messages: list[BotMessage]) -> list[BotMessage]:
        """What a push channel must be sent, part by part; nothing for inline channels."""
        channel = self.channels.get(channel_name)
        if channel is None or channel.replies_inline:
            return []
        return [part for message in messages for part in channel.deliveries(message)]

    async def _deliver(self, channel_name: str, items: list[tuple[int, BotMessage]]) -> None:
        """Send in order; after a failure the rest wait with the failed one, keeping order
        (a message the platform rejected is given up alone)."""
        channel = self.channels[channel_name]
        sent: list[int] = []
        try:
            for position, (delivery_id, message) in enumerate(items):
                outcome = await self._attempt(channel, delivery_id, message, attempts=0)
                if outcome.sent:
                    sent.append(delivery_id)
                elif outcome.holds_later:
                    for later_id, _ in items[position + 1 :]:
                        await self.store.mark_failed(
                            later_id,
                            error="waiting for an earlier message",
                            retry_at=outcome.retry_at,
                        )
                    return
        finally:
            await self.store.mark_delivered(*sent)

    async def _attempt(
        self, channel: Channel, delivery_id: int, message: BotMessage, *, attempts: int
    ) -> _Outcome:
        """Send once; a failure is recorded here, a success is for the caller to record."""
        try:
            await channel.send(message)
        except PermanentDeliveryError as err:
            log.error(
                "delivery %s to %s failed for good: %s", delivery_id, message.conversation_id, err
            )
            await self.store.mark_failed(delivery_id, error=str(err), retry_at=None)
            if isinstance(err, RejectedMessageError):
                return _Outcome(sent=False, holds_later=False)
            note = json.dumps({"reason": str(err), "at": time.time()})
            cid = message.conversation_id
            await self.store.put_value(constants.UNREACHABLE_NAMESPACE, cid, note)
            return _Outcome(sent=False)
        except Exception as err:  # transient by kind, or a channel bug: retry, never drop
            wait = err.retry_after if isinstance(err, TransientDeliveryError) else None
            delays = constants.DELIVERY_RETRY_DELAYS
            retry_at = (
                None if attempts >= len(delays) else time.time() + max(wait or 0, delays[attempts])
            )
            log.warning(
                "delivery %s to %s failed (%r); retry at %s",
                delivery_id,
                message.conversation_id,
                err,
                retry_at,
            )
            await self.store.mark_failed(delivery_id, error=str(err), retry_at=retry_at)
            return _Outcome(sent=False, retry_at=retry_at)
        return _Outcome(sent=True, holds_later=False)

    async def deliver_pending(self) -> int:
        """Retry due outbox entries once; return how many were delivered."""
        delivered = 0
        now = time.time()
        for pending in await self.store.pending_deliveries(now=now):
            channel = self.channels.get(pending.channel)
            if channel is None:
                continue
            lease = now + constants.DELIVERY_LEASE
            if not await self.store.claim_delivery(pending.id, now=now, until=lease):
                continue  # another sender took it since it was read
            outcome = await self._attempt(
                channel, pending.id, pending.message, attempts=pending.attempts
            )
            if outcome.sent:
                await self.store.mark_delivered(pending.id)
                delivered += 1
        return delivered

    async def _retry_deliveries(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.deliver_pending()
            except Exception:  # the loop must outlive a failing store or channel
                log.exception("retrying deliveries failed")


@dataclass(frozen=True)
class _Outcome:
    """How one delivery attempt went."""

    sent: bool
    retry_at: float | None = None
    """When a failed message is tried again; None: never."""
    holds_later: bool = True
    """Whether the conversation's later messages must wait for this one."""


_PROFILE_KEYS = {"first_name", "last_name", "username", "language_code", "chat_type", "name"}


def _agent_messages(conversation_id: str, event: AgentMessage) -> list[BotMessage]:
    """What the customer receives of an agent's message: its text, then each file."""
    meta = {"agent": event.agent}
    texts = (
        [
            BotMessage(
                conversation_id=conversation_id,
                text=event.text,
                metadata=meta,
                timestamp=event.timestamp,
            )
        ]
        if event.text
        else []
    )
    return texts + [
        BotMessage(conversation_id=conversation_id, attachments=(file,), metadata=meta)
        for file in event.attachments
    ]


def _message_key(message: UserMessage) -> tuple[str, str] | None:
    """The store's once-only key of a platform message: its id is only taken to be unique
    within its conversation (two REST clients may both number their messages from 1). The
    conversation id's length comes first, so no two (conversation, id) pairs share a key."""
    if not message.message_id:
        return None
    cid = message.conversation_id
    return message.channel, f"{len(cid)}:{cid}/{message.message_id}"


def _sanitize(message: UserMessage) -> UserMessage:
    """Strip control characters, cut oversized text (noting the cut), then mask card numbers
    in every field (``bot.privacy``): last, so that no later step can rejoin a number."""
    text = _CONTROL.sub("", message.text)
    metadata = message.metadata
    if len(text) > constants.MAX_MESSAGE_CHARS:
        text = text[: constants.MAX_MESSAGE_CHARS]
        metadata = {**metadata, "truncated": True}
    payload = _CONTROL.sub("", message.payload) if message.payload else message.payload
    if text != message.text or metadata is not message.metadata or payload != message.payload:
        message = dataclasses.replace(message, text=text, payload=payload, metadata=metadata)
    return redact_user_message(message)


def _new_state(message: UserMessage) -> ConversationState:
    return ConversationState(
        conversation_id=message.conversation_id,
        channel=message.channel,
        sender_id=message.sender_id,
    )


def _base_language(code: str | None) -> str | None:
    if not code:
        return None
    return "zh" if code.lower().startswith("zh") else code.split("-")[0].lower()


def _cache_dir(root: Path) -> Path:
    return root / constants.CACHE_DIR / "models"
