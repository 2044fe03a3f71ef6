"""The dialogue's internals: the default actions' registry, step outcomes, typed frames, the
slots a flow collects, and the one list of built-in intents."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest
import yaml

from bot.dialogue.command_generator import generate_commands
from bot.dialogue.control import FlowControl, StepOutcome
from bot.dialogue.default_actions import (
    ACTION_LISTEN,
    DEFAULT_ACTION_NAMES,
    REGISTRY,
    DefaultActions,
)
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.stack import START, new_frame
from bot.dialogue.turn import Turn
from bot.domain import BUILTIN_INTENTS
from bot.errors import ActionError
from bot.events import ActionExecuted, FlowStarted
from bot.flows.model import FlowsList
from bot.flows.parser import parse_flows
from bot.interpreter import Interpreter
from bot.project import Project, inspect_project
from bot.responses import ResponseRenderer
from bot.state import ConversationState
from bot.understanding.entities import EntityExtractor
from bot.understanding.training_data import TrainingData

PROJECTS = Path(__file__).parent / "projects"


@pytest.fixture(scope="module")
def project() -> Project:
    loaded, problems = inspect_project(PROJECTS / "minimal")
    assert loaded is not None and problems == []
    return loaded


def executor_for(project: Project) -> FlowExecutor:
    return FlowExecutor(
        renderer=ResponseRenderer(project.domain),
        action_runner=None,
        defaults=DefaultActions(answer_backend=None),
    )


def turn_for(project: Project) -> Turn:
    state = ConversationState(conversation_id="rest:internals", channel="rest", sender_id="x")
    return Turn(state=state, domain=project.domain, flows=project.flows)


# --- the registry of default actions --------------------------------------------------------


def test_every_registered_default_action_is_a_coroutine_of_the_runner() -> None:
    assert ACTION_LISTEN in DEFAULT_ACTION_NAMES and ACTION_LISTEN not in REGISTRY
    for name, handler in REGISTRY.items():
        assert inspect.iscoroutinefunction(handler), name
        assert getattr(DefaultActions, name) is handler  # the name says which handler


async def test_an_unknown_default_action_is_an_error_not_a_silent_continue(
    project: Project,
) -> None:
    turn = turn_for(project)
    frame = new_frame("pattern_search")
    with pytest.raises(ActionError, match="action_no_such_default"):
        await DefaultActions(answer_backend=None).run(
            "action_no_such_default", turn, frame, executor_for(project)
        )


async def test_default_actions_say_how_the_executor_goes_on(project: Project) -> None:
    executor = executor_for(project)
    control: FlowControl = executor  # the executor is the narrow view default actions get
    turn = turn_for(project)
    frame = new_frame("pattern_human_handoff", reason="test")
    turn.state.stack.append(frame)
    outcome = await executor.defaults.run("action_clean_stack", turn, frame, control)
    assert outcome is StepOutcome.CONTINUE
    assert await executor.run_action(turn, ACTION_LISTEN, frame) is StepOutcome.LISTEN
    assert [e.name for e in turn.events if isinstance(e, ActionExecuted)] == [ACTION_LISTEN]


def test_validation_accepts_every_default_action_and_nothing_else(tmp_path: Path) -> None:
    root = Path(shutil.copytree(PROJECTS / "minimal", tmp_path / "p"))
    steps = "".join(f"      - action: {name}\n" for name in sorted(DEFAULT_ACTION_NAMES))
    (root / "flows" / "defaults.yml").write_text(
        "flows:\n"
        "  uses_defaults:\n"
        "    description: Names every default action, then one that is none.\n"
        "    steps:\n" + steps + "      - action: action_no_such_default\n",
        encoding="utf-8",
    )
    _, problems = inspect_project(root)
    assert [p.message for p in problems] == [
        "flow 'uses_defaults': unknown action 'action_no_such_default' "
        "(declare it under 'actions:' in the domain)"
    ]


# --- frames -----------------------------------------------------------------------------------


def test_a_stored_stack_loads_as_typed_frames_unchanged() -> None:
    stored = {
        "conversation_id": "rest:old",
        "channel": "rest",
        "sender_id": "old",
        "stack": [
            {
                "frame_id": "a1",
                "type": "flow",
                "flow_id": "track_order",
                "step_id": "START",
                "frame_type": "regular",
            },
            {
                "frame_id": "b2",
                "type": "pattern_collect_information",
                "flow_id": "pattern_collect_information",
                "step_id": "start",
                "collect": "order_id",
                "utter": "utter_ask_order_id",
                "rejections": [{"if": "slots.order_id = 'x'", "utter": None}],
                "owner": "a1",
                "asked": True,
            },
        ],
    }
    state = ConversationState.from_dict(json.loads(json.dumps(stored)))
    assert state.stack[1]["collect"] == "order_id" and state.stack[1]["owner"] == "a1"
    assert state.stack[0]["frame_type"] == "regular" and state.stack[0]["step_id"] == START
    assert json.loads(json.dumps(state.to_dict()))["stack"] == stored["stack"]


def test_new_frames_keep_rasas_shape() -> None:
    flow = new_frame("track_order", frame_type="interrupt")
    pattern = new_frame("pattern_cancel_flow", canceled_name="Track", canceled_frames=["a"])
    assert flow["type"] == "flow" and flow["frame_type"] == "interrupt"
    assert pattern["type"] == "pattern_cancel_flow" and "frame_type" not in pattern
    assert pattern["canceled_frames"] == ["a"] and pattern["step_id"] == START


# --- what a flow collects ---------------------------------------------------------------------


def test_collect_steps_of_follows_calls_once_each() -> None:
    parsed, problems = parse_flows(
        yaml.safe_load(
            "parent:\n"
            "  description: Calls the child, which calls the parent back.\n"
            "  steps:\n"
            "    - collect: a\n"
            "      reset_after_flow_ends: false\n"
            "    - call: child\n"
            "child:\n"
            "  description: Called.\n"
            "  steps:\n"
            "    - collect: b\n"
            "    - call: parent\n"
        ),
        "flows.yml",
    )
    flows = FlowsList({f.id: f for f in parsed})
    assert problems == []
    parent = flows.get("parent")
    assert parent is not None
    steps = flows.collect_steps_of(parent)
    assert [(s.collect, s.reset_after_flow_ends) for s in steps] == [("a", False), ("b", True)]


async def test_a_flow_resets_only_the_slots_it_resets_after_it_ends(project: Project) -> None:
    executor = executor_for(project)
    turn = turn_for(project)
    flow = project.flows.get("track_order")
    assert flow is not None
    turn.set_slot("order_id", "KF-1")
    executor.reset_flow_slots(turn, flow)
    assert turn.state.slots["order_id"] is None


# --- built-in intents -------------------------------------------------------------------------


def test_every_builtin_intent_is_a_payload_the_interpreter_takes() -> None:
    interpreter = Interpreter(
        classifier=None,
        extractor=EntityExtractor.from_training_data(TrainingData(), ()),
        intents=set(),
    )
    for intent in sorted(BUILTIN_INTENTS):
        parsed = interpreter.parse(f"/{intent}", payload=f"/{intent}", language="en")
        assert (parsed.intent, parsed.unknown_payload) == (intent, False), intent
    unknown = interpreter.parse("/made_up", payload="/made_up", language="en")
    assert unknown.unknown_payload


# --- the command generator's rules --------------------------------------------------------------


async def test_start_of_a_flow_through_the_generator_and_executor(project: Project) -> None:
    """A trusted payload for a flow's intent starts it and asks its first question."""
    executor = executor_for(project)
    turn = turn_for(project)
    interpreter = Interpreter(
        classifier=None,
        extractor=EntityExtractor.from_training_data(TrainingData(), ()),
        intents={"track_order"},
    )
    parse = interpreter.parse("/track_order", payload="/track_order", language="en")
    commands = generate_commands(turn, parse, synonyms={})
    executor.apply(turn, commands)
    await executor.advance(turn)
    assert [e.flow_id for e in turn.events if isinstance(e, FlowStarted)] == [
        "track_order",
        "pattern_collect_information",
    ]
    assert [f["flow_id"] for f in turn.state.stack] == [
        "track_order",
        "pattern_collect_information",
    ]
