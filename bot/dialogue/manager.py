"""The dialogue manager: what the bot does with one customer message, or one desk intervention.

For a message: start a session when one is due, understand the message (in the conversation's
language, trusting only payloads the bot offered), route it to the desk while an agent has the
conversation, turn it into commands (offline understanding, then the LLM's second opinion),
drop what the customer may not set, run the flows, and hand off when a trigger fires. It works
on a :class:`~bot.dialogue.turn.Turn`; loading, locking and saving are the turn runner's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot.desk.triggers import HandoffTriggers
from bot.dialogue import commands as cmd
from bot.dialogue import trust
from bot.dialogue.command_generator import generate_commands
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.language import initial_language, set_language
from bot.dialogue.platform_commands import command_payload, restarts_session
from bot.dialogue.session import starts_session
from bot.dialogue.stack import remove_frames, top_user_frame
from bot.dialogue.turn import Turn
from bot.events import (
    AgentMessage,
    BotMessage,
    ConversationPaused,
    ConversationResumed,
    Event,
    UserMessage,
)
from bot.interpreter import Interpreter, Parse
from bot.ports import CommandSource, HandoffDesk
from bot.project import Project
from bot.state import ConversationState
from bot.understanding.language import conversation_language

__all__ = ["DialogueManager"]

LEAVE_MESSAGE_PATTERN = "pattern_handoff_leave_message"
"""The pattern that takes a message for the team from a customer who stopped waiting."""
LEAVE_MESSAGE_SLOT = "handoff_message"


class DialogueManager:
    """Computes a turn's events and messages for one project."""

    def __init__(
        self,
        project: Project,
        *,
        interpreter: Interpreter,
        executor: FlowExecutor,
        desk: HandoffDesk | None = None,
        triggers: HandoffTriggers | None = None,
        command_source: CommandSource | None = None,
    ) -> None:
        self.project = project
        self.interpreter = interpreter
        self.executor = executor
        self.desk = desk
        self.triggers = triggers
        self.command_source = command_source

    async def respond(self, turn: Turn, message: UserMessage, *, trusted: bool = False) -> None:
        """Add to ``turn`` the customer's message (understood) and what the bot does about it.

        ``trusted`` is for kefu's own messages (a reminder's intent with its entities): their
        payload counts though no button offered it.
        """
        state = turn.state
        if message.profile:
            state.profile.update(message.profile)
        command = message.command
        now = time.time()
        restart = restarts_session(command)
        if starts_session(
            state,
            now,
            expiration_minutes=self.project.domain.session_config.session_expiration_time,
            restart=restart,
        ):
            state.stack.clear()
            self.executor.push_pattern(turn, "pattern_session_start")
            await self.executor.advance(turn)
            state.session_started_at = now
        parse, payload = await self._understand(state, message, trusted=trusted)
        set_language(
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
        if restart and not state.paused:
            state.remember(turn.events)
            return
        if state.paused:
            if self.desk is not None and await self.desk.forward(user_event):
                state.remember(turn.events)
                return
            state.paused = False  # no desk or no open handoff: the bot takes the conversation back
        commands = self._commands(turn, message, parse)
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

    async def _understand(
        self, state: ConversationState, message: UserMessage, *, trusted: bool
    ) -> tuple[Parse, str | None]:
        """The message's parse and the payload that counted (None: none did).

        A platform command (Telegram's /help) means its intent, like a button would. Only a
        payload the bot offered (or a plain /intent) counts: ``bot.dialogue.trust``. Parsing
        that needs a sentence encoder runs in a thread, so other conversations go on meanwhile.
        """
        language = initial_language(
            state.language, message.language, self.project.domain.default_language
        )
        sent = message.payload or command_payload(message.command)
        intents = self.interpreter.intents
        payload = sent if trusted else trust.trusted_payload(state, sent, intents=intents)
        parse_message = functools.partial(
            self.interpreter.parse, message.text, payload=payload, language=language
        )
        if trust.typed_payload_refused(sent, payload, text=message.text):
            return Parse.refused(message.text, language=language), payload
        if payload is None and self.interpreter.may_be_slow(message.text):
            # Most messages need no encoder (or one that just read them): a thread hop would
            # cost more than the parse.
            quick = self.interpreter.parse_if_quick(message.text, language=language)
            if quick is not None:
                return quick, payload
            return await asyncio.to_thread(parse_message), payload
        return parse_message(), payload

    def _commands(self, turn: Turn, message: UserMessage, parse: Parse) -> list[cmd.Command]:
        if message.truncated:
            return [cmd.InternalError("rasa_internal_error_user_input_too_long")]
        if not message.text.strip() and not message.payload and not message.attachments:
            return [cmd.InternalError("rasa_internal_error_user_input_empty")]
        return generate_commands(
            turn, parse, synonyms=self.project.nlu.synonyms, command=message.command
        )

    def failed(self, turn: Turn, message: UserMessage) -> None:
        """A turn that keeps the customer's message and apologises, changing nothing else."""
        turn.events.append(message)
        self.executor.utter(turn, "utter_internal_error_rasa")
        turn.state.remember(turn.events)

    async def intervene(
        self,
        turn: Turn,
        *,
        events: Sequence[Event] = (),
        utter: Sequence[tuple[str, Mapping[str, Any]]] = (),
        pause: bool | None = None,
    ) -> list[BotMessage]:
        """Apply a desk intervention to ``turn`` (see ``bot.ports.ConversationControl``);
        return what the customer must receive: ``utter`` rendered, then each
        ``AgentMessage``'s text and files, then what resuming says."""
        state = turn.state
        if pause is True:
            state.paused = True
            turn.emit(ConversationPaused())
            _drop_leave_message(turn)
        for event in events:
            turn.emit(event)  # masked like every event a turn emits
        recorded = list(turn.events)
        for name, context in utter:
            self.executor.utter(turn, name, None, **context)
        messages = list(turn.messages)
        for event in recorded:
            if isinstance(event, AgentMessage):
                messages += _agent_messages(state.conversation_id, event)
        if pause is False:
            before = len(turn.messages)
            await self._resume(turn)
            messages += turn.messages[before:]
        trust.remember_offers(state, messages)
        state.remember(turn.events)
        state.note_utterances(turn.events)
        return messages

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


def _drop_leave_message(turn: Turn) -> None:
    """An agent took the conversation from the bot while the customer was asked for a message
    to leave for the team: that question is moot now (they talk to the agent), and must not
    come back when the agent hands the conversation back."""
    stack = turn.state.stack
    ids = {f["frame_id"] for f in stack if f.get("flow_id") == LEAVE_MESSAGE_PATTERN}
    ids |= {f["frame_id"] for f in stack if f.get("owner") in ids}
    if ids:
        remove_frames(stack, ids)
        turn.set_slot(LEAVE_MESSAGE_SLOT, None)


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
