"""Parsing a model's commands tolerantly, and cleaning them as Rasa's command processor does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.dialogue import commands as cmd
from bot.dialogue.stack import new_frame
from bot.llm.commands import REPEAT_PATTERN, SKIP_PATTERN, clean, coerce, parse_commands
from bot.project import Project, load_project

PROJECT = Path(__file__).parent / "projects" / "llm_shop"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(PROJECT)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start flow track_order", [cmd.StartFlow("track_order")]),
        ("StartFlow(track_order)", [cmd.StartFlow("track_order")]),
        ("set slot email a@b.co", [cmd.SetSlot("email", "a@b.co")]),
        ("SetSlot(return_reason, 'damaged')", [cmd.SetSlot("return_reason", "damaged")]),
        ('set slot customer_name "Mei Lin"', [cmd.SetSlot("customer_name", "Mei Lin")]),
        ("set slot email None", [cmd.SetSlot("email", None)]),
        ("cancel flow", [cmd.CancelFlow()]),
        ("CancelFlow()", [cmd.CancelFlow()]),
        (
            "disambiguate flows track_order return_item",
            [cmd.Clarify(("track_order", "return_item"))],
        ),
        ("Clarify(track_order, return_item)", [cmd.Clarify(("track_order", "return_item"))]),
        ("provide info", [cmd.Search()]),
        ("SearchAndReply()", [cmd.Search()]),
        ("offtopic reply", [cmd.ChitChat()]),
        ("ChitChat()", [cmd.ChitChat()]),
        ("hand over", [cmd.HumanHandoff(reason="the assistant's model suggested a human")]),
        ("HumanHandoff()", [cmd.HumanHandoff(reason="the assistant's model suggested a human")]),
        ("repeat message", [cmd.StartPattern(REPEAT_PATTERN)]),
        ("skip question", [cmd.StartPattern(SKIP_PATTERN)]),
    ],
)
def test_every_command_kind_in_both_forms(text: str, expected: list[cmd.Command]) -> None:
    assert parse_commands(text) == expected


def test_bullets_numbers_backticks_and_code_fences_are_tolerated() -> None:
    text = """Here is what I'd do:
```
1. `start flow return_item`
- set slot order_id KF-10002.
* Cancel Flow
```
That's all!"""
    assert parse_commands(text) == [
        cmd.StartFlow("return_item"),
        cmd.SetSlot("order_id", "KF-10002"),
        cmd.CancelFlow(),
    ]


def test_prose_and_unknown_commands_are_ignored() -> None:
    assert parse_commands("I think the customer wants to track an order.\nrefund everything") == []


def test_tool_calls_become_commands_and_bad_arguments_are_ignored() -> None:
    calls = [
        ("start_flow", '{"flow": "newsletter"}'),
        ("set_slot", '{"slot": "email", "value": "x@y.cn"}'),
        ("disambiguate_flows", '{"flows": ["track_order", "return_item"]}'),
        ("start_flow", "{not json"),
        ("cancel_flow", "[]"),
    ]
    assert parse_commands("", calls) == [
        cmd.StartFlow("newsletter"),
        cmd.SetSlot("email", "x@y.cn"),
        cmd.Clarify(("track_order", "return_item")),
    ]


def test_placeholders_in_values_are_restored() -> None:
    restore = {"[EMAIL_1]": "mei@example.com"}
    parsed = parse_commands("set slot email [EMAIL_1]", restore=lambda t: restore.get(t.strip(), t))
    assert parsed == [cmd.SetSlot("email", "mei@example.com")]


# --- cleaning ------------------------------------------------------------------------------


def cleaned(
    project: Project,
    commands: list[cmd.Command],
    *,
    slots: dict[str, Any] | None = None,
    stack: list[dict[str, Any]] | None = None,
) -> list[cmd.Command]:
    values = {name: None for name in project.domain.slots} | (slots or {})
    return clean(
        commands, flows=project.flows, domain=project.domain, slots=values, stack=stack or []
    )


def collecting(flow_id: str, slot: str) -> list[dict[str, Any]]:
    """A stack where ``flow_id`` asks for ``slot``."""
    return [new_frame(flow_id), new_frame("pattern_collect_information", collect=slot)]


def test_unknown_flows_and_patterns_are_not_started(project: Project) -> None:
    assert cleaned(project, [cmd.StartFlow("refund_all"), cmd.StartFlow("pattern_restart")]) == []


def test_a_running_flow_is_not_started_again(project: Project) -> None:
    stack = collecting("track_order", "email")
    assert cleaned(project, [cmd.StartFlow("track_order")], stack=stack) == []


def test_only_known_slots_with_a_from_llm_mapping_are_set(project: Project) -> None:
    stack = [*collecting("apply_coupon", "coupon_code"), *collecting("track_order", "email")]
    commands: list[cmd.Command] = [
        cmd.SetSlot("discount", "50"),  # unknown
        cmd.SetSlot("verified", "true"),  # only the flows set it
        cmd.SetSlot("coupon_code", "FREE"),  # only understanding fills it
        cmd.SetSlot("email", "a@b.co"),
    ]
    assert cleaned(project, commands, stack=stack) == [cmd.SetSlot("email", "a@b.co")]


def test_slots_outside_the_active_and_started_flows_are_dropped(project: Project) -> None:
    assert cleaned(project, [cmd.SetSlot("return_reason", "damaged")]) == []
    assert cleaned(
        project, [cmd.StartFlow("return_item"), cmd.SetSlot("return_reason", "damaged")]
    ) == [cmd.SetSlot("return_reason", "damaged"), cmd.StartFlow("return_item")]


def test_values_are_typed_and_wrong_ones_dropped(project: Project) -> None:
    stack = collecting("gift_order", "gift_wrap")
    assert cleaned(project, [cmd.SetSlot("gift_wrap", "yes")], stack=stack) == [
        cmd.SetSlot("gift_wrap", True)
    ]
    assert cleaned(project, [cmd.SetSlot("gift_wrap", "maybe")], stack=stack) == []
    stack = collecting("return_item", "return_reason")
    assert cleaned(project, [cmd.SetSlot("return_reason", "DAMAGED")], stack=stack) == [
        cmd.SetSlot("return_reason", "damaged")
    ]
    assert cleaned(project, [cmd.SetSlot("return_reason", "bored")], stack=stack) == []


def test_setting_a_slot_to_the_value_it_has_is_dropped(project: Project) -> None:
    stack = collecting("track_order", "email")
    commands: list[cmd.Command] = [cmd.SetSlot("order_id", "KF-10001")]
    assert cleaned(project, commands, slots={"order_id": "KF-10001"}, stack=stack) == []


def test_changing_an_answered_slot_is_a_correction(project: Project) -> None:
    stack = collecting("track_order", "email")
    commands: list[cmd.Command] = [
        cmd.SetSlot("order_id", "KF-10009"),
        cmd.SetSlot("email", "a@b.co"),
    ]
    assert cleaned(project, commands, slots={"order_id": "KF-10001"}, stack=stack) == [
        cmd.SetSlot("email", "a@b.co"),
        cmd.CorrectSlots({"order_id": "KF-10009"}),
    ]


def test_a_slot_is_set_once(project: Project) -> None:
    stack = collecting("track_order", "email")
    commands: list[cmd.Command] = [cmd.SetSlot("email", "a@b.co"), cmd.SetSlot("email", "c@d.co")]
    assert cleaned(project, commands, stack=stack) == [cmd.SetSlot("email", "a@b.co")]


def test_a_clarification_keeps_known_options_and_one_option_starts_it(project: Project) -> None:
    both = cleaned(project, [cmd.Clarify(("track_order", "return_item", "nonsense"))])
    assert both == [cmd.Clarify(("track_order", "return_item"))]
    one = cleaned(project, [cmd.Clarify(("return_item", "nonsense", "return_item"))])
    assert one == [cmd.StartFlow("return_item")]
    assert cleaned(project, [cmd.Clarify(("nonsense",))]) == []


def test_at_most_one_cancel_and_only_with_a_flow_to_cancel(project: Project) -> None:
    assert cleaned(project, [cmd.CancelFlow(), cmd.CancelFlow()]) == []
    stack = collecting("newsletter", "email")
    assert cleaned(project, [cmd.CancelFlow(), cmd.CancelFlow()], stack=stack) == [cmd.CancelFlow()]


def test_cancel_comes_before_a_new_flow(project: Project) -> None:
    stack = collecting("newsletter", "email")
    commands: list[cmd.Command] = [cmd.StartFlow("return_item"), cmd.CancelFlow()]
    assert cleaned(project, commands, stack=stack) == [
        cmd.CancelFlow(),
        cmd.StartFlow("return_item"),
    ]


def test_duplicates_merge_and_skip_needs_a_question(project: Project) -> None:
    commands: list[cmd.Command] = [
        cmd.Search(),
        cmd.Search(),
        cmd.StartPattern(SKIP_PATTERN),
        cmd.StartPattern(REPEAT_PATTERN),
    ]
    assert cleaned(project, commands) == [cmd.Search(), cmd.StartPattern(REPEAT_PATTERN)]
    stack = collecting("newsletter", "email")
    assert cleaned(project, [cmd.StartPattern(SKIP_PATTERN)], stack=stack) == [
        cmd.StartPattern(SKIP_PATTERN)
    ]


def test_coerce_respects_float_bounds(project: Project) -> None:
    from bot.domain import SlotDefinition

    slot = SlotDefinition(name="quantity", type="float", min_value=1, max_value=10)
    assert coerce(slot, "3") == (True, 3.0)
    assert coerce(slot, "30") == (False, None)
    assert coerce(slot, "three") == (False, None)
    assert coerce(SlotDefinition(name="tags", type="list"), "a, b") == (True, ["a", "b"])


def test_when_the_router_asks_the_model(project: Project) -> None:
    from bot.interpreter import Parse
    from bot.llm.client import LLMClient
    from bot.llm.prompts import PromptTemplates
    from bot.llm.router import LLMRouter

    client = LLMClient(model="m", base_url="http://127.0.0.1:9/v1")
    router = LLMRouter(
        client=client, flows=project.flows, domain=project.domain, templates=PromptTemplates()
    )

    def parse(confidence: float, **extra: Any) -> Parse:
        return Parse(text="text", language="en", intent="x", confidence=confidence, **extra)

    assert router.wanted(parse(0.0), [cmd.Search()])
    assert router.wanted(parse(0.3), [cmd.RejectValue("email", "text")])
    assert router.wanted(parse(0.45), [cmd.StartFlow("track_order")])  # a hunch
    assert not router.wanted(parse(0.9), [cmd.StartFlow("track_order")])
    assert not router.wanted(parse(0.9), [cmd.SetSlot("email", "a@b.co")])
    assert not router.wanted(parse(0.2), [cmd.SetSlot("email", "a@b.co")])  # answered
    assert not router.wanted(parse(0.9), [cmd.ChitChat()])
    assert not router.wanted(parse(1.0, from_payload=True), [cmd.Search()])
    assert not router.wanted(parse(0.0), [cmd.InternalError("too long")])
    router.mode = "always"
    assert router.wanted(parse(0.9), [cmd.SetSlot("email", "a@b.co")])
    assert not router.wanted(parse(1.0, from_payload=True), [cmd.StartFlow("track_order")])
