"""Matching one turn's events against its test steps and assertions, and saying what happened.

Classic steps are checked first, as Rasa checks them: each ``bot``/``utter`` step is met by any
of the turn's bot messages (two steps may match the same one; order does not matter), slot
steps by any of the turn's slot events. Then the user step's assertions are checked
against the same events, in the order written when ``assertion_order_enabled`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.events import (
    ActionExecuted,
    BotMessage,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    SlotSet,
)
from bot.testing.e2e_format import (
    ActionCheck,
    Assertion,
    BotStep,
    ClarificationCheck,
    FlowCheck,
    SlotCheck,
    SlotsCheck,
    Turn,
    UtteranceCheck,
)

CLARIFICATION_PATTERN = "pattern_clarification"

_FLOW_EVENTS: dict[str, type[FlowStarted | FlowCompleted | FlowCancelled]] = {
    "flow_started": FlowStarted,
    "flow_completed": FlowCompleted,
    "flow_cancelled": FlowCancelled,
}


@dataclass(frozen=True)
class Mismatch:
    """The first unmet step or assertion of a turn: its line and what was expected."""

    line: int | None
    expected: str


def check_turn(turn: Turn, events: Sequence[Event]) -> Mismatch | None:
    """The first step or assertion of ``turn`` that ``events`` (that turn's records) do not meet."""
    replies = [event for event in events if isinstance(event, BotMessage)]
    for step in turn.steps:
        if isinstance(step, BotStep):
            if not any(_bot_step_matches(step, reply) for reply in replies):
                got = ", ".join(map(_describe_reply, replies)) or "nothing"
                return Mismatch(step.line, f"{_describe_bot_step(step)}, but it said {got}")
        elif _find(step, events, 0) is None:
            return Mismatch(step.line, describe_assertion(step))
    start = 0
    for assertion in turn.user.assertions:
        found = _find(assertion, events, start)
        if found is None:
            order = " (after the previous assertion)" if turn.user.ordered and start else ""
            return Mismatch(assertion.line, describe_assertion(assertion) + order)
        if turn.user.ordered:
            start = found
    return None


def describe_assertion(assertion: Assertion) -> str:
    """What an assertion (or slot step) expects, in words."""
    if isinstance(assertion, FlowCheck):
        verb = assertion.kind.removeprefix("flow_")
        at = f" at step {assertion.step_id!r}" if assertion.step_id else ""
        return f"flow {assertion.flow_id!r} to be {verb}{at}"
    if isinstance(assertion, ActionCheck):
        return f"action {assertion.name!r} to be executed"
    if isinstance(assertion, UtteranceCheck):
        verb = "not to utter" if assertion.negated else "to utter"
        return f"the bot {verb} a message with {_describe_criteria(assertion)}"
    if isinstance(assertion, SlotsCheck):
        verb = "not to be set" if assertion.negated else "to be set"
        return f"slots {', '.join(map(str, assertion.slots))} {verb}"
    names = ", ".join(map(repr, assertion.flow_names))
    return f"{CLARIFICATION_PATTERN} to offer {names}"


def describe_turn(events: Sequence[Event]) -> list[str]:
    """What actually happened in a turn, a few readable lines for a failure report."""
    lines = [f"bot said {_describe_reply(e)}" for e in events if isinstance(e, BotMessage)]
    if not lines:
        lines.append("bot said nothing")
    slots = [f"{e.name}={e.value!r}" for e in events if isinstance(e, SlotSet)]
    lines.append(f"slots set: {', '.join(slots) or 'none'}")
    for kind, cls in _FLOW_EVENTS.items():
        flows = [e.flow_id for e in events if isinstance(e, cls)]
        lines.append(f"flows {kind.removeprefix('flow_')}: {', '.join(flows) or 'none'}")
    actions = [e.name for e in events if isinstance(e, ActionExecuted)]
    lines.append(f"actions: {', '.join(actions) or 'none'}")
    return lines


def _find(assertion: Assertion, events: Sequence[Event], start: int) -> int | None:
    """Index of the event meeting ``assertion`` at or after ``start``; None when unmet.

    A negative check looks at the whole turn and, when met, returns ``start`` unchanged.
    """
    if isinstance(assertion, SlotsCheck):
        return _find_slots(assertion, events, start)
    if isinstance(assertion, ClarificationCheck):
        return _find_clarification(assertion, events, start)
    if isinstance(assertion, UtteranceCheck) and assertion.negated:
        met = not any(_utterance_matches(assertion, e) for e in events)
        return start if met else None
    for index in range(start, len(events)):
        if _matches(assertion, events[index]):
            return index
    return None


def _matches(assertion: FlowCheck | ActionCheck | UtteranceCheck, event: Event) -> bool:
    if isinstance(assertion, FlowCheck):
        return (
            isinstance(event, _FLOW_EVENTS[assertion.kind])
            and event.flow_id == assertion.flow_id
            and (assertion.step_id is None or getattr(event, "step_id", None) == assertion.step_id)
        )
    if isinstance(assertion, ActionCheck):
        return isinstance(event, ActionExecuted) and event.name == assertion.name
    return _utterance_matches(assertion, event)


def _utterance_matches(check: UtteranceCheck, event: Event) -> bool:
    return (
        isinstance(event, BotMessage)
        and (check.utter_name is None or event.response == check.utter_name)
        and (check.text_matches is None or check.text_matches.search(event.text or "") is not None)
        and (check.buttons is None or event.buttons == check.buttons)
    )


def _find_slots(check: SlotsCheck, events: Sequence[Event], start: int) -> int | None:
    if check.negated:
        met = not any(_slot_matches(slot, e) for slot in check.slots for e in events)
        return start if met else None
    found = start
    for slot in check.slots:
        index = next((i for i in range(start, len(events)) if _slot_matches(slot, events[i])), None)
        if index is None:
            return None
        found = max(found, index)
    return found


def _slot_matches(slot: SlotCheck, event: Event) -> bool:
    return (
        isinstance(event, SlotSet)
        and event.name == slot.name
        and (not slot.has_value or _same_value(event.value, slot.value))
    )


def _same_value(actual: Any, expected: Any) -> bool:
    """Equal, or equal as text: YAML ``4`` meets an extracted ``"4"``; None meets only None."""
    if actual is None or expected is None:
        return actual is expected
    return bool(actual == expected) or str(actual) == str(expected)


def _find_clarification(
    check: ClarificationCheck, events: Sequence[Event], start: int
) -> int | None:
    for index in range(start, len(events)):
        event = events[index]
        if isinstance(event, FlowStarted) and event.flow_id == CLARIFICATION_PATTERN:
            offered = " ".join(_offered(e) for e in events[index:] if isinstance(e, BotMessage))
            if all(name.casefold() in offered for name in check.flow_names):
                return index
    return None


def _offered(message: BotMessage) -> str:
    titles = " ".join(button.title for button in message.buttons)
    return f"{message.text or ''} {titles}".casefold()


def _bot_step_matches(step: BotStep, reply: BotMessage) -> bool:
    if step.utter_name is not None:
        return reply.response == step.utter_name
    return (reply.text or "").strip() == (step.text or "").strip()


def _describe_bot_step(step: BotStep) -> str:
    if step.utter_name is not None:
        return f"the bot to utter {step.utter_name!r}"
    return f"the bot to say {step.text!r}"


def _describe_reply(reply: BotMessage) -> str:
    parts = [reply.response or "(no response name)", repr(reply.text or "")]
    if reply.buttons:
        buttons = ", ".join(f"{b.title!r} -> {b.payload!r}" for b in reply.buttons)
        parts.append(f"[buttons: {buttons}]")
    return " ".join(parts)


def _describe_criteria(check: UtteranceCheck) -> str:
    criteria = []
    if check.utter_name is not None:
        criteria.append(f"utter_name {check.utter_name!r}")
    if check.text_matches is not None:
        criteria.append(f"text matching {check.text_matches.pattern!r}")
    if check.buttons is not None:
        buttons = ", ".join(f"{b.title!r} -> {b.payload!r}" for b in check.buttons)
        criteria.append(f"buttons [{buttons}]")
    return " and ".join(criteria)
