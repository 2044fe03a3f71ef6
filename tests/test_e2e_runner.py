"""Conversation tests (Rasa e2e format): parsing, matching a turn's events, running cases."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.events import (
    ActionExecuted,
    BotMessage,
    Button,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    SlotSet,
    UserMessage,
)
from bot.project import load_project
from bot.testing.e2e import main_test, run_tests
from bot.testing.e2e_check import check_turn, describe_turn
from bot.testing.e2e_format import (
    ActionCheck,
    BotStep,
    ClarificationCheck,
    FlowCheck,
    SlotCheck,
    SlotsCheck,
    Turn,
    UserStep,
    UtteranceCheck,
    parse_test_file,
)
from bot.testing.e2e_runner import TestReport, run_cases


def write(tmp_path: Path, text: str, name: str = "cases.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- parsing ----------------------------------------------------------------------------

FULL_FILE = """\
fixtures:
  - premium:
      - membership: gold
      - points: 120
metadata:
  - mobile:
      device: ios
  - urgent:
      priority: high
test_cases:
  - test_case: track an order
    fixtures: [premium]
    metadata: mobile
    steps:
      - user: where is my order?
        metadata: urgent
        assertion_order_enabled: true
        assertions:
          - flow_started: track_order
          - flow_completed:
              flow_id: track_order
              flow_step_id: done
          - flow_cancelled: return_item
          - action_executed: action_check_order
          - bot_uttered:
              utter_name: utter_ask_order_id
              text_matches: "order (number|id)"
              buttons:
                - title: Cancel
                  payload: /cancel
          - bot_did_not_utter:
              utter_name: utter_default
          - slot_was_set:
              - name: order_id
                value: "A-1"
              - name: email
          - slot_was_not_set:
              - name: refund
          - pattern_clarification_contains:
              - track an order
              - return an item
      - utter: utter_ask_order_id
      - bot: What is your order number?
      - slot_was_set:
          - order_id: A-1
          - email
      - slot_was_not_set:
          - refund
      - user: /SetSlots(order_id=A-1)
"""


def test_parses_every_step_and_assertion_kind(tmp_path: Path) -> None:
    cases, problems = parse_test_file(write(tmp_path, FULL_FILE))

    assert problems == []
    [case] = cases
    assert case.name == "track an order"
    assert case.line == 11
    assert case.slots == {"membership": "gold", "points": 120}
    assert case.metadata == {"device": "ios"}
    first, second = case.turns
    assert first.user.text == "where is my order?"
    assert first.user.metadata == {"priority": "high"}
    assert first.user.ordered is True
    assert first.user.assertions == (
        FlowCheck(line=19, kind="flow_started", flow_id="track_order"),
        FlowCheck(line=20, kind="flow_completed", flow_id="track_order", step_id="done"),
        FlowCheck(line=23, kind="flow_cancelled", flow_id="return_item"),
        ActionCheck(line=24, name="action_check_order"),
        UtteranceCheck(
            line=25,
            utter_name="utter_ask_order_id",
            text_matches=re.compile("order (number|id)"),
            buttons=(Button(title="Cancel", payload="/cancel"),),
        ),
        UtteranceCheck(line=31, negated=True, utter_name="utter_default"),
        SlotsCheck(
            line=33, slots=(SlotCheck("order_id", "A-1", has_value=True), SlotCheck("email"))
        ),
        SlotsCheck(line=37, negated=True, slots=(SlotCheck("refund"),)),
        ClarificationCheck(line=39, flow_names=("track an order", "return an item")),
    )
    assert first.steps == (
        BotStep(line=42, utter_name="utter_ask_order_id"),
        BotStep(line=43, text="What is your order number?"),
        SlotsCheck(
            line=44, slots=(SlotCheck("order_id", "A-1", has_value=True), SlotCheck("email"))
        ),
        SlotsCheck(line=47, negated=True, slots=(SlotCheck("refund"),)),
    )
    assert second.user.text == "/SetSlots(order_id=A-1)"
    assert second.steps == ()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("steps: []\n", 1, "mapping with a 'test_cases:' list"),
        ("test_cases: nope\n", 1, "test_cases must be a list"),
        ("test_cases: []\nstubs: {}\n", 2, "unknown top-level key 'stubs'"),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - say: hi\n",
            4,
            "a step needs exactly one of user, bot, utter",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        assertions:\n"
            "          - response_sounds_friendly: {threshold: 0.9}\n",
            6,
            "unknown assertion 'response_sounds_friendly'",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        intent: greet\n",
            5,
            "unknown key 'intent' in a user step",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n"
            "      - utter: utter_greet\n      - user: hi\n",
            4,
            "must start with a user step",
        ),
        (
            "test_cases:\n  - test_case: a\n    fixtures: [missing]\n"
            "    steps:\n      - user: hi\n",
            3,
            "unknown fixture 'missing'",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        metadata: nope\n",
            5,
            "unknown metadata 'nope'",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        assertions:\n"
            "          - bot_uttered: {text_matches: '('}\n",
            6,
            "not a valid regular expression",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        assertions:\n"
            "          - bot_uttered: {}\n",
            6,
            "needs one or more of utter_name, text_matches, buttons",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n        assertions:\n"
            "          - slot_was_set:\n              - value: 3\n",
            7,
            "needs a name",
        ),
        (
            "test_cases:\n  - test_case: a\n    steps:\n      - user: hi\n"
            "  - test_case: a\n    steps:\n      - user: hi\n",
            5,
            "duplicate test case name 'a'",
        ),
        ("test_cases:\n  - test_case: a\n    steps:\n  - oops: [\n", 5, "invalid YAML"),
    ],
)
def test_malformed_files_give_problems_with_lines(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)

    cases, problems = parse_test_file(path)

    assert problems, "expected a problem"
    assert problems[0].file == str(path)
    assert problems[0].line == line
    assert message in problems[0].message
    assert all(case.name != "a" for case in cases) or "duplicate" in message


def test_a_bad_case_is_dropped_and_good_ones_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        test_cases:
          - test_case: good
            steps:
              - user: hi
          - test_case: bad
            steps:
              - user: hi
              - utter: {}
              - slot_was_set: order_id
        """,
    )

    cases, problems = parse_test_file(path)

    assert [case.name for case in cases] == ["good"]
    assert [str(p) for p in problems] == [
        f"{path}:8: utter must be a non-empty text",
        f"{path}:9: slot_was_set must be a list",
    ]


# --- matching ---------------------------------------------------------------------------

CID = "test:case:1"


def bot(text: str, response: str | None = None, buttons: tuple[Button, ...] = ()) -> BotMessage:
    return BotMessage(conversation_id=CID, text=text, response=response, buttons=buttons)


TURN_EVENTS: list[Event] = [
    UserMessage(channel="test", conversation_id=CID, sender_id=CID, text="where is my order?"),
    FlowStarted(flow_id="track_order"),
    SlotSet(name="order_id", value="A-1"),
    ActionExecuted(name="action_check_order"),
    bot("Your order A-1 ships today.", "utter_order_status"),
    bot("Anything else?", "utter_anything_else", (Button(title="No", payload="/deny"),)),
    FlowCompleted(flow_id="track_order", step_id="done"),
    FlowCancelled(flow_id="return_item", step_id="ask_reason"),
]


def turn(*assertions: Any, steps: Sequence[Any] = (), ordered: bool = False) -> Turn:
    user = UserStep(line=3, text="where is my order?", assertions=assertions, ordered=ordered)
    return Turn(user, tuple(steps))


def test_a_turn_meeting_every_kind_of_step_and_assertion_passes() -> None:
    checks = turn(
        FlowCheck(line=4, kind="flow_started", flow_id="track_order"),
        FlowCheck(line=5, kind="flow_completed", flow_id="track_order", step_id="done"),
        FlowCheck(line=6, kind="flow_cancelled", flow_id="return_item"),
        ActionCheck(line=7, name="action_check_order"),
        UtteranceCheck(line=8, text_matches=re.compile(r"A-\d ships")),
        UtteranceCheck(line=9, buttons=(Button(title="No", payload="/deny"),)),
        UtteranceCheck(line=10, negated=True, utter_name="utter_default"),
        SlotsCheck(line=11, slots=(SlotCheck("order_id", "A-1", has_value=True),)),
        SlotsCheck(line=12, negated=True, slots=(SlotCheck("email"),)),
        steps=[
            BotStep(line=20, utter_name="utter_order_status"),
            BotStep(line=21, text="Anything else?\n"),
            SlotsCheck(line=22, slots=(SlotCheck("order_id"),)),
            SlotsCheck(
                line=23, negated=True, slots=(SlotCheck("order_id", "B-2", has_value=True),)
            ),
        ],
    )

    assert check_turn(checks, TURN_EVENTS) is None


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            FlowCheck(line=4, kind="flow_started", flow_id="return_item"),
            "flow 'return_item' to be started",
        ),
        (
            FlowCheck(line=4, kind="flow_completed", flow_id="track_order", step_id="other"),
            "flow 'track_order' to be completed at step 'other'",
        ),
        (
            FlowCheck(line=4, kind="flow_cancelled", flow_id="track_order"),
            "flow 'track_order' to be cancelled",
        ),
        (ActionCheck(line=4, name="action_refund"), "action 'action_refund' to be executed"),
        (
            UtteranceCheck(
                line=4, utter_name="utter_order_status", text_matches=re.compile("late")
            ),
            "the bot to utter a message with utter_name 'utter_order_status'"
            " and text matching 'late'",
        ),
        (
            UtteranceCheck(line=4, buttons=(Button(title="Yes", payload="/affirm"),)),
            "the bot to utter a message with buttons ['Yes' -> '/affirm']",
        ),
        (
            UtteranceCheck(line=4, negated=True, utter_name="utter_anything_else"),
            "the bot not to utter a message with utter_name 'utter_anything_else'",
        ),
        (
            SlotsCheck(line=4, slots=(SlotCheck("order_id", "B-2", has_value=True),)),
            "slots order_id='B-2' to be set",
        ),
        (
            SlotsCheck(line=4, negated=True, slots=(SlotCheck("order_id"),)),
            "slots order_id not to be set",
        ),
        (
            ClarificationCheck(line=4, flow_names=("track an order",)),
            "pattern_clarification to offer 'track an order'",
        ),
    ],
)
def test_each_unmet_assertion_says_what_was_expected(check: Any, expected: str) -> None:
    mismatch = check_turn(turn(check), TURN_EVENTS)

    assert mismatch is not None
    assert mismatch.line == 4
    assert mismatch.expected == expected


@pytest.mark.parametrize(
    ("steps", "line", "expected"),
    [
        (
            [BotStep(line=5, utter_name="utter_goodbye")],
            5,
            "the bot to utter 'utter_goodbye', but it said utter_order_status "
            "'Your order A-1 ships today.', utter_anything_else 'Anything else?'",
        ),
        (
            [BotStep(line=5, utter_name="utter_order_status"), BotStep(line=6, text="Bye")],
            6,
            "the bot to say 'Bye', but it said utter_order_status",
        ),
        (
            [BotStep(line=5, text="Your order A-1 ships today.")] * 2
            + [BotStep(line=7, text="more")],
            7,
            "the bot to say 'more', but it said utter_order_status",
        ),
        ([SlotsCheck(line=5, slots=(SlotCheck("email"),))], 5, "slots email to be set"),
        (
            [
                SlotsCheck(
                    line=5, negated=True, slots=(SlotCheck("order_id", "A-1", has_value=True),)
                )
            ],
            5,
            "slots order_id='A-1' not to be set",
        ),
    ],
)
def test_each_unmet_classic_step_says_what_was_expected(
    steps: list[Any], line: int, expected: str
) -> None:
    mismatch = check_turn(turn(steps=steps), TURN_EVENTS)

    assert mismatch is not None
    assert mismatch.line == line
    assert mismatch.expected.startswith(expected)


def test_classic_bot_steps_match_any_message_of_the_turn_as_rasa_does() -> None:
    steps = [
        BotStep(line=5, utter_name="utter_anything_else"),
        BotStep(line=6, utter_name="utter_order_status"),
        BotStep(line=7, text="Your order A-1 ships today."),
        BotStep(line=8, utter_name="utter_order_status"),
    ]

    assert check_turn(turn(steps=steps), TURN_EVENTS) is None


def test_ordered_assertions_must_match_in_the_order_written() -> None:
    completed = FlowCheck(line=4, kind="flow_completed", flow_id="track_order")
    started = FlowCheck(line=5, kind="flow_started", flow_id="track_order")

    assert check_turn(turn(completed, started), TURN_EVENTS) is None
    mismatch = check_turn(turn(completed, started, ordered=True), TURN_EVENTS)

    assert mismatch is not None
    assert mismatch.line == 5
    assert mismatch.expected.endswith("(after the previous assertion)")


def test_slot_values_compare_as_text_but_none_only_matches_none() -> None:
    events: list[Event] = [SlotSet(name="count", value="4"), SlotSet(name="email", value=None)]

    assert (
        check_turn(turn(SlotsCheck(line=4, slots=(SlotCheck("count", 4, True),))), events) is None
    )
    assert (
        check_turn(turn(SlotsCheck(line=4, slots=(SlotCheck("email", None, True),))), events)
        is None
    )
    unmet = turn(SlotsCheck(line=4, slots=(SlotCheck("email", "None", True),)))
    assert check_turn(unmet, events) is not None


def test_clarification_is_met_by_the_options_the_pattern_offers() -> None:
    options = (
        Button(title="Track an order", payload="/a"),
        Button(title="Return an item", payload="/b"),
    )
    events: list[Event] = [
        FlowStarted(flow_id="pattern_clarification"),
        ActionExecuted(name="action_clarify_flows"),
        bot("Which one did you mean?", "utter_clarification_options_rasa", options),
    ]
    check = ClarificationCheck(line=4, flow_names=("track an order", "return an item"))

    assert check_turn(turn(check), events) is None


def test_describe_turn_lists_what_actually_happened() -> None:
    assert describe_turn(TURN_EVENTS) == [
        "bot said utter_order_status 'Your order A-1 ships today.'",
        "bot said utter_anything_else 'Anything else?' [buttons: 'No' -> '/deny']",
        "slots set: order_id='A-1'",
        "flows started: track_order",
        "flows completed: track_order",
        "flows cancelled: return_item",
        "actions: action_check_order",
    ]
    assert describe_turn([])[:2] == ["bot said nothing", "slots set: none"]


# --- running ------------------------------------------------------------------------------


@dataclass
class EchoAgent:
    """A stand-in agent: echoes the text, reports the slots set beforehand, records inputs."""

    slots: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[UserMessage] = field(default_factory=list)

    async def set_slots(self, conversation_id: str, slots: dict[str, Any], /) -> None:
        self.slots[conversation_id] = slots

    async def process(self, message: UserMessage, /) -> Outcome:
        self.messages.append(message)
        if message.text == "crash":
            raise RuntimeError("the action server is down")
        preset = self.slots.get(message.conversation_id, {})
        events: list[Event] = [message, *(SlotSet(name=k, value=v) for k, v in preset.items())]
        events.append(
            BotMessage(
                conversation_id=message.conversation_id, text=message.text, response="utter_echo"
            )
        )
        return Outcome(events)


@dataclass
class Outcome:
    events: list[Event]


RUN_FILE = """\
fixtures:
  - gold:
      - tier: gold
metadata:
  - web:
      page: /orders
  - mobile:
      device: ios
test_cases:
  - test_case: echoes
    fixtures: [gold]
    metadata: web
    steps:
      - user: hello
        metadata: mobile
        assertions:
          - slot_was_set:
              - name: tier
                value: gold
      - bot: hello
      - user: /greet
      - utter: utter_echo
  - test_case: expects the wrong reply
    steps:
      - user: hi
      - bot: bye
  - test_case: crashes
    steps:
      - user: crash
"""


async def test_run_cases_reports_each_case_and_ends_with_the_counts(tmp_path: Path) -> None:
    cases, problems = parse_test_file(write(tmp_path, RUN_FILE))
    assert problems == []
    agent = EchoAgent()
    report = TestReport()
    output = io.StringIO()

    await run_cases(agent, cases, report, output)

    assert (report.passed, report.failed, report.ok) == (1, 2, False)
    assert [f.case for f in report.failures] == ["expects the wrong reply", "crashes"]
    text = output.getvalue()
    assert text.splitlines()[0] == "PASSED echoes"
    assert (
        f"FAILED expects the wrong reply\n  {tmp_path / 'cases.yml'}:26: "
        "expected the bot to say 'bye'" in text
    )
    assert "    user said 'hi'\n    bot said utter_echo 'hi'\n" in text
    assert (
        "expected the turn to complete\n    user said 'crash'\n    RuntimeError: the action" in text
    )
    first, second = [m for m in agent.messages if m.conversation_id.startswith("test:echoes:")]
    assert first.channel == "test" and first.payload is None
    assert first.metadata == {"page": "/orders", "device": "ios"}
    assert second.payload == "/greet" and second.conversation_id == first.conversation_id
    assert re.fullmatch(r"test:echoes:[0-9a-f]{8}", first.conversation_id)
    assert report.summary() == "1 passed, 2 failed"


# --- end to end -----------------------------------------------------------------------------

PROJECT_FILES = {
    "domain.yml": """\
        version: "3.1"
        intents: [greet, goodbye]
        slots:
          name:
            type: text
            mappings: [{type: controlled}]
          greeted:
            type: bool
            mappings: [{type: controlled}]
        responses:
          utter_greet:
            - text: "Hello {name}!"
          utter_goodbye:
            - text: "Bye!"
        """,
    "flows/flows.yml": """\
        flows:
          say_hello:
            description: Greet the customer.
            nlu_trigger:
              - intent: greet
            steps:
              - action: utter_greet
              - set_slots:
                  - greeted: true
        """,
    "flows/nlu.yml": """\
        version: "3.1"
        nlu:
          - intent: greet
            examples: |
              - hi
              - hello
              - good morning
          - intent: goodbye
            examples: |
              - bye
              - goodbye
              - see you
        """,
    "tests/conversations/hello.yml": """\
        fixtures:
          - known_customer:
              - name: Ana
        test_cases:
          - test_case: greets by name
            fixtures: [known_customer]
            steps:
              - user: hello
                assertions:
                  - flow_started: say_hello
                  - slot_was_set:
                      - name: greeted
                        value: true
              - bot: Hello Ana!
        """,
    "tests/conversations/wrong.yml": """\
        test_cases:
          - test_case: expects the wrong goodbye
            steps:
              - user: hi
              - utter: utter_goodbye
        """,
}


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    for name, text in PROJECT_FILES.items():
        write(root, text, name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEFU_ACTION_ENDPOINT", raising=False)
    return root


def test_kefu_test_runs_a_project_and_exits_1_on_a_failure(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main_test(project_dir, [])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert "PASSED greets by name" in lines
    assert "FAILED expects the wrong goodbye" in lines
    wrong = project_dir / "tests/conversations/wrong.yml"
    assert f"  {wrong}:5: expected the bot to utter 'utter_goodbye', but it said utter_greet" in (
        "\n".join(lines)
    )
    assert "    flows started: " in "\n".join(lines)
    assert lines[-1] == "1 passed, 1 failed"


async def test_run_tests_over_given_paths_passes(project_dir: Path, tmp_path: Path) -> None:
    project = load_project(project_dir)
    output = io.StringIO()
    store_url = f"sqlite+aiosqlite:///{tmp_path}/store.db"

    report = await run_tests(
        project, [project_dir / "tests/conversations/hello.yml"], store_url=store_url, output=output
    )

    assert (report.passed, report.failed, report.ok) == (1, 0, True)
    assert output.getvalue().splitlines() == ["PASSED greets by name", "1 passed, 0 failed"]


def test_a_missing_path_is_a_problem_and_exit_1(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main_test(project_dir, [project_dir / "nope.yml"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines == [
        f"{project_dir / 'nope.yml'}: no such test file or folder",
        "0 passed, 0 failed",
    ]
