"""Actions the engine itself provides to patterns (``action_cancel_flow``...), and their registry.

:data:`REGISTRY` names every default action and its handler, explicitly: the executor runs a
name from it (an unknown name is an error, never a silent no-op) and validation accepts a flow
that names one. ``action_listen`` is the executor's own step and belongs to the names only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from bot import constants
from bot.dialogue.control import FlowControl, StepOutcome
from bot.dialogue.stack import Frame, is_user_frame, new_frame, remove_frames, top_user_frame
from bot.dialogue.turn import Turn
from bot.errors import ActionError, LLMError
from bot.events import (
    BotMessage,
    Button,
    ConversationPaused,
    CsatAnswered,
    CsatCommented,
    FlowCancelled,
    FlowCompleted,
    FlowResumed,
    FlowStarted,
    HandoffRequested,
    Restarted,
    SessionStarted,
    UserMessage,
)
from bot.flows.conditions import compile_condition
from bot.hours import BusinessHours
from bot.ports import AnswerBackend, AnswerRequest, HandoffDesk

log = logging.getLogger(__name__)

ACTION_LISTEN = "action_listen"
"""Wait for the customer: the executor's own step, a default action by name only."""
CONTINUE = StepOutcome.CONTINUE

_REJECTION_RESPONSES = {
    "bool": "utter_boolean_slot_rejection",
    "categorical": "utter_categorical_slot_rejection",
    "float": "utter_float_slot_rejection",
}


class DefaultActions:
    """Runs the engine's own actions; each handler says how the executor goes on."""

    def __init__(
        self,
        *,
        answer_backend: AnswerBackend | None,
        desk: HandoffDesk | None = None,
        hours: BusinessHours | None = None,
        asks_model: bool = False,
    ) -> None:
        self.answer_backend = answer_backend
        self.desk = desk
        self.hours = hours
        self.asks_model = asks_model
        """The answer backend is an LLM: ``pattern_cannot_handle`` asks it too."""

    async def run(self, name: str, turn: Turn, frame: Frame, control: FlowControl) -> StepOutcome:
        """Run default action ``name`` for ``frame``; ``ActionError`` when there is none."""
        handler = REGISTRY.get(name)
        if handler is None:
            raise ActionError(f"{name!r} is not one of the engine's default actions")
        return await handler(self, turn, frame, control)

    async def action_session_start(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Start a new session, clearing the slots unless the domain carries them over."""
        turn.emit(SessionStarted())
        if not turn.domain.session_config.carry_over_slots_to_new_session:
            turn.reset_all_slots()
        return CONTINUE

    async def action_restart(self, turn: Turn, frame: Frame, control: FlowControl) -> StepOutcome:
        """Forget the conversation: every other flow and every slot."""
        turn.state.stack[:] = [frame]
        turn.reset_all_slots()
        turn.emit(Restarted())
        return CONTINUE

    async def action_clean_stack(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Drop every flow but this pattern's."""
        turn.state.stack[:] = [frame]
        return CONTINUE

    async def action_reset_routing(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Rasa's coexistence router reset; kefu has one dialogue manager, so nothing to reset."""
        return CONTINUE

    async def action_handoff_metric(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Rasa counts handoffs with this action; kefu records ``HandoffRequested`` instead."""
        return CONTINUE

    async def action_hangup(self, turn: Turn, frame: Frame, control: FlowControl) -> StepOutcome:
        """End the conversation's running tasks; a text channel has no call to hang up."""
        turn.state.stack[:] = [frame]
        return CONTINUE

    async def action_repeat_bot_messages(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Say again what the bot said after the customer's previous message."""
        events = await turn.recent_events()
        users = [i for i, e in enumerate(events) if e.get("event") == "user"]
        if len(users) < 2:
            return CONTINUE
        for event in events[users[-2] + 1 : users[-1]]:
            if event.get("event") == "bot":
                fields = {k: v for k, v in event.items() if k not in ("event", "timestamp")}
                message = BotMessage.from_dict(fields)
                turn.say(replace(message, conversation_id=turn.state.conversation_id))
        return CONTINUE

    async def action_run_slot_rejections(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Reject a new value a ``rejections`` condition forbids, or an answer of the wrong type.

        It runs before the question is asked and after each of the customer's turns; a turn
        that left the slot empty (an answer that did not fit, or another question) counts
        towards ``change_tack``, so the question is not asked the same way a third time.
        """
        slot = str(frame.get("collect", ""))
        rejected_text = frame.pop("rejected_text", None)
        value = turn.slots().get(slot)
        if value is None:
            if frame.get("asked"):
                failures = int(frame.get("failures") or 0) + 1
                frame["failures"] = failures
                frame["change_tack"] = failures >= constants.COLLECT_FAILURES_BEFORE_CHANGE
            frame["asked"] = True
            definition = turn.domain.slots.get(slot)
            explained = frame.get("change_tack")  # action_collect_trouble says more instead
            if rejected_text is not None and definition is not None and not explained:
                response = _REJECTION_RESPONSES.get(definition.type)
                if response:
                    control.utter(turn, response, frame, value=rejected_text)
            return CONTINUE
        for rejection in frame.get("rejections") or ():
            if compile_condition(rejection["if"]).evaluate(turn.slots(), frame):
                utter = rejection.get("utter")
                if utter:
                    control.utter(turn, utter, frame, value=value)
                turn.set_slot(slot, None)
                return CONTINUE
        return CONTINUE

    async def action_collect_trouble(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Change tack after turns that left the question unanswered, instead of asking it
        the same way again.

        The project's ``utter_<slot>_trouble`` (another way to find the answer, or a person)
        when it has one, else ``utter_collect_trouble``; the question's own buttons (its
        choices) stay on offer under it.
        """
        specific = f"utter_{frame.get('collect')}_trouble"
        name = specific if turn.domain.has_response(specific) else "utter_collect_trouble"
        trouble, question = (
            control.render(turn, response, frame, rng=turn.rng)
            for response in (name, str(frame.get("utter") or ""))
        )
        if trouble is None:
            return CONTINUE
        if question is not None and not trouble.buttons:
            trouble = dataclasses.replace(trouble, buttons=question.buttons)
        turn.say(trouble)
        return CONTINUE

    async def action_cancel_flow(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Cancel the flows the cancel pattern names, their slots reset."""
        removed = remove_frames(turn.state.stack, set(frame.get("canceled_frames") or ()))
        self.cancelled(turn, removed, control)
        return CONTINUE

    async def action_cancel_interrupted_flows(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Cancel every customer flow and what they called, their slots reset."""
        stack = turn.state.stack
        ids = {f["frame_id"] for f in stack if is_user_frame(f)}
        ids |= {f["frame_id"] for f in stack if f.get("owner") in ids}
        self.cancelled(turn, remove_frames(stack, ids), control)
        return CONTINUE

    def cancelled(self, turn: Turn, removed: list[Frame], control: FlowControl) -> None:
        """Record the removed customer flows as cancelled and reset their slots."""
        for gone in removed:
            flow = turn.flows.get(gone["flow_id"])
            if is_user_frame(gone):
                turn.emit(FlowCancelled(flow_id=gone["flow_id"], step_id=gone["step_id"]))
            if flow is not None:
                control.reset_flow_slots(turn, flow)

    async def action_continue_interrupted_flow(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Record that the flow under this pattern goes on."""
        resumed = top_user_frame(turn.state.stack[:-1])
        if resumed is not None:
            turn.emit(FlowResumed(flow_id=resumed["flow_id"], step_id=resumed["step_id"]))
        return CONTINUE

    async def action_correct_flow_slot(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Set the corrected slots and rewind the flow to where the first of them was asked."""
        corrected: dict[str, Any] = dict(frame.get("corrected_slots") or {})
        stack = turn.state.stack
        for name, value in corrected.items():
            turn.set_slot(name, value)
        for owner in reversed([f for f in stack if is_user_frame(f)]):
            flow = turn.flows.get(owner["flow_id"])
            steps = [s for s in flow.collect_steps() if s.collect in corrected] if flow else []
            if not steps:
                continue
            owner["step_id"] = steps[0].id
            stale = {f["frame_id"] for f in stack if f.get("owner") == owner["frame_id"]}
            # flows the owner called since (and their questions) are stale too
            above = stack[stack.index(owner) + 1 :]
            stale |= {f["frame_id"] for f in above if f is not frame}
            remove_frames(stack, stale)
            break
        return CONTINUE

    async def action_clarify_flows(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Ask which of the candidate flows the customer meant, one button each."""
        buttons = []
        for flow_id in frame.get("clarification_options") or ():
            flow = turn.flows.get(flow_id)
            if flow is None or not flow.nlu_triggers:
                continue
            buttons.append(
                Button(
                    title=flow.name_in(turn.language),
                    payload=f"/{flow.nlu_triggers[0].intent}",
                )
            )
        message = control.render(turn, "utter_clarification_options_rasa", frame, rng=None)
        text = message.text if message is not None else None
        turn.say(
            BotMessage(
                conversation_id=turn.state.conversation_id,
                text=text,
                buttons=tuple(buttons),
                response="utter_clarification_options_rasa",
            )
        )
        return CONTINUE

    async def action_trigger_chitchat(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Answer small talk: ``utter_<intent>``, else the answer backend, else cannot-handle."""
        chosen = frame.get("intent")  # the command generator's pick for a digression
        intent = chosen or (turn.parse.get("intent") or {}).get("name")
        # the message's own intent was not sure enough to count when a model decided
        decided_by_model = "commands" in turn.parse and not chosen
        if intent and not decided_by_model and control.utter(turn, f"utter_{intent}", frame):
            return CONTINUE
        if await self.answer(turn, "chitchat", control):
            return CONTINUE
        control.utter(turn, "utter_cannot_handle", frame)
        return CONTINUE

    async def action_trigger_search(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Answer from the answer backend, or push ``pattern_cannot_handle`` when it has none."""
        if not await self.answer(turn, "search", control):
            turn.state.stack.append(
                new_frame("pattern_cannot_handle", reason="cannot_handle_no_relevant_answer")
            )
            turn.emit(FlowStarted(flow_id="pattern_cannot_handle"))
        return CONTINUE

    async def action_trigger_cannot_handle(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """With an LLM, ask it about a message nothing else could place; ``context.answered``
        tells the pattern whether it did (if not, the pattern's own responses follow)."""
        asked_already = frame.get("reason") == "cannot_handle_no_relevant_answer"  # by search
        text = str(turn.parse.get("text") or "").strip()
        # payload syntax the bot did not offer never goes to the model (as in routing)
        if self.asks_model and not asked_already and text and not text.startswith("/"):
            frame["answered"] = await self.answer(turn, "cannot_handle", control)
        return CONTINUE

    async def answer(self, turn: Turn, kind: str, control: FlowControl) -> bool:
        """Ask the answer backend (knowledge base or LLM); True when it said something."""
        if self.answer_backend is None:
            return False
        request = AnswerRequest(
            text=str(turn.parse.get("text", "")),
            language=turn.language,
            kind=kind,
            conversation_id=turn.state.conversation_id,
            history=tuple(turn.state.transcript),
            slots={k: v for k, v in turn.state.slots.items() if v is not None},
            sentiment=_sentiment(turn.parse),
            deadline=turn.llm_deadline,
        )
        try:
            answer = await self.answer_backend.answer(request)
        except LLMError as err:
            log.warning("answer backend failed for %s: %s", turn.state.conversation_id, err)
            return False
        if answer.handoff:
            control.push_pattern(
                turn, "pattern_human_handoff", reason="answer backend suggested a human"
            )
            return True
        if answer.start_flow and turn.flows.get(answer.start_flow) is not None:
            control.start_flow(turn, answer.start_flow)
            return True
        if not answer.text:
            return False
        turn.say(
            BotMessage(
                conversation_id=turn.state.conversation_id,
                text=answer.text,
                buttons=answer.buttons,
                response=answer.response,
                metadata={"sources": list(answer.sources)},
            )
        )
        return True

    async def action_human_handoff(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Ask the desk for a person, say so, and pause the bot until it hands back."""
        reason = str(frame.get("reason") or "customer asked for a human")
        accepted = self.desk is not None and await self.desk.request_handoff(
            conversation_id=turn.state.conversation_id, reason=reason, state=turn.state
        )
        if not accepted:
            control.utter(turn, "utter_human_handoff_not_available", frame)
            return CONTINUE
        turn.emit(HandoffRequested(reason=reason))
        now = time.time()
        if self.hours is not None and not self.hours.is_open(now):
            # Queued all the same; what the customer writes meanwhile reaches the ticket.
            opens_at = self.hours.describe_opening(now)
            control.utter(turn, "utter_human_handoff_closed", frame, opens_at=opens_at)
        else:
            control.utter(turn, "utter_human_handoff_requested", frame)
        turn.state.paused = True
        turn.emit(ConversationPaused())
        # The bot says nothing more on its own: the handoff ends here, and a task it
        # interrupted stays on the stack, to be offered again when the agent hands back.
        if frame in turn.state.stack:
            turn.state.stack.remove(frame)
        turn.emit(FlowCompleted(flow_id=str(frame["flow_id"]), step_id=str(frame["step_id"])))
        return StepOutcome.LISTEN

    async def action_leave_message(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Pass the message a waiting customer left (``handoff_message``) to their ticket."""
        state = turn.state
        text = turn.slots().get("handoff_message")
        turn.set_slot("handoff_message", None)
        left = False
        if isinstance(text, str) and text.strip() and self.desk is not None:
            # Its id comes from the turn's message: a turn run again (its save failed, the
            # platform sent the message again) leaves it in the thread once.
            journal = turn.journal
            left = await self.desk.forward(
                UserMessage(
                    channel=state.channel,
                    conversation_id=state.conversation_id,
                    sender_id=state.sender_id,
                    text=text.strip(),
                    language=state.language,
                    message_id=journal.derived_id("action_leave_message") if journal else None,
                    metadata={constants.LEFT_MESSAGE_KEY: True},
                )
            )
        response = "utter_handoff_message_left" if left else "utter_human_handoff_not_available"
        control.utter(turn, response, frame)
        return CONTINUE

    async def action_record_handoff_rating(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Record the survey's rating (``handoff_rating``, 1 to 5) as a desk event."""
        score = survey_rating(turn.slots().get("handoff_rating"))
        if score is not None:
            turn.emit(CsatAnswered(score=score))
        return CONTINUE

    async def action_record_handoff_comment(
        self, turn: Turn, frame: Frame, control: FlowControl
    ) -> StepOutcome:
        """Record the survey's comment (unless skipped) as its own event, after the rating's
        (which alone counts as the answer); thank; forget both, so that the next survey asks
        again."""
        slots = turn.slots()
        score = survey_rating(slots.get("handoff_rating"))
        comment = slots.get("handoff_comment")
        if (
            score is not None
            and isinstance(comment, str)
            and comment.strip()
            and comment.strip().lower() != SKIP_COMMENT
        ):
            turn.emit(CsatCommented(comment=comment.strip()))
        control.utter(turn, "utter_handoff_survey_thanks", frame)
        turn.set_slot("handoff_rating", None)
        turn.set_slot("handoff_comment", None)
        return CONTINUE


SKIP_COMMENT = "skip"
"""The survey comment of the Skip button (typing it skips too)."""


def survey_rating(value: Any) -> int | None:
    """A survey rating 1 to 5 from the slot's value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        score = float(value)
    except ValueError:
        return None
    return int(score) if score.is_integer() and 1 <= score <= 5 else None


def _sentiment(parse: dict[str, Any]) -> float | None:
    """The message's sentiment score (-1 to 1), when understanding put one on it."""
    value = parse.get("sentiment")
    if isinstance(value, dict):
        value = value.get("score")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


DefaultAction = Callable[[DefaultActions, Turn, Frame, FlowControl], Awaitable[StepOutcome]]
"""A default action's handler: the runner (its ports), the turn, the pattern's frame, and
what it may ask of the executor."""

REGISTRY: Mapping[str, DefaultAction] = MappingProxyType(
    {
        "action_session_start": DefaultActions.action_session_start,
        "action_restart": DefaultActions.action_restart,
        "action_run_slot_rejections": DefaultActions.action_run_slot_rejections,
        "action_cancel_flow": DefaultActions.action_cancel_flow,
        "action_correct_flow_slot": DefaultActions.action_correct_flow_slot,
        "action_continue_interrupted_flow": DefaultActions.action_continue_interrupted_flow,
        "action_cancel_interrupted_flows": DefaultActions.action_cancel_interrupted_flows,
        "action_clarify_flows": DefaultActions.action_clarify_flows,
        "action_collect_trouble": DefaultActions.action_collect_trouble,
        "action_trigger_chitchat": DefaultActions.action_trigger_chitchat,
        "action_trigger_search": DefaultActions.action_trigger_search,
        "action_trigger_cannot_handle": DefaultActions.action_trigger_cannot_handle,
        "action_human_handoff": DefaultActions.action_human_handoff,
        "action_clean_stack": DefaultActions.action_clean_stack,
        "action_reset_routing": DefaultActions.action_reset_routing,
        "action_hangup": DefaultActions.action_hangup,
        "action_handoff_metric": DefaultActions.action_handoff_metric,
        "action_repeat_bot_messages": DefaultActions.action_repeat_bot_messages,
        "action_leave_message": DefaultActions.action_leave_message,
        "action_record_handoff_rating": DefaultActions.action_record_handoff_rating,
        "action_record_handoff_comment": DefaultActions.action_record_handoff_comment,
    }
)
"""Every default action by name: the one list the executor and validation share."""

DEFAULT_ACTION_NAMES = frozenset(REGISTRY) | {ACTION_LISTEN}
"""Actions flows may name without declaring them in the domain."""
