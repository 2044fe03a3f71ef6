"""Conversation tests in Rasa's e2e format: the model and its parser.

A file holds ``test_cases:`` and, optionally, top-level ``fixtures:`` (slots set before the
conversation starts) and ``metadata:`` (sent with user messages), both referred to by name,
and ``stub_custom_actions:`` (what a custom action returns instead of running: by action name
for the whole file, or ``<test case>::<action>`` for one case). Rasa assertions kefu cannot
check (``generative_response_is_relevant`` / ``_is_grounded`` need an LLM judge) are noted on
their case, which runs without them.
Steps are grouped into turns: a user step, its assertions, and the classic steps (``bot``,
``utter``, ``slot_was_set``, ``slot_was_not_set``) that follow it. Every mistake becomes a
:class:`~bot.errors.Problem` with file and line, and a case with a problem is left out rather
than run half-understood.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from bot.errors import Problem
from bot.events import Button
from bot.ports import ActionResult
from bot.yamlio import YamlList, line_of, load_yaml_file

STEP_KINDS = ("user", "bot", "utter", "slot_was_set", "slot_was_not_set")
_USER_KEYS = frozenset({"user", "metadata", "assertions", "assertion_order_enabled"})
_CASE_KEYS = frozenset({"test_case", "steps", "fixtures", "metadata"})
_FILE_KEYS = frozenset({"test_cases", "fixtures", "metadata", "stub_custom_actions"})
UNSUPPORTED_ASSERTIONS = frozenset(
    {"generative_response_is_relevant", "generative_response_is_grounded"}
)
"""Rasa assertions judged by an LLM: noted, not checked."""
STUB_SEPARATOR = "::"
_UTTERANCE_KEYS = frozenset({"utter_name", "text_matches", "buttons"})

FlowEventKind = Literal["flow_started", "flow_completed", "flow_cancelled"]
_FLOW_KINDS: dict[str, FlowEventKind] = {
    "flow_started": "flow_started",
    "flow_completed": "flow_completed",
    "flow_cancelled": "flow_cancelled",
}


@dataclass(frozen=True)
class SlotCheck:
    """One slot of a slot step or assertion; ``value`` counts only when ``has_value``."""

    name: str
    value: Any = None
    has_value: bool = False

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}" if self.has_value else self.name


@dataclass(frozen=True, kw_only=True)
class FlowCheck:
    """``flow_started`` / ``flow_completed`` / ``flow_cancelled``."""

    line: int | None
    kind: FlowEventKind
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ActionCheck:
    """``action_executed``."""

    line: int | None
    name: str


@dataclass(frozen=True, kw_only=True)
class UtteranceCheck:
    """``bot_uttered`` or, ``negated``, ``bot_did_not_utter``: every given criterion must hold."""

    line: int | None
    negated: bool = False
    utter_name: str | None = None
    text_matches: re.Pattern[str] | None = None
    buttons: tuple[Button, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class SlotsCheck:
    """``slot_was_set`` or, ``negated``, ``slot_was_not_set`` (as a step or an assertion)."""

    line: int | None
    negated: bool = False
    slots: tuple[SlotCheck, ...]


@dataclass(frozen=True, kw_only=True)
class ClarificationCheck:
    """``pattern_clarification_contains``: the clarification offered each of these flows."""

    line: int | None
    flow_names: tuple[str, ...]


Assertion = FlowCheck | ActionCheck | UtteranceCheck | SlotsCheck | ClarificationCheck


@dataclass(frozen=True, kw_only=True)
class BotStep:
    """A classic ``bot: text`` (exact text) or ``utter: utter_name`` step."""

    line: int | None
    text: str | None = None
    utter_name: str | None = None


ClassicStep = BotStep | SlotsCheck


@dataclass(frozen=True, kw_only=True)
class UserStep:
    """What the tester says; ``metadata`` is already resolved from its name."""

    line: int | None
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    assertions: tuple[Assertion, ...] = ()
    ordered: bool = False
    """``assertion_order_enabled``: each assertion must match at or after the previous one."""


@dataclass(frozen=True)
class Turn:
    """A user step and the classic steps that follow it up to the next user step."""

    user: UserStep
    steps: tuple[ClassicStep, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TestCase:
    """One conversation to run; fixtures and metadata are already resolved."""

    __test__: ClassVar[bool] = False

    name: str
    file: str
    line: int | None
    turns: tuple[Turn, ...]
    slots: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stubs: dict[str, ActionResult] = field(default_factory=dict)
    """Custom actions answered by the test instead of run, by action name."""
    unsupported: tuple[str, ...] = ()
    """What the case contains that kefu does not check, with lines (``line 6: ...``)."""


def parse_test_file(path: Path) -> tuple[list[TestCase], list[Problem]]:
    """Read one test file; return its valid cases and every problem found."""
    data, problems = load_yaml_file(path)
    if problems:
        return [], problems
    parser = _Parser(str(path))
    cases = parser.parse(data)
    return cases, parser.problems


class _Parser:
    """Collects problems while turning one file's YAML into test cases."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.fixtures: dict[str, dict[str, Any]] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.stubs: dict[str, ActionResult] = {}
        self.unsupported: list[str] = []

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def parse(self, data: Any) -> list[TestCase]:
        if not isinstance(data, dict) or "test_cases" not in data:
            self.problem(line_of(data), "a test file must be a mapping with a 'test_cases:' list")
            return []
        for key in data:
            if key not in _FILE_KEYS:
                self.problem(line_of(data, key), f"unknown top-level key {key!r}")
        self.fixtures = self._named(data, "fixtures", self._fixture_slots)
        self.metadata = self._named(data, "metadata", self._metadata_values)
        self.stubs = self._stubs(
            data.get("stub_custom_actions"), line_of(data, "stub_custom_actions")
        )
        cases: list[TestCase] = []
        seen: set[str] = set()
        for node, line in self._items(
            data["test_cases"], line_of(data, "test_cases"), "test_cases"
        ):
            case = self._case(node, line)
            if case is None:
                continue
            if case.name in seen:
                self.problem(case.line, f"duplicate test case name {case.name!r}")
                continue
            seen.add(case.name)
            cases.append(case)
        return cases

    # --- generic shapes ---------------------------------------------------------------

    def _items(self, node: Any, line: int | None, what: str) -> list[tuple[Any, int | None]]:
        if not isinstance(node, list):
            self.problem(line, f"{what} must be a list")
            return []
        lines = node.item_lines if isinstance(node, YamlList) else [line] * len(node)
        return list(zip(node, lines, strict=True))

    def _single(self, node: Any, line: int | None, what: str) -> tuple[str, Any] | None:
        if not isinstance(node, dict) or len(node) != 1:
            self.problem(line_of(node) or line, f"{what} must be a mapping with a single key")
            return None
        return next(iter(node.items()))

    def _text(self, value: Any, line: int | None, what: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            self.problem(line, f"{what} must be a non-empty text")
            return None
        return str(value)

    def _keys(self, node: dict[str, Any], allowed: frozenset[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.problem(line_of(node, key), f"unknown key {key!r} in {what}")

    # --- fixtures and metadata --------------------------------------------------------

    def _named(
        self, data: dict[str, Any], key: str, values: Callable[[Any, int | None], dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if key not in data:
            return out
        for node, line in self._items(data[key], line_of(data, key), key):
            entry = self._single(node, line, f"an entry of {key}")
            if entry is not None:
                out[entry[0]] = values(entry[1], line_of(node, entry[0]))
        return out

    def _fixture_slots(self, node: Any, line: int | None) -> dict[str, Any]:
        slots: dict[str, Any] = {}
        for item, item_line in self._items(node, line, "a fixture"):
            pair = self._single(item, item_line, "a fixture slot")
            if pair is not None:
                slots[pair[0]] = pair[1]
        return slots

    def _metadata_values(self, node: Any, line: int | None) -> dict[str, Any]:
        if not isinstance(node, dict):
            self.problem(line, "metadata must be a mapping of keys to values")
            return {}
        return dict(node)

    def _metadata_ref(self, node: dict[str, Any]) -> dict[str, Any]:
        if "metadata" not in node:
            return {}
        line = line_of(node, "metadata")
        name = self._text(node["metadata"], line, "metadata (a name)")
        if name is not None and name not in self.metadata:
            self.problem(line, f"unknown metadata {name!r}")
        return dict(self.metadata.get(name or "", {}))

    def _stubs(self, node: Any, line: int | None) -> dict[str, ActionResult]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problem(line, "stub_custom_actions must map action names to events and responses")
            return {}
        stubs: dict[str, ActionResult] = {}
        for name, body in node.items():
            where = line_of(node, name)
            if not isinstance(body, dict):
                self.problem(where, f"stub {name!r} must be a mapping of events and responses")
                continue
            self._keys(body, frozenset({"events", "responses"}), f"stub {name!r}")
            parts = []
            for key in ("events", "responses"):
                items = body.get(key) or []
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    at = line_of(body, key) or where
                    self.problem(at, f"stub {name!r}: {key} must be a list")
                    items = []
                if key == "events" and not all(isinstance(i.get("event"), str) for i in items):
                    self.problem(line_of(body, key), f"stub {name!r}: each event needs 'event'")
                    items = []
                parts.append([dict(i) for i in items])
            stubs[str(name)] = ActionResult(events=parts[0], responses=parts[1])
        return stubs

    def _case_stubs(self, name: str) -> dict[str, ActionResult]:
        """The file's stubs, a case's own (``<case>::<action>``) winning over the file's."""
        stubs: dict[str, ActionResult] = {}
        for key, result in self.stubs.items():
            if STUB_SEPARATOR not in key:
                stubs[key] = result
        for key, result in self.stubs.items():
            case, sep, action = key.partition(STUB_SEPARATOR)
            if sep and case == name:
                stubs[action] = result
        return stubs

    # --- cases and steps --------------------------------------------------------------

    def _case(self, node: Any, line: int | None) -> TestCase | None:
        if not isinstance(node, dict):
            self.problem(line, "a test case must be a mapping with 'test_case' and 'steps'")
            return None
        before = len(self.problems)
        self.unsupported = []
        self._keys(node, _CASE_KEYS, "a test case")
        name = self._text(node.get("test_case"), line_of(node, "test_case"), "test_case")
        slots: dict[str, Any] = {}
        if "fixtures" in node:
            fixtures_line = line_of(node, "fixtures")
            for ref, ref_line in self._items(node["fixtures"], fixtures_line, "fixtures"):
                if ref in self.fixtures:
                    slots.update(self.fixtures[ref])
                else:
                    self.problem(ref_line, f"unknown fixture {ref!r}")
        metadata = self._metadata_ref(node)
        turns = self._turns(node.get("steps"), line_of(node, "steps"))
        if name is None or len(self.problems) > before:
            return None
        return TestCase(
            name=name,
            file=self.file,
            line=line,
            turns=turns,
            slots=slots,
            metadata=metadata,
            stubs=self._case_stubs(name),
            unsupported=tuple(self.unsupported),
        )

    def _turns(self, node: Any, line: int | None) -> tuple[Turn, ...]:
        turns: list[Turn] = []
        pending: list[ClassicStep] = []
        user: UserStep | None = None
        items = self._items(node, line, "steps")
        if node is not None and not items:
            self.problem(line, "steps must not be empty")
        for item, item_line in items:
            step = self._step(item, item_line)
            if isinstance(step, UserStep):
                if user is not None:
                    turns.append(Turn(user, tuple(pending)))
                user, pending = step, []
            elif step is not None and user is None:
                self.problem(step.line, "a test case must start with a user step")
            elif step is not None:
                pending.append(step)
        if user is not None:
            turns.append(Turn(user, tuple(pending)))
        return tuple(turns)

    def _step(self, node: Any, line: int | None) -> UserStep | ClassicStep | None:
        kinds = [key for key in node if key in STEP_KINDS] if isinstance(node, dict) else []
        if len(kinds) != 1:
            found = ", ".join(map(repr, node)) if isinstance(node, dict) else repr(node)
            self.problem(
                line_of(node) or line,
                f"a step needs exactly one of {', '.join(STEP_KINDS)}; found {found}",
            )
            return None
        kind = kinds[0]
        self._keys(node, _USER_KEYS if kind == "user" else frozenset({kind}), f"a {kind} step")
        value, value_line = node[kind], line_of(node, kind)
        if kind == "user":
            return self._user(node, value_line)
        if kind in ("bot", "utter"):
            text = self._text(value, value_line, kind)
            if text is None:
                return None
            if kind == "bot":
                return BotStep(line=value_line, text=text)
            return BotStep(line=value_line, utter_name=text)
        return SlotsCheck(
            line=value_line,
            negated=kind == "slot_was_not_set",
            slots=self._step_slots(value, value_line, kind),
        )

    def _user(self, node: dict[str, Any], line: int | None) -> UserStep | None:
        text = self._text(node["user"], line, "user")
        ordered = node.get("assertion_order_enabled", False)
        if not isinstance(ordered, bool):
            self.problem(line_of(node, "assertion_order_enabled"), "must be true or false")
        assertions: list[Assertion] = []
        if "assertions" in node:
            where = line_of(node, "assertions")
            for item, item_line in self._items(node["assertions"], where, "assertions"):
                assertion = self._assertion(item, item_line)
                if assertion is not None:
                    assertions.append(assertion)
        metadata = self._metadata_ref(node)
        if text is None:
            return None
        return UserStep(
            line=line,
            text=text,
            metadata=metadata,
            assertions=tuple(assertions),
            ordered=ordered is True,
        )

    def _step_slots(self, node: Any, line: int | None, what: str) -> tuple[SlotCheck, ...]:
        slots: list[SlotCheck] = []
        for item, item_line in self._items(node, line, what):
            if isinstance(item, str):
                slots.append(SlotCheck(item))
            elif (pair := self._single(item, item_line, f"an item of {what}")) is not None:
                slots.append(SlotCheck(pair[0], pair[1], has_value=True))
        return tuple(slots)

    # --- assertions -------------------------------------------------------------------

    def _assertion(self, node: Any, line: int | None) -> Assertion | None:
        pair = self._single(node, line, "an assertion")
        if pair is None:
            return None
        kind, body = pair
        where = line_of(node, kind)
        flow_kind = _FLOW_KINDS.get(kind)
        if flow_kind is not None:
            return self._flow(flow_kind, body, where)
        if kind == "action_executed":
            name = self._text(body, where, kind)
            return None if name is None else ActionCheck(line=where, name=name)
        if kind in ("bot_uttered", "bot_did_not_utter"):
            return self._utterance(body, where, negated=kind == "bot_did_not_utter")
        if kind in ("slot_was_set", "slot_was_not_set"):
            return self._assertion_slots(body, where, negated=kind == "slot_was_not_set")
        if kind == "pattern_clarification_contains":
            names = [self._text(n, n_line, kind) for n, n_line in self._items(body, where, kind)]
            valid = tuple(n for n in names if n is not None)
            return ClarificationCheck(line=where, flow_names=valid) if valid else None
        if kind in UNSUPPORTED_ASSERTIONS:
            self.unsupported.append(f"line {where}: {kind} (needs an LLM judge; not checked)")
            return None
        self.problem(where, f"unknown assertion {kind!r}")
        return None

    def _flow(self, kind: FlowEventKind, body: Any, line: int | None) -> FlowCheck | None:
        if kind == "flow_started" or not isinstance(body, dict):
            flow_id = self._text(body, line, kind)
            return None if flow_id is None else FlowCheck(line=line, kind=kind, flow_id=flow_id)
        self._keys(body, frozenset({"flow_id", "flow_step_id"}), kind)
        flow_id = self._text(body.get("flow_id"), line_of(body, "flow_id"), f"{kind} flow_id")
        step_id = None
        if "flow_step_id" in body:
            step_id = self._text(body["flow_step_id"], line_of(body, "flow_step_id"), kind)
        if flow_id is None:
            return None
        return FlowCheck(line=line, kind=kind, flow_id=flow_id, step_id=step_id)

    def _utterance(self, body: Any, line: int | None, *, negated: bool) -> UtteranceCheck | None:
        what = "bot_did_not_utter" if negated else "bot_uttered"
        if not isinstance(body, dict) or not body.keys() & _UTTERANCE_KEYS:
            self.problem(line, f"{what} needs one or more of utter_name, text_matches, buttons")
            return None
        self._keys(body, _UTTERANCE_KEYS, what)
        utter_name = None
        if "utter_name" in body:
            utter_name = self._text(body["utter_name"], line_of(body, "utter_name"), "utter_name")
        pattern = None
        if "text_matches" in body:
            pattern = self._pattern(body["text_matches"], line_of(body, "text_matches"))
        buttons = None
        if "buttons" in body:
            buttons = self._buttons(body["buttons"], line_of(body, "buttons"))
        return UtteranceCheck(
            line=line, negated=negated, utter_name=utter_name, text_matches=pattern, buttons=buttons
        )

    def _pattern(self, value: Any, line: int | None) -> re.Pattern[str] | None:
        text = self._text(value, line, "text_matches")
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as err:
            self.problem(line, f"text_matches is not a valid regular expression: {err}")
            return None

    def _buttons(self, node: Any, line: int | None) -> tuple[Button, ...]:
        buttons: list[Button] = []
        for item, item_line in self._items(node, line, "buttons"):
            if not isinstance(item, dict) or set(item) != {"title", "payload"}:
                self.problem(line_of(item) or item_line, "a button needs exactly title and payload")
                continue
            buttons.append(Button(title=str(item["title"]), payload=str(item["payload"])))
        return tuple(buttons)

    def _assertion_slots(self, body: Any, line: int | None, *, negated: bool) -> SlotsCheck:
        what = "slot_was_not_set" if negated else "slot_was_set"
        slots: list[SlotCheck] = []
        for item, item_line in self._items(body, line, what):
            if not isinstance(item, dict) or "name" not in item:
                self.problem(line_of(item) or item_line, f"an item of {what} needs a name")
                continue
            self._keys(item, frozenset({"name", "value"}), what)
            name = self._text(item["name"], line_of(item, "name"), "slot name")
            if name is not None:
                slots.append(SlotCheck(name, item.get("value"), has_value="value" in item))
        return SlotsCheck(line=line, negated=negated, slots=tuple(slots))
