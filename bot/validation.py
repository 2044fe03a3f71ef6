"""Cross-checks of a loaded project: what flows, NLU data and the domain name must exist.

Parsers report what is wrong inside one file (shapes, YAML syntax); this module reports what
only the whole project can tell: unknown slots, responses, actions, flows and intents,
duplicates across files, duplicate YAML keys. Every problem is reported, none stops the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.dialogue.default_actions import DEFAULT_ACTION_NAMES
from bot.domain import BUILTIN_INTENTS
from bot.errors import Problem
from bot.flows import Flow
from bot.flows.model import ActionStep, CallStep, CollectStep, LinkStep, SetSlotsStep, Step
from bot.llm.prompts import template_problems
from bot.yamlio import line_of

if TYPE_CHECKING:
    from bot.project import Project, Source

BUILTIN_SLOTS = frozenset(
    {"requested_slot", "session_started_metadata", "flow_hashes", "mocked_datetime"}
)
_SLOT_REFERENCE = re.compile(r"\bslots\.([A-Za-z_][\w-]*)")


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems without repeats, by file, then line, then message."""
    return sorted(set(problems), key=lambda p: (p.file, p.line or 0, p.message))


def validate(project: Project, *, sources: Sequence[Source]) -> list[Problem]:
    """Every cross-reference problem of ``project``; ``sources`` are its loaded YAML files."""
    checker = _Checker(project)
    own = [s for s in sources if s.kind != "default"]
    for source in own:
        checker.duplicate_yaml_keys(source)
    for key in ("flows", "slots", "responses"):
        checker.duplicates_across_files(own, key)
    for source in sources:
        for flow in source.flows:
            checker.flow(flow)
    checker.nlu_intents(own)
    checker.slot_mappings(sources)
    checker.response_conditions(sources)
    checker.problems.extend(template_problems(project.root))
    return sort_problems(checker.problems)


@dataclass
class _Checker:
    project: Project

    def __post_init__(self) -> None:
        domain = self.project.domain
        self.problems: list[Problem] = []
        self.slots = set(domain.slots) | BUILTIN_SLOTS
        self.actions = set(domain.actions)
        self.intents = set(domain.intents) | set(self.project.nlu.intents) | BUILTIN_INTENTS

    def report(self, file: str | None, line: int | None, message: str) -> None:
        self.problems.append(Problem(file or str(self.project.root), line, message))

    # --- YAML and files ---------------------------------------------------------------

    def duplicate_yaml_keys(self, source: Source) -> None:
        try:
            root = yaml.compose(source.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:  # already reported by the loader
            return
        for key, first in _duplicate_keys(root):
            self.report(
                source.file,
                key.start_mark.line + 1,
                f"duplicate key '{key.value}' (first on line {first.start_mark.line + 1})",
            )

    def duplicates_across_files(self, sources: Sequence[Source], key: str) -> None:
        seen: dict[str, tuple[str, int | None]] = {}
        for source in sources:
            section = source.data.get(key)
            if not isinstance(section, Mapping) or source.kind == "config":
                continue
            for name in section:
                line = line_of(section, name)
                if name in seen and seen[name][0] != source.file:
                    first_file, first_line = seen[name]
                    self.report(
                        source.file,
                        line,
                        f"{key[:-1]} '{name}' is also defined in {first_file}:{first_line}",
                    )
                seen.setdefault(name, (source.file, line))

    # --- flows ------------------------------------------------------------------------

    def flow(self, flow: Flow) -> None:
        where = f"flow '{flow.id}'"
        if isinstance(flow.guard, str):
            self.condition(flow.guard, flow, flow.line)
        for trigger in flow.nlu_triggers:
            if trigger.intent not in self.intents:
                self.report(
                    flow.file,
                    flow.line,
                    f"{where}: unknown intent '{trigger.intent}' in nlu_trigger",
                )
        for slot in flow.persisted_slots:
            self.slot(slot, flow, flow.line, "persisted_slots")
        for step in flow.steps:
            self.step(step, flow)
            for rule in step.next:
                if isinstance(rule.condition, str):
                    self.condition(rule.condition, flow, step.line)

    def step(self, step: Step, flow: Flow) -> None:
        where = f"flow '{flow.id}'"
        if isinstance(step, CollectStep):
            self.slot(step.collect, flow, step.line, "collect")
            ask_action = f"action_ask_{step.collect}"
            if not self.is_response(step.utter) and ask_action not in self.actions:
                self.report(
                    flow.file,
                    step.line,
                    f"{where}: no response '{step.utter}' (nor action '{ask_action}') "
                    f"to ask for slot '{step.collect}'",
                )
            for rejection in step.rejections:
                self.condition(rejection.condition, flow, step.line)
                if rejection.utter and not self.is_response(rejection.utter):
                    self.report(
                        flow.file, step.line, f"{where}: unknown response '{rejection.utter}'"
                    )
        elif isinstance(step, ActionStep):
            self.action(step.action, flow, step.line)
        elif isinstance(step, SetSlotsStep):
            for name, _value in step.slots:
                self.slot(name, flow, step.line, "set_slots")
        elif isinstance(step, LinkStep | CallStep):
            kind, target = (
                ("link", step.link) if isinstance(step, LinkStep) else ("call", step.call)
            )
            if target == flow.id:
                self.report(
                    flow.file, step.line, f"{where}: its {kind} step targets the flow itself"
                )
            elif target not in self.project.flows:
                self.report(flow.file, step.line, f"{where}: {kind} to unknown flow '{target}'")

    def action(self, name: str, flow: Flow, line: int | None) -> None:
        if "{{" in name or self.is_response(name):
            return
        if name in DEFAULT_ACTION_NAMES or name in self.actions:
            return
        kind = "response" if name.startswith("utter_") else "action"
        hint = "" if kind == "response" else " (declare it under 'actions:' in the domain)"
        self.report(flow.file, line, f"flow '{flow.id}': unknown {kind} '{name}'{hint}")

    def slot(self, name: str, flow: Flow, line: int | None, used_in: str) -> None:
        if name not in self.slots:
            self.report(flow.file, line, f"flow '{flow.id}': unknown slot '{name}' in {used_in}")

    def condition(self, text: str, flow: Flow, line: int | None) -> None:
        for name in dict.fromkeys(_SLOT_REFERENCE.findall(text)):
            self.slot(name, flow, line, f"condition {text!r}")

    def is_response(self, name: str) -> bool:
        return self.project.domain.has_response(name)

    # --- NLU and domain ---------------------------------------------------------------

    def nlu_intents(self, sources: Sequence[Source]) -> None:
        declared = set(self.project.domain.intents) | BUILTIN_INTENTS
        for source in sources:
            items = source.data.get("nlu") if source.kind == "data" else None
            for item in items if isinstance(items, list) else ():
                intent = item.get("intent") if isinstance(item, Mapping) else None
                if isinstance(intent, str) and intent.strip() not in declared:
                    self.report(
                        source.file,
                        line_of(item),
                        f"intent '{intent}' has examples but is not declared in the domain",
                    )

    def slot_mappings(self, sources: Sequence[Source]) -> None:
        entities = set(self.project.domain.entities)
        for source, name, body in _section_items(sources, "slots"):
            mappings = body.get("mappings") if isinstance(body, Mapping) else None
            for mapping in mappings if isinstance(mappings, list) else ():
                if not isinstance(mapping, Mapping):
                    continue
                where = f"slot '{name}'"
                entity = mapping.get("entity")
                if (
                    mapping.get("type") == "from_entity"
                    and isinstance(entity, str)
                    and entity not in entities
                ):
                    self.report(
                        source.file, line_of(mapping), f"{where}: unknown entity '{entity}'"
                    )
                for key in ("intent", "not_intent"):
                    value = mapping.get(key)
                    for intent in value if isinstance(value, list) else [value]:
                        if isinstance(intent, str) and intent not in self.intents:
                            self.report(
                                source.file, line_of(mapping), f"{where}: unknown intent '{intent}'"
                            )

    def response_conditions(self, sources: Sequence[Source]) -> None:
        for source, name, variations in _section_items(sources, "responses"):
            for variation in variations if isinstance(variations, list) else ():
                conditions = variation.get("condition") if isinstance(variation, Mapping) else None
                if isinstance(conditions, str):
                    for slot in dict.fromkeys(_SLOT_REFERENCE.findall(conditions)):
                        if slot not in self.slots:
                            self.report(
                                source.file,
                                line_of(variation),
                                f"response '{name}': condition on unknown slot '{slot}'",
                            )
                    continue
                for condition in conditions if isinstance(conditions, list) else ():
                    slot = condition.get("name") if isinstance(condition, Mapping) else None
                    if isinstance(slot, str) and slot not in self.slots:
                        self.report(
                            source.file,
                            line_of(condition) or line_of(variation),
                            f"response '{name}': condition on unknown slot '{slot}'",
                        )


def _section_items(sources: Sequence[Source], key: str) -> Iterator[tuple[Source, str, Any]]:
    for source in sources:
        section = source.data.get(key) if source.kind != "config" else None
        if isinstance(section, Mapping):
            for name, body in section.items():
                yield source, str(name), body


def _duplicate_keys(root: Node | None) -> Iterator[tuple[ScalarNode, ScalarNode]]:
    """``(duplicate, first)`` key nodes of every mapping in a composed YAML document."""
    todo = [root] if root is not None else []
    visited: set[int] = set()
    while todo:
        node = todo.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            seen: dict[str, ScalarNode] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        yield key, seen[key.value]
                    seen.setdefault(key.value, key)
                todo.append(value)
        elif isinstance(node, SequenceNode):
            todo.extend(node.value)
