"""A model's commands, parsed tolerantly and cleaned before anything runs.

The model speaks Rasa CALM's command language, in either of its forms: ``start flow X`` /
``StartFlow(X)``, ``set slot S V`` / ``SetSlot(S, V)``, ``cancel flow``, ``disambiguate flows
A B`` / ``Clarify(A, B)``, ``provide info`` / ``SearchAndReply()``, ``offtopic reply`` /
``ChitChat()``, ``hand over`` / ``HumanHandoff()``, ``repeat message``, ``skip question``. Lines
may carry bullets, numbers, backticks or sit in a code fence; a line that is none of these is
ignored. Tool calls with the same names (``start_flow`` with ``{"flow": ...}``...) count too.

What the model says is input from outside, like a customer's message, so :func:`clean` does
what Rasa's command processor does: commands naming an unknown flow or slot are dropped, only
slots with a ``from_llm`` mapping are set (never one only actions fill), a value the slot's
type refuses or that the slot already has is dropped, a slot already answered becomes a
correction, a clarification with one option becomes a start, duplicates merge and at most one
cancel survives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.dialogue import commands as cmd
from bot.dialogue.stack import Frame, collecting, top_user_frame
from bot.domain import Domain, SlotDefinition
from bot.flows.conditions import compile_condition
from bot.flows.model import Flow, FlowsList

REPEAT_PATTERN = "pattern_repeat_bot_messages"
SKIP_PATTERN = "pattern_skip_question"

_NAME = r"[\"'`]?(?P<{}>[\w.-]+)[\"'`]?"
_LINES: list[tuple[str, re.Pattern[str]]] = [
    ("start", re.compile(rf"^start\s*flow\s*\(?\s*{_NAME.format('flow')}\s*\)?$", re.I)),
    (
        "set",
        re.compile(
            rf"^set\s*slot\s*\(?\s*{_NAME.format('slot')}\s*(?:,|\s|=)\s*(?P<value>.+?)\s*\)?$",
            re.I,
        ),
    ),
    ("cancel", re.compile(r"^cancel\s*flow\s*(\(\s*\))?$", re.I)),
    ("clarify", re.compile(r"^(?:disambiguate\s*flows?|clarify)\s*\(?(?P<options>.*?)\)?$", re.I)),
    (
        "search",
        re.compile(
            r"^(?:provide\s*info|search\s*and\s*reply|knowledge\s*answer)\s*(\(\s*\))?$", re.I
        ),
    ),
    ("chitchat", re.compile(r"^(?:offtopic\s*reply|chit\s*chat)\s*(\(\s*\))?$", re.I)),
    ("handoff", re.compile(r"^(?:hand\s*over|human\s*handoff)\s*(\(\s*\))?$", re.I)),
    (
        "repeat",
        re.compile(r"^repeat(?:\s*(?:last)?\s*bot)?\s*messages?\s*(\(\s*\))?$", re.I),
    ),
    ("skip", re.compile(r"^skip\s*question\s*(\(\s*\))?$", re.I)),
]
_BULLET = re.compile(r"^\s*(?:[-*•+>]|\d+[.)])\s*")
_TOOL_ARGS = {"start_flow": ("flow",), "set_slot": ("slot", "value")}


def parse_commands(
    text: str,
    tool_calls: Sequence[tuple[str, str]] = (),
    *,
    restore: Callable[[str], str] = str,
) -> list[cmd.Command]:
    """The commands in a model's answer, in order; ``restore`` puts placeholders back in values."""
    lines = [_tool_line(name, arguments) for name, arguments in tool_calls]
    lines += text.splitlines()
    out: list[cmd.Command] = []
    for raw in lines:
        line = _BULLET.sub("", raw.strip()).strip().strip("`").strip().rstrip(".;,").strip()
        if not line or line.startswith("```"):
            continue
        for kind, pattern in _LINES:
            match = pattern.match(line)
            if match is not None:
                out.append(_command(kind, match, restore))
                break
    return out


def _command(kind: str, match: re.Match[str], restore: Callable[[str], str]) -> cmd.Command:
    if kind == "start":
        return cmd.StartFlow(match.group("flow"))
    if kind == "set":
        return cmd.SetSlot(match.group("slot"), _value(restore(match.group("value"))))
    if kind == "clarify":
        options = re.split(r"[\s,]+", match.group("options"))
        return cmd.Clarify(tuple(o.strip("\"'`[]") for o in options if o.strip("\"'`[]")))
    if kind == "repeat":
        return cmd.StartPattern(REPEAT_PATTERN)
    if kind == "skip":
        return cmd.StartPattern(SKIP_PATTERN)
    simple: dict[str, cmd.Command] = {
        "cancel": cmd.CancelFlow(),
        "search": cmd.Search(),
        "chitchat": cmd.ChitChat(),
        "handoff": cmd.HumanHandoff(reason="the assistant's model suggested a human"),
    }
    return simple[kind]


def _value(raw: str) -> Any:
    value = raw.strip().strip("\"'`").strip()
    return None if value.lower() in ("none", "null", "undefined", "") else value


def _tool_line(name: str, arguments: str) -> str:
    """A tool call as the command line it stands for (``start_flow`` → ``start flow X``)."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return ""
    if not isinstance(args, dict):
        return ""
    words = name.replace("_", " ")
    if name == "disambiguate_flows":
        flows = args.get("flows")
        return f"{words} {' '.join(map(str, flows))}" if isinstance(flows, list) else ""
    values = [str(args.get(key, "")) for key in _TOOL_ARGS.get(name, ())]
    return " ".join([words, *values])


def llm_fillable(slot: SlotDefinition) -> bool:
    """True for a slot a model may set: one with a ``from_llm`` mapping, as in Rasa CALM.

    Slots only actions fill (``controlled``) never are, nor slots that understanding fills
    from entities or text alone.
    """
    return any(m.type == "from_llm" for m in slot.mappings)


def clean(
    commands: Sequence[cmd.Command],
    *,
    flows: FlowsList,
    domain: Domain,
    slots: Mapping[str, Any],
    stack: list[Frame],
) -> list[cmd.Command]:
    """The commands that may run, in the order the executor wants them (see the module doc)."""
    on_stack = {str(f["flow_id"]) for f in stack}
    active = top_user_frame(stack)
    pending = collecting(stack)
    pending_slot = str(pending["collect"]) if pending else None

    starts: list[str] = []
    clarify: tuple[str, ...] = ()
    for command in commands:
        if isinstance(command, cmd.StartFlow):
            _add_start(command.flow_id, starts, flows, slots, on_stack)
        elif isinstance(command, cmd.Clarify):
            options = [
                o for o in dict.fromkeys(command.options) if _startable(o, flows, slots, on_stack)
            ]
            if len(options) == 1:
                _add_start(options[0], starts, flows, slots, on_stack)
            elif len(options) > 1 and not clarify:
                clarify = tuple(options)

    active_slots: set[str] = set()
    for frame in stack:
        flow = flows.get(str(frame["flow_id"]))
        if flow is not None and not flow.is_pattern:
            active_slots |= collected_slots(flows, flow)
    allowed = set(active_slots)
    for flow_id in starts:
        allowed |= collected_slots(flows, flows.flows[flow_id])
    if pending_slot:
        allowed.add(pending_slot)

    sets: list[cmd.Command] = []
    corrections: dict[str, Any] = {}
    seen_slots: set[str] = set()
    for command in commands:
        if not isinstance(command, cmd.SetSlot) or command.name in seen_slots:
            continue
        definition = domain.slots.get(command.name)
        if definition is None or not llm_fillable(definition) or command.name not in allowed:
            continue
        ok, value = coerce(definition, command.value)
        current = slots.get(command.name)
        if not ok or value == current:
            continue
        seen_slots.add(command.name)
        if current is not None and command.name != pending_slot and command.name in active_slots:
            corrections[command.name] = value
        else:
            sets.append(cmd.SetSlot(command.name, value))

    out: list[cmd.Command] = list(sets)
    if corrections:
        out.append(cmd.CorrectSlots(corrections))
    if active is not None and any(isinstance(c, cmd.CancelFlow) for c in commands):
        out.append(cmd.CancelFlow())
    out.extend(cmd.StartFlow(flow_id) for flow_id in starts)
    if clarify:
        out.append(cmd.Clarify(clarify))
    others: list[cmd.Command] = []
    for command in commands:
        if isinstance(command, cmd.StartPattern):
            if command.flow_id not in flows or (command.flow_id == SKIP_PATTERN and not pending):
                continue
        elif not isinstance(command, cmd.Search | cmd.ChitChat | cmd.HumanHandoff):
            continue
        if command not in others:
            others.append(command)
    return out + others


def coerce(slot: SlotDefinition, value: Any) -> tuple[bool, Any]:
    """``(True, typed value)`` when ``value`` fits the slot's type, else ``(False, None)``."""
    if value is None:
        return True, None
    text = str(value).strip()
    if slot.type == "bool":
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True, True
        if lowered in ("false", "no", "0"):
            return True, False
        return False, None
    if slot.type == "float":
        try:
            number = float(text)
        except ValueError:
            return False, None
        too_low = slot.min_value is not None and number < slot.min_value
        too_high = slot.max_value is not None and number > slot.max_value
        return (False, None) if too_low or too_high else (True, number)
    if slot.type == "categorical":
        for allowed in slot.values:
            if str(allowed).lower() == text.lower():
                return True, allowed
        return False, None
    if slot.type == "list":
        return True, [part.strip() for part in text.split(",") if part.strip()]
    return True, text


def _startable(
    flow_id: str, flows: FlowsList, slots: Mapping[str, Any], on_stack: set[str]
) -> bool:
    flow = flows.get(flow_id)
    if flow is None or flow.is_pattern or flow_id in on_stack:
        return False
    return flow.guard is None or bool(compile_condition(flow.guard).evaluate(dict(slots)))


def _add_start(
    flow_id: str, starts: list[str], flows: FlowsList, slots: Mapping[str, Any], on_stack: set[str]
) -> None:
    if flow_id not in starts and _startable(flow_id, flows, slots, on_stack):
        starts.append(flow_id)


def collected_slots(flows: FlowsList, flow: Flow) -> set[str]:
    """Slots ``flow`` collects, with those of the flows it calls."""
    return {step.collect for step in flows.collect_steps_of(flow)}
