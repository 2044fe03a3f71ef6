"""The description router: flows with no NLU examples, chosen by their name and description.

The messages below were written for this test, in the spirit of the user messages of Rasa's
project templates (banking, telco, small talk), against the flows of
``tests/projects/described`` (descriptions in English, ``translation`` names and descriptions
in Chinese). The figures they pin are those measured when the router was calibrated.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.flows import parse_flows
from bot.project import Project, load_project
from bot.settings import Settings
from bot.testing.e2e import run_tests
from bot.understanding.flow_router import FlowRouter

PROJECT = Path(__file__).parent / "projects" / "described"

ENGLISH = [
    ("hi there", "hello"),
    ("good morning", "hello"),
    ("bye for now", "goodbye"),
    ("see you later", "goodbye"),
    ("how much money do I have", "check_balance"),
    ("what's my current balance?", "check_balance"),
    ("I want to send 40 dollars to Anna", "transfer_money"),
    ("pay my friend back", "transfer_money"),
    ("I lost my credit card", "block_card"),
    ("please freeze my debit card", "block_card"),
    ("my wifi is really slow today", "fix_slow_internet"),
    ("the internet keeps cutting out", "fix_slow_internet"),
    ("why is my phone bill so high?", "explain_bill"),
    ("can you go through the charges on my bill", "explain_bill"),
    ("am I talking to a real person?", "bot_challenge"),
    ("are you a robot", "bot_challenge"),
    ("show me the most common questions", "show_faqs"),
]
CHINESE = [
    ("你好", "hello"),
    ("早上好", "hello"),
    ("再见", "goodbye"),
    ("我的账户里还有多少钱", "check_balance"),
    ("查一下余额", "check_balance"),
    ("我想给张三转500块", "transfer_money"),
    ("我的银行卡丢了", "block_card"),
    ("帮我冻结信用卡", "block_card"),
    ("家里网速太慢了", "fix_slow_internet"),
    ("这个月话费账单怎么这么高", "explain_bill"),
    ("你是机器人吗", "bot_challenge"),
    ("常见问题有哪些", "show_faqs"),
]
OUT_OF_SCOPE = [
    "what's the weather like in Paris",
    "tell me a joke about cats",
    "yes",
    "April",
    "1234 5678",
    "明天会下雨吗",
    "推荐一部好看的电影",
    "好的",
]


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(PROJECT)


@pytest.fixture(scope="module")
def router(project: Project) -> FlowRouter:
    found = FlowRouter.for_flows(project.flows.flows.values(), trained_intents=set(), examples={})
    assert found is not None
    return found


def routed(router: FlowRouter, text: str) -> str | None:
    prediction = router.route(text)
    return None if prediction.out_of_scope else prediction.ranking[0][0]


@pytest.mark.parametrize(("messages", "least", "misrouted"), [(ENGLISH, 14, 1), (CHINESE, 11, 0)])
def test_in_scope_messages_reach_their_flow(
    router: FlowRouter, messages: list[tuple[str, str]], least: int, misrouted: int
) -> None:
    right = [text for text, flow in messages if routed(router, text) == flow]
    wrong = [(text, routed(router, text)) for text, flow in messages if text not in right]

    assert len(right) >= least, wrong
    assert sum(flow is not None for _, flow in wrong) <= misrouted, wrong


@pytest.mark.parametrize("text", OUT_OF_SCOPE)
def test_out_of_scope_messages_start_no_flow(router: FlowRouter, text: str) -> None:
    assert routed(router, text) is None


def test_knowledge_questions_compete_with_the_flows(project: Project) -> None:
    questions = [("How much does an international transfer cost?", "en")]
    flows = project.flows.flows.values()
    router = FlowRouter.for_flows(flows, trained_intents=set(), examples={}, questions=questions)
    assert router is not None

    assert router.route("what does a transfer abroad cost?").out_of_scope
    assert routed(router, "I want to send 40 dollars to Anna") == "transfer_money"
    assert "pattern_search" not in router.flow_ids


def test_only_flows_without_training_data_are_routed() -> None:
    flows, problems = parse_flows(
        {
            "trained": {
                "description": "Track an order.",
                "nlu_trigger": [{"intent": "track"}],
                "steps": [{"call": "subflow"}],
            },
            "subflow": {"description": "Check the order number.", "steps": [{"noop": True}]},
            "hidden": {"description": "Leave feedback.", "if": False, "steps": [{"noop": True}]},
            "described": {"description": "Say hello.", "steps": [{"noop": True}]},
        },
        "flows.yml",
    )
    assert problems == []

    router = FlowRouter.for_flows(flows, trained_intents={"track"}, examples={})
    assert router is not None
    assert router.flow_ids == ("described",)
    assert FlowRouter.for_flows(flows[:2], trained_intents={"track"}, examples={}) is None


def test_trigger_examples_of_an_untrained_intent_lend_their_words() -> None:
    flows, _ = parse_flows(
        {
            "refund": {
                "description": "Handle a request.",
                "nlu_trigger": [{"intent": "money_back"}],
                "steps": [{"noop": True}],
            },
            "greet": {"description": "Say hello to the customer.", "steps": [{"noop": True}]},
        },
        "flows.yml",
    )
    examples = {"money_back": ["I want my money back", "refund this purchase please"]}
    router = FlowRouter.for_flows(flows, trained_intents=set(), examples=examples)
    assert router is not None

    assert routed(router, "can I get my money back?") == "refund"


async def test_kefu_test_runs_the_described_project_with_no_llm(project: Project) -> None:
    output = io.StringIO()
    report = await run_tests(project, output=output, settings=Settings())

    assert report.ok, output.getvalue()
    assert report.passed == 3
