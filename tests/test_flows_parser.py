"""The flow parser: Rasa CALM flow YAML to Flow records, and its line-aware problems."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from bot.errors import Problem
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
)
from bot.flows.parser import parse_flows
from bot.yamlio import parse_yaml

FILE = "flows/test.yml"


def _parse(text: str) -> tuple[dict[str, Flow], list[Problem]]:
    data, yaml_problems = parse_yaml(textwrap.dedent(text), FILE)
    assert yaml_problems == []
    flows, problems = parse_flows(data["flows"], FILE)
    return {f.id: f for f in flows}, problems


def _ok(text: str) -> dict[str, Flow]:
    flows, problems = _parse(text)
    assert problems == [], [str(p) for p in problems]
    return flows


def _one_problem(text: str) -> Problem:
    _, problems = _parse(text)
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].file == FILE
    return problems[0]


# --- step types ------------------------------------------------------------------------


def test_every_step_kind_is_parsed() -> None:
    flows = _ok(
        """\
        flows:
          child:
            description: A child flow.
            steps:
              - action: utter_child
          other:
            description: Another flow.
            steps:
              - action: utter_other
          main:
            description: Every step kind.
            steps:
              - collect: order_id
                description: the order number
              - action: action_check_order
              - set_slots:
                  - is_gift: true
                  - quantity: 2
              - call: child
              - noop: true
                next: last
              - id: last
                link: other
        """
    )
    steps = flows["main"].steps
    assert [type(s) for s in steps] == [
        CollectStep,
        ActionStep,
        SetSlotsStep,
        CallStep,
        NoopStep,
        LinkStep,
    ]
    collect, action, set_slots, call, noop, link = steps
    assert isinstance(collect, CollectStep) and collect.collect == "order_id"
    assert collect.utter == "utter_ask_order_id"
    assert collect.ask_before_filling is False and collect.reset_after_flow_ends is True
    assert collect.rejections == ()
    assert collect.description == "the order number"
    assert isinstance(action, ActionStep) and action.action == "action_check_order"
    assert isinstance(set_slots, SetSlotsStep) and set_slots.slots == (
        ("is_gift", True),
        ("quantity", 2),
    )
    assert isinstance(call, CallStep) and call.call == "child"
    assert noop.next == (NextRule(target="last"),)
    assert isinstance(link, LinkStep) and link.link == "other" and link.id == "last"
    flow = flows["main"]
    # the plain sequence: each step is followed by the one written after it
    assert flow.next_in_sequence(collect) == action.id
    assert flow.next_in_sequence(call) == noop.id
    assert flow.next_in_sequence(link) == END
    assert flow.first_step is collect
    assert flow.step("last") is link
    assert flow.collect_steps() == (collect,)


def test_generated_step_ids_follow_document_order_and_name_the_step() -> None:
    flows = _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - collect: order_id
              - action: utter_done
              - noop: true
        """
    )
    assert [s.id for s in flows["f"].steps] == [
        "1_collect_order_id",
        "2_action_utter_done",
        "3_noop",
    ]


def test_set_slots_accepts_a_single_mapping() -> None:
    flows = _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - set_slots:
                  a: 1
                  b: x
        """
    )
    step = flows["f"].steps[0]
    assert isinstance(step, SetSlotsStep)
    assert step.slots == (("a", 1), ("b", "x"))


def test_collect_options() -> None:
    flows = _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - collect: quantity
                utter: utter_how_many
                ask_before_filling: true
                reset_after_flow_ends: false
                rejections:
                  - if: slots.quantity > 10
                    utter: utter_too_many
                  - if: slots.quantity < 1
        """
    )
    step = flows["f"].steps[0]
    assert isinstance(step, CollectStep)
    assert step.utter == "utter_how_many"
    assert step.ask_before_filling is True
    assert step.reset_after_flow_ends is False
    assert step.rejections == (
        Rejection(condition="slots.quantity > 10", utter="utter_too_many"),
        Rejection(condition="slots.quantity < 1", utter=None),
    )


def test_next_with_if_then_else_and_nested_step_lists() -> None:
    flows = _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - collect: order_status
                next:
                  - if: slots.order_status = "shipped"
                    then:
                      - action: utter_shipped
                      - collect: is_gift
                        next:
                          - if: slots.is_gift
                            then:
                              - action: utter_gift
                                next: END
                          - else: tail
                  - if: slots.order_status = "pending"
                    then: tail
                  - else: END
              - id: tail
                action: utter_tail
        """
    )
    flow = flows["f"]
    ids = [s.id for s in flow.steps]
    assert ids == [
        "1_collect_order_status",
        "2_action_utter_shipped",
        "3_collect_is_gift",
        "4_action_utter_gift",
        "tail",
    ]
    first = flow.steps[0]
    assert first.next == (
        NextRule(target="2_action_utter_shipped", condition='slots.order_status = "shipped"'),
        NextRule(target="tail", condition='slots.order_status = "pending"'),
        NextRule(target=END),
    )
    shipped = flow.step("2_action_utter_shipped")
    assert shipped is not None
    # inside a nested list, steps follow each other; the list's end ends the flow
    assert flow.next_in_sequence(shipped) == "3_collect_is_gift"
    gift = flow.step("3_collect_is_gift")
    assert gift is not None
    assert gift.next == (
        NextRule(target="4_action_utter_gift", condition="slots.is_gift"),
        NextRule(target="tail"),
    )
    utter_gift = flow.step("4_action_utter_gift")
    assert utter_gift is not None
    assert utter_gift.next == (NextRule(target=END),)
    assert flow.next_in_sequence(utter_gift) == END


def test_boolean_branch_condition_is_kept() -> None:
    flows = _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - noop: true
                next:
                  - if: true
                    then: END
                  - else: END
        """
    )
    assert flows["f"].steps[0].next[0] == NextRule(target=END, condition=True)


# --- flow properties -------------------------------------------------------------------


def test_flow_properties() -> None:
    flows = _ok(
        """\
        flows:
          track_order:
            description: Tell the customer where their order is.
            name: track my order
            if: slots.logged_in
            nlu_trigger:
              - intent:
                  name: track_order
                  confidence_threshold: 0.8
              - intent: where_is_order
              - check_status
            persisted_slots:
              - order_id
            steps:
              - collect: order_id
          plain:
            description: No name.
            steps:
              - action: utter_hi
        """
    )
    flow = flows["track_order"]
    assert flow.description == "Tell the customer where their order is."
    assert flow.name == "track my order"
    assert flow.readable_name == "track my order"
    assert flow.guard == "slots.logged_in"
    assert flow.nlu_triggers == (
        NluTrigger(intent="track_order", min_confidence=0.8),
        NluTrigger(intent="where_is_order", min_confidence=0.0),
        NluTrigger(intent="check_status", min_confidence=0.0),
    )
    assert flow.persisted_slots == ("order_id",)
    assert flow.file == FILE and flow.line == 2
    assert flow.is_pattern is False
    plain = flows["plain"]
    assert plain.name is None and plain.readable_name == "plain"
    assert plain.guard is None and plain.nlu_triggers == () and plain.persisted_slots == ()


def test_pattern_flows_are_marked() -> None:
    flows = _ok(
        """\
        flows:
          pattern_completed:
            description: p
            steps:
              - action: utter_bye
        """
    )
    assert flows["pattern_completed"].is_pattern is True


def test_empty_flows_key_is_no_problem() -> None:
    assert parse_flows(None, FILE) == ([], [])


# --- problems, each with its line --------------------------------------------------------


def test_unknown_step_kind() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - action: utter_a
              - utter: utter_b
        """
    )
    assert problem.line == 6
    assert "exactly one of" in problem.message and "found none" in problem.message
    assert "flow 'f'" in problem.message


def test_two_kinds_in_one_step() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - action: utter_a
                collect: order_id
        """
    )
    assert problem.line == 5
    assert "found collect, action" in problem.message


def test_unknown_key_in_a_step() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - action: utter_a
                utter: utter_b
        """
    )
    assert problem.line == 5
    assert "unknown key(s) in action step: utter" in problem.message


def test_duplicate_step_id() -> None:
    _, problems = _parse(
        """\
        flows:
          f:
            description: d
            steps:
              - id: a
                action: utter_a
              - id: a
                action: utter_b
        """
    )
    assert [(p.line, p.message) for p in problems if "duplicate" in p.message] == [
        (7, "flow 'f': duplicate step id 'a'")
    ]


def test_bad_next_target() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - action: utter_a
                next: nowhere
        """
    )
    assert problem.line == 5
    assert "next 'nowhere'" in problem.message and "no step of this flow" in problem.message


def test_unreachable_step() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - action: utter_a
                next: END
              - action: utter_never
        """
    )
    assert problem.line == 7
    assert "'2_action_utter_never' can never be reached" in problem.message


def test_step_after_conditional_branches_without_else_is_reachable() -> None:
    _ok(
        """\
        flows:
          f:
            description: d
            steps:
              - noop: true
                next:
                  - if: slots.x
                    then: END
              - action: utter_fallthrough
        """
    )


def test_link_with_next() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - id: l
                link: other
                next: l
        """
    )
    assert problem.line == 5
    assert "'link' step must be the last step" in problem.message


def test_bad_condition_in_next() -> None:
    problem = _one_problem(
        """\
        flows:
          f:
            description: d
            steps:
              - noop: true
                next:
                  - if: slots.x = = 3
                    then: END
                  - else: END
        """
    )
    assert problem.line == 7
    assert "does not parse" in problem.message


def test_bad_condition_in_guard_and_rejection() -> None:
    _, problems = _parse(
        """\
        flows:
          f:
            description: d
            if: slots.a and or slots.b
            steps:
              - collect: x
                rejections:
                  - if: "slots.x >"
                    utter: utter_no
        """
    )
    assert sorted((p.line, "does not parse" in p.message) for p in problems) == [
        (4, True),
        (8, True),
    ]


def test_templated_conditions_are_not_checked() -> None:
    _ok(
        """\
        flows:
          pattern_x:
            description: d
            steps:
              - noop: true
                next:
                  - if: "slots.{{context.collect}} is not null"
                    then: END
                  - else: END
        """
    )


@pytest.mark.parametrize("value", ["[1, 2]", "just text"])
def test_flows_must_be_a_mapping(value: str) -> None:
    data, _ = parse_yaml(f"flows: {value}\n", FILE)
    flows, problems = parse_flows(data["flows"], FILE)
    assert flows == []
    assert len(problems) == 1 and "'flows' must be a mapping" in problems[0].message
    if value.startswith("["):
        assert problems[0].line == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  f: just text\n", "a flow must be a mapping"),
        ("  f:\n    description: d\n    steps: []\n", "'steps' must be a non-empty list"),
        ("  f:\n    description: d\n", "'steps' must be a non-empty list"),
    ],
)
def test_malformed_flow_bodies(body: str, message: str) -> None:
    data, _ = parse_yaml("flows:\n" + body, FILE)
    flows, problems = parse_flows(data["flows"], FILE)
    assert flows == []
    assert len(problems) == 1
    assert message in problems[0].message
    assert problems[0].line is not None and problems[0].line >= 2


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (["- collect: ''"], "'collect' needs a slot name"),
        (["- action: ''"], "'action' needs a name"),
        (["- set_slots: [1]"], "'set_slots' must be a list of {slot: value} mappings"),
        (["- just text"], "a step must be a mapping"),
        (["- id: END", "  action: utter_a"], "'END' is reserved"),
        (["- action: a", "  next: 5"], "'next' must be a step id"),
        (["- action: a", "  next:", "    - then: END"], "needs both 'if' and 'then'"),
        (["- action: a", "  next:", "    - just text"], "each 'next' branch must be"),
        (
            ["- action: a", "  next:", "    - if: slots.x", "      then: 3"],
            "a branch must name a step id",
        ),
        (["- collect: x", "  rejections: nope"], "'rejections' must be a list"),
        (["- collect: x", "  rejections:", "    - utter: u"], "each rejection needs an 'if'"),
    ],
)
def test_malformed_steps(step: list[str], message: str) -> None:
    text = "flows:\n  f:\n    description: d\n    steps:\n" + "".join(
        f"      {line}\n" for line in step
    )
    data, yaml_problems = parse_yaml(text, FILE)
    assert yaml_problems == []
    _, problems = parse_flows(data["flows"], FILE)
    assert any(message in p.message for p in problems), [str(p) for p in problems]
    # a scalar step carries no line of its own: its problem points at the flow (line 2)
    first_line = 2 if step == ["- just text"] else 5
    assert all(p.line is not None and p.line >= first_line for p in problems), [
        str(p) for p in problems
    ]


def test_parse_flows_never_raises_on_odd_values() -> None:
    odd: Any = {
        "f": {
            "description": 3,
            "steps": [{"action": "a"}],
            "nlu_trigger": [{"intent": 3}],
            "persisted_slots": "x",
        }
    }
    flows, problems = parse_flows(odd, FILE)
    messages = " | ".join(p.message for p in problems)
    assert "'description' must be text" in messages
    assert "an nlu_trigger needs an intent name" in messages
    assert "'persisted_slots' must be a list of slot names" in messages
    assert [f.id for f in flows] == ["f"]


# --- suggestions (kefu) -----------------------------------------------------------------


def test_suggestions_are_parsed_with_their_translations() -> None:
    flows = _ok(
        """
        flows:
          track:
            description: Track.
            suggestions:
              - title: "It hasn't arrived"
                payload: "/get_refund"
                translation:
                  zh: "还没收到"
            steps:
              - action: utter_x
        """
    )
    [suggestion] = flows["track"].suggestions
    assert (suggestion.title, suggestion.payload) == ("It hasn't arrived", "/get_refund")
    assert suggestion.title_in("zh-CN") == "还没收到"
    assert suggestion.title_in("en") == "It hasn't arrived"


@pytest.mark.parametrize(
    "suggestions",
    [
        '[{title: "A", payload: "get_refund"}]',
        '[{title: "A"}]',
        '[{title: "A", payload: "/a", translation: "B"}]',
        "[" + ", ".join('{title: "A", payload: "/a"}' for _ in range(4)) + "]",
        '"/a"',
    ],
)
def test_bad_suggestions_are_problems(suggestions: str) -> None:
    problem = _one_problem(
        f"""
        flows:
          track:
            description: Track.
            suggestions: {suggestions}
            steps:
              - action: utter_x
        """
    )
    assert "suggestion" in problem.message
