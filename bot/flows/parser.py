"""Build :class:`~bot.flows.model.Flow` records from Rasa CALM flow YAML, with line-aware problems.

Checks made here need only the flow itself: step shapes, duplicate ids, ``next`` targets that
do not exist, steps no path reaches, conditions that do not parse. Checks against the domain
(unknown slots, responses, actions, flows) are ``bot.validation``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.errors import Problem
from bot.flows.conditions import compile_condition
from bot.flows.model import (
    END,
    ActionStep,
    CallStep,
    CollectStep,
    Flow,
    LinkStep,
    NextRule,
    NluTrigger,
    NoopStep,
    Rejection,
    SetSlotsStep,
    Step,
    Suggestion,
)
from bot.yamlio import line_of

MAX_SUGGESTIONS = 3
"""Quick replies a flow may suggest when it is done."""
_STEP_KINDS = ("collect", "action", "set_slots", "link", "call", "noop")
_COMMON_KEYS = {"id", "next", "description", "metadata"}
_KIND_KEYS: dict[str, set[str]] = {
    "collect": {
        "collect",
        "utter",
        "ask_before_filling",
        "reset_after_flow_ends",
        "rejections",
        "force_slot_filling",
    },
    "action": {"action"},
    "set_slots": {"set_slots"},
    "link": {"link"},
    "call": {"call"},
    "noop": {"noop"},
}


def parse_flows(
    data: Any, file: str, *, is_pattern_file: bool = False
) -> tuple[list[Flow], list[Problem]]:
    """Parse the value of a ``flows:`` key. Never raises: problems come back in the list."""
    problems: list[Problem] = []
    if data is None:
        return [], problems
    if not isinstance(data, Mapping):
        return [], [Problem(file, line_of(data), "'flows' must be a mapping of flow ids to flows")]
    flows = []
    for flow_id, body in data.items():
        line = line_of(data, str(flow_id))
        builder = _FlowBuilder(str(flow_id), file, line)
        flow = builder.build(
            body, is_pattern=is_pattern_file or str(flow_id).startswith("pattern_")
        )
        problems.extend(builder.problems)
        if flow is not None:
            flows.append(flow)
    return flows, problems


class _FlowBuilder:
    def __init__(self, flow_id: str, file: str, line: int | None) -> None:
        self.flow_id = flow_id
        self.file = file
        self.line = line
        self.problems: list[Problem] = []
        self.steps: list[Step] = []
        self.sequence_next: dict[str, str] = {}
        self.explicit_ids: set[str] = set()
        self.counter = 0

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(
            Problem(self.file, line or self.line, f"flow '{self.flow_id}': {message}")
        )

    def build(self, body: Any, *, is_pattern: bool) -> Flow | None:
        if not isinstance(body, Mapping):
            self.problem(self.line, "a flow must be a mapping with 'description' and 'steps'")
            return None
        raw_steps = body.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.problem(line_of(body, "steps"), "'steps' must be a non-empty list")
            return None
        if not isinstance(body.get("description", ""), str):
            self.problem(line_of(body, "description"), "'description' must be text")
        guard = body.get("if")
        if guard is not None:
            self.check_condition(guard, line_of(body, "if"))
        self.parse_sequence(raw_steps)
        self.check_targets()
        flow = Flow(
            id=self.flow_id,
            description=str(body.get("description") or ""),
            name=str(body["name"]) if body.get("name") is not None else None,
            guard=guard if isinstance(guard, str | bool) else None,
            nlu_triggers=self.parse_triggers(body.get("nlu_trigger"), line_of(body, "nlu_trigger")),
            persisted_slots=self.parse_names(body.get("persisted_slots"), "persisted_slots"),
            suggestions=self.parse_suggestions(
                body.get("suggestions"), line_of(body, "suggestions")
            ),
            steps=tuple(self.steps),
            file=self.file,
            line=self.line,
            is_pattern=is_pattern,
            translation=self.parse_translation(
                body.get("translation"), line_of(body, "translation")
            ),
        )
        flow._sequence_next.update(self.sequence_next)
        self.check_reachable(flow)
        return flow

    def parse_suggestions(self, raw: Any, line: int | None) -> tuple[Suggestion, ...]:
        """kefu's ``suggestions``: up to three ``{title, payload, translation: {lang: title}}``."""
        if raw is None:
            return ()
        if not isinstance(raw, list) or len(raw) > MAX_SUGGESTIONS:
            self.problem(line, f"'suggestions' must be a list of at most {MAX_SUGGESTIONS}")
            return ()
        out: list[Suggestion] = []
        for item in raw:
            translation = item.get("translation") if isinstance(item, Mapping) else None
            if (
                not isinstance(item, Mapping)
                or not isinstance(item.get("title"), str)
                or not isinstance(item.get("payload"), str)
                or not str(item["payload"]).startswith("/")
                or not isinstance(translation or {}, Mapping)
            ):
                self.problem(
                    line_of(item) or line,
                    "a suggestion needs a 'title', a '/...' 'payload' and may have a "
                    "'translation' mapping languages to titles",
                )
                continue
            out.append(
                Suggestion(
                    title=item["title"],
                    payload=item["payload"],
                    translation={str(k): str(v) for k, v in (translation or {}).items()},
                )
            )
        return tuple(out)

    def parse_translation(self, raw: Any, line: int | None) -> dict[str, dict[str, str]]:
        """``{language: {name: ..., description: ...}}``: text values only."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
            self.problem(line, "'translation' must map languages to {name: ...}")
            return {}
        return {
            str(lang): {str(k): str(v) for k, v in props.items() if isinstance(v, str)}
            for lang, props in raw.items()
        }

    # --- steps -------------------------------------------------------------------------

    def parse_sequence(self, raw_steps: list[Any]) -> str | None:
        """Parse a list of steps; return the id of its first step."""
        ids: list[str] = []
        for raw in raw_steps:
            step = self.parse_step(raw)
            if step is not None:
                ids.append(step.id)
        for current, following in zip(ids, [*ids[1:], END], strict=False):  # ids may be empty
            self.sequence_next[current] = following
        return ids[0] if ids else None

    def parse_step(self, raw: Any) -> Step | None:
        line = line_of(raw)
        if not isinstance(raw, Mapping):
            self.problem(line, f"a step must be a mapping, got {raw!r}")
            return None
        kinds = [k for k in _STEP_KINDS if k in raw]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            self.problem(
                line, f"a step needs exactly one of {', '.join(_STEP_KINDS)} (found {found})"
            )
            return None
        kind = kinds[0]
        unknown = set(raw) - _COMMON_KEYS - _KIND_KEYS[kind]
        if unknown:
            self.problem(
                line, f"unknown key(s) in {kind} step: {', '.join(sorted(map(str, unknown)))}"
            )
        step_id = self.step_id(raw, kind, line)
        common: dict[str, Any] = {
            "id": step_id,
            "description": raw.get("description"),
            "line": line,
            "metadata": dict(raw.get("metadata") or {}),
        }
        # Register the step before parsing nested branches so ids follow document order.
        index = len(self.steps)
        self.steps.append(NoopStep(**common))
        common["next"] = self.parse_next(raw.get("next"), line_of(raw, "next"))
        step = self.make_step(kind, raw, common, line)
        if step is None:
            del self.steps[index]
            return None
        self.steps[index] = step
        return step

    def step_id(self, raw: Mapping[str, Any], kind: str, line: int | None) -> str:
        explicit = raw.get("id")
        if explicit is not None:
            text = str(explicit)
            if text in self.explicit_ids:
                self.problem(line, f"duplicate step id '{text}'")
            if text == END:
                self.problem(line, f"'{END}' is reserved and cannot be a step id")
            self.explicit_ids.add(text)
            return text
        self.counter += 1
        label = raw.get(kind)
        suffix = "_" + re.sub(r"\W+", "", label) if isinstance(label, str) else ""
        return f"{self.counter}_{kind}{suffix}"

    def make_step(
        self, kind: str, raw: Mapping[str, Any], common: dict[str, Any], line: int | None
    ) -> Step | None:
        value = raw[kind]
        if kind == "collect":
            if not isinstance(value, str) or not value:
                self.problem(line, "'collect' needs a slot name")
                return None
            return CollectStep(
                collect=value,
                utter=str(raw.get("utter") or f"utter_ask_{value}"),
                ask_before_filling=bool(raw.get("ask_before_filling", False)),
                reset_after_flow_ends=bool(raw.get("reset_after_flow_ends", True)),
                rejections=self.parse_rejections(raw.get("rejections"), line),
                force_slot_filling=bool(raw.get("force_slot_filling", False)),
                **common,
            )
        if kind == "set_slots":
            slots = self.parse_set_slots(value, line)
            return None if slots is None else SetSlotsStep(slots=slots, **common)
        if kind == "noop":
            return NoopStep(**common)
        if not isinstance(value, str) or not value:
            self.problem(line, f"'{kind}' needs a name")
            return None
        if kind == "action":
            return ActionStep(action=value, **common)
        if kind == "link":
            if any(rule.target != END for rule in common["next"]):
                self.problem(line, "a 'link' step must be the last step: it cannot have a 'next'")
            return LinkStep(link=value, **common)
        return CallStep(call=value, **common)

    def parse_set_slots(self, value: Any, line: int | None) -> tuple[tuple[str, Any], ...] | None:
        items = value if isinstance(value, list) else [value]
        pairs: list[tuple[str, Any]] = []
        for item in items:
            if not isinstance(item, Mapping) or not item:
                self.problem(line, "'set_slots' must be a list of {slot: value} mappings")
                return None
            pairs.extend((str(k), v) for k, v in item.items())
        return tuple(pairs)

    def parse_rejections(self, value: Any, line: int | None) -> tuple[Rejection, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(line, "'rejections' must be a list of {if, utter}")
            return ()
        out = []
        for item in value:
            item_line = line_of(item) or line
            if not isinstance(item, Mapping) or not isinstance(item.get("if"), str):
                self.problem(item_line, "each rejection needs an 'if' condition")
                continue
            self.check_condition(item["if"], item_line)
            utter = item.get("utter")
            out.append(Rejection(condition=item["if"], utter=str(utter) if utter else None))
        return tuple(out)

    def parse_next(self, value: Any, line: int | None) -> tuple[NextRule, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (NextRule(target=value),)
        if not isinstance(value, list):
            self.problem(line, "'next' must be a step id, END, or a list of if/then/else")
            return ()
        rules = []
        for item in value:
            item_line = line_of(item) or line
            if not isinstance(item, Mapping):
                self.problem(item_line, "each 'next' branch must be an 'if'/'then' or an 'else'")
                continue
            if "else" in item:
                target = self.branch_target(item["else"], item_line)
                if target:
                    rules.append(NextRule(target=target))
                continue
            if "if" not in item or "then" not in item:
                self.problem(item_line, "a 'next' branch needs both 'if' and 'then'")
                continue
            condition = item["if"]
            if not isinstance(condition, str | bool):
                self.problem(item_line, "an 'if' must be a condition")
                continue
            self.check_condition(condition, item_line)
            target = self.branch_target(item["then"], item_line)
            if target:
                rules.append(NextRule(target=target, condition=condition))
        return tuple(rules)

    def branch_target(self, value: Any, line: int | None) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value:
            return self.parse_sequence(value)
        self.problem(line, "a branch must name a step id, END, or list steps")
        return None

    def parse_triggers(self, value: Any, line: int | None) -> tuple[NluTrigger, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        triggers = []
        for item in items:
            if isinstance(item, str):
                triggers.append(NluTrigger(intent=item))
            elif isinstance(item, Mapping) and isinstance(item.get("intent"), str | Mapping):
                intent = item["intent"]
                if isinstance(intent, Mapping):
                    name, confidence = intent.get("name"), intent.get("confidence_threshold", 0.0)
                else:
                    name, confidence = intent, item.get("confidence_threshold", 0.0)
                if not isinstance(name, str) or not isinstance(confidence, int | float):
                    self.problem(line_of(item) or line, "an nlu_trigger needs an intent name")
                    continue
                triggers.append(NluTrigger(intent=name, min_confidence=float(confidence)))
            else:
                self.problem(line_of(item) or line, "an nlu_trigger needs an intent name")
        return tuple(triggers)

    def parse_names(self, value: Any, key: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(line_of(value), f"'{key}' must be a list of slot names")
            return ()
        return tuple(value)

    # --- whole-flow checks ----------------------------------------------------------------

    def check_condition(self, condition: Any, line: int | None) -> None:
        if isinstance(condition, bool):
            return
        if not isinstance(condition, str):
            self.problem(line, f"a condition must be text, got {condition!r}")
            return
        if "{{" in condition:  # templated conditions (patterns) are checked once filled in
            return
        parsed = compile_condition(condition)
        if not parsed.is_valid:
            self.problem(
                line, f"condition {condition!r} does not parse: {'; '.join(parsed.errors)}"
            )

    def check_targets(self) -> None:
        ids = {s.id for s in self.steps}
        for step in self.steps:
            for rule in step.next:
                if rule.target != END and rule.target not in ids:
                    self.problem(
                        step.line,
                        f"step '{step.id}' has next '{rule.target}', which is no step of this flow",
                    )

    def check_reachable(self, flow: Flow) -> None:
        first = flow.first_step
        if first is None:
            return
        seen: set[str] = set()
        todo = [first.id]
        while todo:
            step_id = todo.pop()
            step = flow.step(step_id)
            if step_id in seen or step is None:
                continue
            seen.add(step_id)
            if step.next:
                todo.extend(rule.target for rule in step.next)
                if all(rule.condition is not None for rule in step.next):
                    todo.append(flow.next_in_sequence(step))
            elif not isinstance(step, LinkStep):
                todo.append(flow.next_in_sequence(step))
        for step in flow.steps:
            if step.id not in seen:
                self.problem(step.line, f"step '{step.id}' can never be reached")
