"""The command generator's rules for messages that say more than one thing: a named order
picks the task that needs it, a request beats a policy question it resembles, a task in one
clause is not lost to a question in another, and a change of mind takes the order named
along. Parses are written by hand, so each rule is seen apart from the classifier."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.dialogue import commands as cmd
from bot.dialogue.command_generator import generate_commands
from bot.dialogue.stack import new_frame
from bot.dialogue.turn import Turn
from bot.interpreter import Parse
from bot.project import Project, load_project
from bot.state import ConversationState

DOMAIN = """\
version: "3.1"
language: en
intents: [track, refund, complain, refund_policy]
entities: [order_id]
slots:
  order_id:
    type: text
    mappings:
      - type: from_entity
        entity: order_id
  details:
    type: text
    mappings:
      - type: from_llm
  reason:
    type: categorical
    values: [damaged, other]
    mappings:
      - type: from_llm
responses:
  utter_ask_order_id:
    - text: "Order number?"
  utter_ask_details:
    - text: "What happened?"
  utter_ask_reason:
    - text: "Why?"
  utter_refund_policy:
    - text: "Refunds take 3-5 working days."
"""

FLOWS = """\
flows:
  track:
    description: Track an order.
    nlu_trigger:
      - intent: track
    steps:
      - collect: order_id
  refund:
    description: Refund an order.
    nlu_trigger:
      - intent: refund
    steps:
      - collect: order_id
      - collect: reason
  complain:
    description: Record a complaint.
    nlu_trigger:
      - intent: complain
    steps:
      - collect: details
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root: Path = tmp_path_factory.mktemp("generator_rules")
    for name, text in {"domain.yml": DOMAIN, "flows/flows.yml": FLOWS}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return load_project(root)


def turn_for(project: Project, *, asking: str | None = None) -> Turn:
    state = ConversationState(conversation_id="rest:rules", channel="rest", sender_id="x")
    if asking is not None:  # the flow `asking` waits for the order number
        state.stack.append(new_frame(asking))
        state.stack[-1]["step_id"] = "0_collect_order_id"
        state.stack.append(new_frame("pattern_collect_information", collect="order_id"))
    return Turn(state=state, domain=project.domain, flows=project.flows)


def parse(
    text: str,
    ranking: list[tuple[str, float]],
    *,
    order: str | None = None,
    clauses: tuple[tuple[str, str, float], ...] = (),
) -> Parse:
    entities: tuple[dict[str, Any], ...] = ()
    if order is not None:
        entities = ({"entity": "order_id", "value": order},)
    return Parse(
        text=text,
        language="en",
        intent=ranking[0][0],
        confidence=ranking[0][1],
        ranking=tuple(ranking),
        entities=entities,
        clauses=clauses,
    )


def started(commands: list[cmd.Command]) -> list[str]:
    return [c.flow_id for c in commands if isinstance(c, cmd.StartFlow)]


def test_a_named_order_picks_the_likely_task_that_needs_it(project: Project) -> None:
    angry = parse(
        "RIDICULOUS, still no refund for KF-10006",
        [("complain", 0.54), ("refund", 0.21), ("track", 0.05)],
        order="KF-10006",
    )
    commands = generate_commands(turn_for(project), angry, synonyms={})
    assert started(commands) == ["refund"]
    assert cmd.SetSlot("order_id", "KF-10006") in commands


def test_a_request_takes_its_choice_from_the_problem_told_just_before(project: Project) -> None:
    synonyms = {"stopped working": "damaged"}
    wish = parse("I just want my money back", [("refund", 0.9)])
    turn = turn_for(project)
    turn.state.transcript = [("user", "my watch stopped working"), ("bot", "Sorry about that.")]
    assert cmd.SetSlot("reason", "damaged") in generate_commands(turn, wish, synonyms=synonyms)
    # not when the bot has not answered it, nor from an older message than the one before
    turn.state.transcript = [("user", "my watch stopped working")]
    assert not [
        c
        for c in generate_commands(turn, wish, synonyms=synonyms)
        if isinstance(c, cmd.SetSlot) and c.name == "reason"
    ]
    turn.state.transcript = [
        ("user", "my watch stopped working"),
        ("bot", "Sorry."),
        ("user", "ok"),
        ("bot", "..."),
    ]
    assert not [
        c
        for c in generate_commands(turn, wish, synonyms=synonyms)
        if isinstance(c, cmd.SetSlot) and c.name == "reason"
    ]


def test_a_complaint_without_a_likely_task_stays_a_complaint(project: Project) -> None:
    angry = parse(
        "I want to complain about KF-10006",
        [("complain", 0.9), ("refund", 0.05)],
        order="KF-10006",
    )
    assert started(generate_commands(turn_for(project), angry, synonyms={})) == ["complain"]


def test_a_request_starts_the_task_its_policy_question_resembles(project: Project) -> None:
    ranking = [("refund_policy", 0.57), ("refund", 0.41)]
    request = generate_commands(
        turn_for(project), parse("I want to return something", ranking), synonyms={}
    )
    question = generate_commands(
        turn_for(project), parse("can I return something?", ranking), synonyms={}
    )
    asking = generate_commands(
        turn_for(project), parse("I'd like to know how returns work", ranking), synonyms={}
    )
    assert started(request) == ["refund"]
    assert question == asking == [cmd.ChitChat()]


def test_a_task_in_one_clause_starts_and_the_other_clause_is_answered(project: Project) -> None:
    both = parse(
        "the earphones crackle, I want to return them, who pays the postage",
        [("refund_policy", 0.51), ("refund", 0.18)],
        clauses=(
            ("the earphones crackle", "complain", 0.3),
            ("I want to return them", "refund", 0.74),
            ("who pays the postage", "refund_policy", 0.97),
        ),
    )
    commands = generate_commands(turn_for(project), both, synonyms={})
    assert commands == [cmd.StartFlow("refund"), cmd.ChitChat(intent="refund_policy")]


def test_a_change_of_mind_takes_the_named_order_to_the_new_task(project: Project) -> None:
    turn = turn_for(project, asking="refund")
    changed = parse(
        "hmm actually no, I just want to know where KF-10012 is",
        [("track", 0.85), ("refund", 0.05)],
        order="KF-10012",
    )
    commands = generate_commands(turn, changed, synonyms={})
    assert started(commands) == ["track"]
    assert cmd.SetSlot("order_id", "KF-10012") in commands


def test_actually_with_only_a_number_still_answers_the_question(project: Project) -> None:
    turn = turn_for(project, asking="refund")
    answer = parse("actually it's KF-10003", [("track", 0.85)], order="KF-10003")
    assert generate_commands(turn, answer, synonyms={}) == [cmd.SetSlot("order_id", "KF-10003")]


def test_a_clause_that_only_states_something_does_not_start_a_task(project: Project) -> None:
    thanks = parse(
        "it arrived yesterday, thanks",
        [("refund_policy", 0.45), ("track", 0.2)],
        clauses=(("it arrived yesterday", "track", 0.47), ("thanks", "refund_policy", 0.99)),
    )
    assert started(generate_commands(turn_for(project), thanks, synonyms={})) == []


@pytest.mark.parametrize(
    "text",
    [
        "我要找人工处理",
        "I want to talk to a real person please",
        "could I please be connected to a customer service representative?",
    ],
)
def test_a_request_for_a_person_wins_over_a_yes_no_answer(project: Project, text: str) -> None:
    turn = turn_for(project, asking="refund")
    assert generate_commands(turn, parse(text, [("refund", 0.3)]), synonyms={}) == [
        cmd.HumanHandoff()
    ]


def test_a_question_about_the_pending_question_is_no_new_task(project: Project) -> None:
    turn = turn_for(project, asking="refund")
    where = parse("where do I find the order number?", [("track", 0.9)])
    switch = parse("I want to track my order instead", [("track", 0.9)])
    assert generate_commands(turn, where, synonyms={}) == [
        cmd.RejectValue("order_id", "where do I find the order number?")
    ]
    assert started(generate_commands(turn_for(project, asking="refund"), switch, synonyms={})) == [
        "track"
    ]


def test_a_question_nothing_covers_during_a_question_goes_to_the_knowledge_base(
    project: Project,
) -> None:
    turn = turn_for(project, asking="refund")
    warranty = parse("is there a warranty on kettles?", [("product_question", 0.7)])
    assert generate_commands(turn, warranty, synonyms={}) == [cmd.Search()]


def test_a_question_asked_beside_a_task_is_answered(project: Project) -> None:
    both = parse(
        "track KF-10015 and also how long do refunds take?",
        [("track", 0.8), ("refund_policy", 0.1)],
        order="KF-10015",
        clauses=(
            ("track KF-10015", "track", 0.9),
            ("how long do refunds take?", "refund_policy", 0.9),
        ),
    )
    commands = generate_commands(turn_for(project), both, synonyms={})
    assert started(commands) == ["track"]
    assert commands[-1] == cmd.ChitChat(intent="refund_policy")


def test_the_words_examples_tell_apart_decide_a_close_call() -> None:
    from bot.understanding.hallmarks import Hallmarks

    examples = [(f"where is my refund {i}", "refund") for i in range(9)]
    examples += [(f"where is my parcel number {i}", "track") for i in range(9)]
    marks = Hallmarks(examples)
    close = (("track", 0.4), ("refund", 0.38))
    assert marks.rerank(close, "where's the refund", "en")[0][0] == "refund"
    assert marks.rerank(tuple(reversed(close)), "where is the parcel", "en")[0][0] == "track"
    assert marks.rerank(close, "where is it", "en") == close  # neither named
    assert marks.rerank((("track", 0.9), ("refund", 0.05)), "refund", "en")[0][0] == "track"
