"""The flow executor: applies commands to the dialogue stack and runs steps until it must listen.

Semantics follow Rasa CALM: a ``collect`` step pushes ``pattern_collect_information`` until its
slot is filled; a flow started while another runs interrupts it and, once done,
``pattern_continue_interrupted`` offers to resume; ``call`` returns to its parent; ``link``
replaces the flow; a flow that ends resets the slots it collected (but ``persisted_slots``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from bot import constants
from bot.dialogue import commands as cmd
from bot.dialogue.control import StepOutcome
from bot.dialogue.default_actions import ACTION_LISTEN, REGISTRY, DefaultActions
from bot.dialogue.stack import (
    START,
    Frame,
    PatternContext,
    collecting,
    frames_from,
    is_user_frame,
    new_frame,
    top_user_frame,
    user_frames,
)
from bot.dialogue.turn import Turn
from bot.errors import ActionError
from bot.events import (
    ActionExecuted,
    AllSlotsReset,
    BotMessage,
    Button,
    ConversationPaused,
    ConversationResumed,
    FlowCompleted,
    FlowInterrupted,
    FlowStarted,
    FollowupAction,
    Restarted,
    SlotSet,
    event_from_dict,
)
from bot.flows.conditions import compile_condition
from bot.flows.model import (
    END,
    ActionStep,
    CallStep,
    CollectStep,
    Flow,
    LinkStep,
    SetSlotsStep,
    Step,
)
from bot.ports import ActionResult, ActionRunner
from bot.responses import ResponseRenderer
from bot.tracker import tracker_for

log = logging.getLogger(__name__)

_TEMPLATE = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")
LISTEN = StepOutcome.LISTEN
CONTINUE = StepOutcome.CONTINUE


class FlowExecutor:
    """Runs flows for one project. Stateless between turns: everything lives in the Turn.

    It is the :class:`~bot.dialogue.control.FlowControl` the default actions it runs see.
    """

    def __init__(
        self,
        *,
        renderer: ResponseRenderer,
        action_runner: ActionRunner | None,
        defaults: DefaultActions,
    ) -> None:
        self.renderer = renderer
        self.action_runner = action_runner
        self.defaults = defaults

    # --- commands ---------------------------------------------------------------------

    def apply(self, turn: Turn, commands: Sequence[cmd.Command]) -> None:
        """Change slots and the stack as the commands say; patterns are pushed last-wins."""
        stack = turn.state.stack
        for command in commands:
            if isinstance(command, cmd.SetSlot):
                turn.set_slot(command.name, command.value)
            elif isinstance(command, cmd.RejectValue):
                frame = collecting(stack)
                if frame is not None and frame.get("collect") == command.slot:
                    frame["rejected_text"] = command.text
        for command in commands:
            if isinstance(command, cmd.StartFlow):
                self.start_flow(turn, command.flow_id)
            elif isinstance(command, cmd.CancelFlow):
                self.push_cancel(turn)
            elif isinstance(command, cmd.CorrectSlots):
                self.push_pattern(turn, "pattern_correction", corrected_slots=command.slots)
            elif isinstance(command, cmd.Clarify):
                self.push_pattern(
                    turn, "pattern_clarification", clarification_options=list(command.options)
                )
            elif isinstance(command, cmd.ChitChat):
                if command.intent:
                    self.push_pattern(turn, "pattern_chitchat", intent=command.intent)
                else:
                    self.push_pattern(turn, "pattern_chitchat")
            elif isinstance(command, cmd.Search):
                self.push_pattern(turn, "pattern_search")
            elif isinstance(command, cmd.CannotHandle):
                self.push_pattern(turn, "pattern_cannot_handle", reason=command.reason)
            elif isinstance(command, cmd.HumanHandoff):
                self.push_pattern(turn, "pattern_human_handoff", reason=command.reason)
            elif isinstance(command, cmd.InternalError):
                self.push_pattern(turn, "pattern_internal_error", error_type=command.error_type)
            elif isinstance(command, cmd.StartPattern):
                self.push_pattern(turn, command.flow_id)

    def start_flow(self, turn: Turn, flow_id: str, *, frame_type: str | None = None) -> None:
        """Start the customer's flow ``flow_id`` unless it is running or unknown; a flow
        started over another interrupts it unless ``frame_type`` says otherwise."""
        stack = turn.state.stack
        if any(f["flow_id"] == flow_id for f in stack) or turn.flows.get(flow_id) is None:
            return
        current = top_user_frame(stack)
        if frame_type is None:
            frame_type = "interrupt" if current is not None else "regular"
        if current is not None and frame_type == "interrupt":
            turn.emit(FlowInterrupted(flow_id=current["flow_id"], step_id=current["step_id"]))
        stack.append(new_frame(flow_id, frame_type=frame_type))
        turn.emit(FlowStarted(flow_id=flow_id))

    def push_pattern(self, turn: Turn, flow_id: str, **context: Unpack[PatternContext]) -> None:
        """Push pattern ``flow_id`` with this context (ignored when the pattern is missing)."""
        if turn.flows.get(flow_id) is None:
            log.warning("pattern %s is missing; ignoring", flow_id)
            return
        turn.state.stack.append(new_frame(flow_id, **context))
        turn.emit(FlowStarted(flow_id=flow_id))

    def push_cancel(self, turn: Turn) -> None:
        """Push ``pattern_cancel_flow`` for the running flow (and the flows that called it)."""
        stack = turn.state.stack
        current = top_user_frame(stack)
        if current is None:
            return
        while current.get("frame_type") == "call":  # cancelling a called flow cancels its caller
            callers = user_frames(stack[: stack.index(current)])
            if not callers:
                break
            current = callers[-1]
        flow = turn.flows.get(current["flow_id"])
        cancelled = [f["frame_id"] for f in frames_from(stack, current)]
        self.push_pattern(
            turn,
            "pattern_cancel_flow",
            canceled_name=flow.name_in(turn.language) if flow else current["flow_id"],
            canceled_frames=cancelled,
        )

    # --- running steps ------------------------------------------------------------------

    async def advance(self, turn: Turn) -> None:
        """Run steps until a flow waits for the customer or nothing is left to do."""
        stack = turn.state.stack
        for _ in range(constants.MAX_ACTIONS_PER_TURN):
            if not stack:
                return
            frame = stack[-1]
            flow = turn.flows.get(frame["flow_id"])
            if flow is None:
                log.warning("dropping frame of unknown flow %s", frame["flow_id"])
                stack.pop()
                continue
            step = self.next_step(turn, flow, frame)
            if step is None:
                self.end_frame(turn, frame, flow)
                continue
            previous = frame["step_id"]
            frame["step_id"] = step.id
            try:
                outcome = await self.run_step(turn, flow, frame, step)
            except ActionError as err:
                log.error("conversation %s: %s", turn.state.conversation_id, err)
                frame["step_id"] = previous
                await self.report_error(turn)
                return
            if outcome == LISTEN:
                return
        log.error("conversation %s: too many steps in one turn", turn.state.conversation_id)
        turn.state.stack.clear()
        await self.report_error(turn)

    async def report_error(self, turn: Turn) -> None:
        """Tell the customer something failed; run only the error pattern, then listen."""
        self.push_pattern(turn, "pattern_internal_error", error_type="action_failed")
        frame = turn.state.stack[-1] if turn.state.stack else None
        flow = turn.flows.get("pattern_internal_error")
        while frame is not None and flow is not None and frame in turn.state.stack:
            step = self.next_step(turn, flow, frame)
            if step is None:
                self.end_frame(turn, frame, flow, quiet=True)
                return
            frame["step_id"] = step.id
            if isinstance(step, ActionStep):
                self.utter(turn, self.resolve(step.action, frame), frame)

    def next_step(self, turn: Turn, flow: Flow, frame: Frame) -> Step | None:
        """The step to run after the frame's current one, or None when the flow is over."""
        if frame["step_id"] == START:
            return flow.first_step
        current = flow.step(frame["step_id"])
        if current is None:
            return None
        target = None
        if current.next:
            slots, context = turn.slots(), frame
            for rule in current.next:
                condition = rule.condition
                if isinstance(condition, str):
                    condition = self.resolve(condition, frame)
                if condition is None or compile_condition(condition).evaluate(slots, context):
                    target = rule.target
                    break
        if target is None:
            target = END if isinstance(current, LinkStep) else flow.next_in_sequence(current)
        return None if target == END else flow.step(target)

    async def run_step(self, turn: Turn, flow: Flow, frame: Frame, step: Step) -> StepOutcome:
        """Run one step of ``frame``'s flow."""
        if isinstance(step, CollectStep):
            return self.collect(turn, frame, step)
        if isinstance(step, ActionStep):
            return await self.run_action(turn, self.resolve(step.action, frame), frame)
        if isinstance(step, SetSlotsStep):
            for name, value in step.slots:
                turn.set_slot(name, value)
        elif isinstance(step, LinkStep):
            self.end_frame(turn, frame, flow, linked=True)
            self.start_flow(turn, step.link, frame_type="link")
        elif isinstance(step, CallStep):
            self.start_flow(turn, step.call, frame_type="call")
        return CONTINUE

    def collect(self, turn: Turn, frame: Frame, step: CollectStep) -> StepOutcome:
        """Ask for the step's slot (through ``pattern_collect_information``) unless it is filled."""
        slots = turn.slots()
        if step.ask_before_filling and slots.get(step.collect) is not None:
            turn.set_slot(step.collect, None)
        elif slots.get(step.collect) is not None:
            return CONTINUE
        ask_action = f"action_ask_{step.collect}"
        utter = step.utter
        if not turn.domain.has_response(utter) and self.knows(ask_action):
            utter = ask_action
        self.push_pattern(
            turn,
            "pattern_collect_information",
            collect=step.collect,
            utter=utter,
            collect_action="action_listen",
            rejections=[{"if": r.condition, "utter": r.utter} for r in step.rejections],
            owner=frame["frame_id"],
        )
        return CONTINUE

    def end_frame(
        self, turn: Turn, frame: Frame, flow: Flow, *, linked: bool = False, quiet: bool = False
    ) -> None:
        """Pop a finished frame, reset its flow's slots, and push what comes after it."""
        stack = turn.state.stack
        if frame in stack:
            stack.remove(frame)
        turn.emit(FlowCompleted(flow_id=flow.id, step_id=frame["step_id"]))
        if not is_user_frame(frame):
            self.reset_flow_slots(turn, flow)
            return
        if frame.get("frame_type") != "call":
            self.reset_flow_slots(turn, flow)
        if linked or quiet or frame.get("frame_type") == "call":
            return
        self.suggest(turn, flow)
        remaining = user_frames(stack)
        if remaining and frame.get("frame_type") == "interrupt":
            interrupted = remaining[-1]
            interrupted_flow = turn.flows.get(interrupted["flow_id"])
            name = (
                interrupted_flow.name_in(turn.language)
                if interrupted_flow
                else interrupted["flow_id"]
            )
            self.push_pattern(
                turn,
                "pattern_continue_interrupted",
                interrupted_flow_options=name,
                interrupted_frame=interrupted["frame_id"],
                previous_flow_name=flow.name_in(turn.language),
            )
        elif not remaining and not stack:
            self.push_pattern(
                turn, "pattern_completed", previous_flow_name=flow.name_in(turn.language)
            )

    def suggest(self, turn: Turn, flow: Flow) -> None:
        """The flow's suggested next questions as quick replies under its last message, in
        the conversation's language, unless that message brings buttons of its own."""
        if not flow.suggestions or not turn.messages or turn.messages[-1].buttons:
            return
        last = turn.messages[-1]
        buttons = tuple(
            Button(title=s.title_in(turn.language), payload=s.payload) for s in flow.suggestions
        )
        suggested = dataclasses.replace(last, buttons=buttons)
        turn.messages[-1] = suggested
        turn.events = [suggested if e is last else e for e in turn.events]

    def reset_flow_slots(self, turn: Turn, flow: Flow) -> None:
        """Forget what the flow collected, except slots it persists; called flows' too."""
        keep = set(flow.persisted_slots)
        for step in turn.flows.collect_steps_of(flow):
            name = step.collect
            if not step.reset_after_flow_ends or name in keep:
                continue
            if turn.state.slots.get(name) is not None:
                turn.set_slot(name, None)

    # --- actions ------------------------------------------------------------------------

    def resolve(self, text: str, frame: Frame) -> str:
        """Fill ``{{context.x}}`` placeholders (pattern flows name actions this way)."""
        context: Mapping[str, object] = frame
        return _TEMPLATE.sub(lambda m: str(context.get(m.group(1), "")), text)

    def knows(self, name: str) -> bool:
        """Whether the action runner has a custom action ``name``."""
        return self.action_runner is not None and self.action_runner.knows(name)

    async def run_action(self, turn: Turn, name: str, frame: Frame) -> StepOutcome:
        """Run action ``name``: listen, a default action, a response or a custom action."""
        if name == ACTION_LISTEN:
            turn.emit(ActionExecuted(name=name))
            return LISTEN
        turn.state.latest_action = name
        if name in REGISTRY:
            turn.emit(ActionExecuted(name=name))
            return await self.defaults.run(name, turn, frame, self)
        if turn.domain.has_response(name):
            turn.emit(ActionExecuted(name=name))
            self.utter(turn, name, frame)
            return CONTINUE
        if self.knows(name):
            await self.run_custom(turn, name)
            return CONTINUE
        if name.startswith("validate_"):
            return CONTINUE  # a validation action is optional
        raise ActionError(
            f"action {name!r} is neither a response, a default action nor a custom action"
        )

    def context_of(self, turn: Turn, frame: Frame | None) -> dict[str, Any]:
        """A frame's context for templates, over the context of the frame that pushed it."""
        if frame is None:
            return {}
        owner_id = frame.get("owner")
        owner = next((f for f in turn.state.stack if f["frame_id"] == owner_id), None)
        context: dict[str, Any] = dict(owner) if owner is not None else {}
        context.update(frame)
        return context

    def render(
        self,
        turn: Turn,
        name: str,
        frame: Frame | None,
        *,
        rng: random.Random | None,
        **extra: Any,
    ) -> BotMessage | None:
        """Response ``name`` rendered in ``frame``'s context, not said; None when missing."""
        context = self.context_of(turn, frame)
        context.update(extra)
        return self.renderer.render(
            name,
            conversation_id=turn.state.conversation_id,
            slots=turn.slots(),
            language=turn.language,
            channel=turn.channel,
            context=context,
            rng=rng,
        )

    def utter(self, turn: Turn, name: str, frame: Frame | None = None, **extra: Any) -> bool:
        """Say response ``name`` in ``frame``'s context; False when the domain has none."""
        message = self.render(turn, name, frame, rng=turn.rng, **extra)
        if message is None:
            log.warning("response %s is missing", name)
            return False
        turn.say(message)
        return True

    async def run_custom(self, turn: Turn, name: str) -> None:
        """Run custom action ``name`` through the action runner and apply what it returns."""
        runner = self.action_runner
        assert runner is not None

        async def call(idempotency_key: str | None) -> ActionResult:
            tracker = tracker_for(
                turn.state, events=await turn.recent_events(), domain_slots=turn.domain.slots
            )
            tracker["slots"] = turn.slots()
            return await runner.run(
                name, tracker=tracker, domain=turn.domain.raw, idempotency_key=idempotency_key
            )

        result = await (turn.journal.run(name, call) if turn.journal else call(None))
        turn.emit(ActionExecuted(name=name))
        for response in result.responses:
            self.utter_response(turn, response)
        followups: list[str] = []
        for data in result.events:
            if not isinstance(data, dict):
                raise ActionError(f"action {name!r} returned an event that is not a dict: {data!r}")
            event = event_from_dict(data)
            if isinstance(event, SlotSet):
                turn.set_slot(event.name, event.value)
            elif isinstance(event, AllSlotsReset):
                turn.reset_all_slots()
            elif isinstance(event, Restarted):
                turn.state.stack.clear()
                turn.reset_all_slots()
                turn.emit(event)
            elif isinstance(event, FollowupAction):
                followups.append(event.name)
            elif isinstance(event, ConversationPaused):
                turn.state.paused = True
                turn.emit(event)
            elif isinstance(event, ConversationResumed):
                turn.state.paused = False
                turn.emit(event)
            elif isinstance(event, BotMessage):
                turn.say(
                    BotMessage(
                        conversation_id=turn.state.conversation_id,
                        text=event.text,
                        buttons=event.buttons,
                        image=event.image,
                        custom=event.custom,
                    )
                )
            else:
                turn.emit(event)
        for followup in followups[:1]:
            if self.knows(followup):
                await self.run_custom(turn, followup)
            elif turn.domain.has_response(followup):
                self.utter(turn, followup)

    def utter_response(self, turn: Turn, response: dict[str, Any]) -> None:
        """Turn one rasa-sdk dispatcher message into bot messages."""
        name = response.get("response") or response.get("template")
        if isinstance(name, str) and name:
            extra = {k: v for k, v in response.items() if k not in {"response", "template"}}
            self.utter(turn, name, None, **extra)
            return
        buttons = tuple(
            Button.from_dict(b) for b in response.get("buttons") or () if isinstance(b, dict)
        )
        text = response.get("text")
        if (
            text is None
            and not buttons
            and not response.get("image")
            and response.get("custom") is None
        ):
            return
        turn.say(
            BotMessage(
                conversation_id=turn.state.conversation_id,
                text=str(text) if text is not None else None,
                buttons=buttons,
                image=response.get("image"),
                custom=response.get("custom") or response.get("json_message"),
            )
        )
