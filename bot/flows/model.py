"""Flows as Rasa CALM defines them: named, described sequences of steps with branches.

Nested ``then``/``else`` step lists are flattened at load time into the flow's step list with
generated ids, so the engine only ever follows ``next`` links between steps of one flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

END = "END"
"""The ``next`` target that ends a flow."""


@dataclass(frozen=True)
class NextRule:
    """One branch of a step's ``next``: go to ``target`` when ``condition`` holds.

    ``condition`` None is an unconditional rule (a plain ``next: id`` or an ``else``).
    """

    target: str
    condition: str | bool | None = None


@dataclass(frozen=True)
class Rejection:
    """A ``collect`` step's rejection: when ``condition`` holds for the new value, reject it."""

    condition: str
    utter: str | None = None


@dataclass(frozen=True, kw_only=True)
class Step:
    """Base of every step. ``next`` empty means: the following step, or the end of the flow."""

    id: str
    next: tuple[NextRule, ...] = ()
    description: str | None = None
    line: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CollectStep(Step):
    """Ask for a slot (unless filled) and wait for the customer's answer."""

    collect: str
    utter: str
    ask_before_filling: bool = False
    reset_after_flow_ends: bool = True
    rejections: tuple[Rejection, ...] = ()
    force_slot_filling: bool = False


@dataclass(frozen=True, kw_only=True)
class ActionStep(Step):
    """Run an action: a response (``utter_*``), a default action, or a custom action."""

    action: str


@dataclass(frozen=True, kw_only=True)
class SetSlotsStep(Step):
    """Set slots to fixed values."""

    slots: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class LinkStep(Step):
    """End this flow and start another in its place (must be the last step on its path)."""

    link: str


@dataclass(frozen=True, kw_only=True)
class CallStep(Step):
    """Run another flow as a child; continue here when it ends."""

    call: str


@dataclass(frozen=True, kw_only=True)
class NoopStep(Step):
    """Do nothing; exists to branch with ``next``."""


@dataclass(frozen=True)
class NluTrigger:
    """Start the flow when this intent is predicted with at least ``min_confidence``."""

    intent: str
    min_confidence: float = 0.0


@dataclass(frozen=True)
class Suggestion:
    """A suggested next question shown as a quick reply when its flow is done: a button's
    title (translated per language) and the payload it sends."""

    title: str
    payload: str
    translation: dict[str, str] = field(default_factory=dict, compare=False)

    def title_in(self, language: str | None) -> str:
        """The title in ``language`` (``zh``, ``zh-CN``), else the written one."""
        if language:
            base = language.replace("_", "-").split("-")[0].lower()
            for code in (language, base):
                if code in self.translation:
                    return self.translation[code]
        return self.title


@dataclass(frozen=True, kw_only=True)
class Flow:
    """A flow: its properties and its (flattened) steps, first step first."""

    id: str
    description: str = ""
    name: str | None = None
    guard: str | bool | None = None
    """The flow's ``if``: the flow may only start while this holds."""
    nlu_triggers: tuple[NluTrigger, ...] = ()
    persisted_slots: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    file: str | None = None
    line: int | None = None
    is_pattern: bool = False
    suggestions: tuple[Suggestion, ...] = ()
    """kefu: suggested next questions (at most three) offered when the flow is done."""
    translation: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    """Rasa's per-language flow properties: ``{"zh": {"name": "查询订单"}}`` (kefu also reads a
    ``description`` there, for routing messages in that language)."""

    @property
    def readable_name(self) -> str:
        """The flow's ``name``, else its id with spaces for underscores."""
        return self.name or self.id.replace("_", " ")

    def name_in(self, language: str | None) -> str:
        """The flow's name in ``language`` (``zh``, ``zh-CN``), else its ``name``."""
        if language:
            base = language.replace("_", "-").split("-")[0].lower()
            for code in (language, base):
                name = self.translation.get(code, {}).get("name")
                if name:
                    return name
        return self.readable_name

    def step(self, step_id: str) -> Step | None:
        """The step with id ``step_id``, or None."""
        return self._index.get(step_id)

    def next_in_sequence(self, step: Step) -> str:
        """The id of the step written after ``step`` in its sequence, or ``END``."""
        return self._sequence_next.get(step.id, END)

    @property
    def first_step(self) -> Step | None:
        """The step the flow starts with; None for a flow without steps."""
        return self.steps[0] if self.steps else None

    def collect_steps(self) -> tuple[CollectStep, ...]:
        """The flow's ``collect`` steps, in order."""
        return tuple(s for s in self.steps if isinstance(s, CollectStep))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s.id: s for s in self.steps})
        object.__setattr__(self, "_sequence_next", {})

    _index: dict[str, Step] = field(default_factory=dict, init=False, repr=False, compare=False)
    _sequence_next: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )


@dataclass(frozen=True)
class FlowsList:
    """Every flow of a project, default patterns included (project flows override them)."""

    flows: dict[str, Flow] = field(default_factory=dict)

    def get(self, flow_id: str) -> Flow | None:
        """The flow with id ``flow_id`` (patterns included), or None."""
        return self.flows.get(flow_id)

    def collect_steps_of(self, flow: Flow) -> list[CollectStep]:
        """The collect steps of ``flow`` and of the flows it calls, directly or not (each
        flow once, callers' steps before their callees')."""
        steps: list[CollectStep] = []
        seen: set[str] = set()

        def visit(current: Flow) -> None:
            seen.add(current.id)
            steps.extend(current.collect_steps())
            for step in current.steps:
                child = self.get(step.call) if isinstance(step, CallStep) else None
                if child is not None and child.id not in seen:
                    visit(child)

        visit(flow)
        return steps

    def user_flows(self) -> list[Flow]:
        """Flows the customer can start: everything but patterns."""
        return [f for f in self.flows.values() if not f.is_pattern]

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self.flows

    def __len__(self) -> int:
        return len(self.flows)
