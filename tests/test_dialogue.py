"""The dialogue engine end to end: App turns over a tmp_path project and a real SQLite store.

Turns are driven with button payloads (``/intent{...}``, ``/SetSlots(...)``) wherever the
classifier's confidence would otherwise decide, and with plain text where the engine reads the
text itself (slot answers, "cancel", "human", knowledge questions).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot import constants
from bot.app import App
from bot.dialogue import commands as cmd
from bot.dialogue.turn import Turn
from bot.errors import ProjectError
from bot.events import (
    ActionExecuted,
    BotMessage,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowInterrupted,
    FlowResumed,
    FlowStarted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserMessage,
)
from bot.project import Project, load_project
from bot.settings import Settings
from bot.state import ConversationState
from bot.turns import TurnResult

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOMAIN = """\
version: "3.1"
language: en

intents:
  - order
  - thank
  - set_tier
  - start_parent
  - start_linker
  - route
  - vip
  - lookup
  - confirm_email

entities:
  - product

slots:
  product:
    type: text
    mappings:
      - type: from_entity
        entity: product
      - type: from_text
  quantity:
    type: float
    mappings:
      - type: from_text
  gift:
    type: bool
    mappings:
      - type: from_text
  size:
    type: categorical
    values: [small, medium, large]
    mappings:
      - type: from_text
  email:
    type: text
    mappings:
      - type: from_text
  tier:
    type: text
    mappings:
      - type: controlled
  member:
    type: categorical
    values: [gold, silver, basic]
    mappings:
      - type: from_text
  status:
    type: text
    mappings:
      - type: controlled
  code:
    type: text
    mappings:
      - type: from_text
  counter:
    type: text
    mappings:
      - type: from_llm

responses:
  utter_ask_product:
    - text: "Which product would you like?"
  utter_ask_quantity:
    - text: "How many?"
  utter_too_many:
    - text: "At most 10 at a time, please."
  utter_ask_gift:
    - text: "Is it a gift?"
  utter_ask_size:
    - text: "Which size?"
  utter_ordered:
    - text: "Ordered {quantity} {size} {product}, gift {gift}."
  utter_ask_email:
    - text: "What is your email?"
  utter_email_ok:
    - text: "Email {email} noted."
  utter_tier:
    - text: "Your tier is {tier}."
  utter_parent_start:
    - text: "parent start"
  utter_parent_end:
    - text: "parent end"
  utter_child:
    - text: "child here"
  utter_linking:
    - text: "linking"
  utter_ask_member:
    - text: "Which membership?"
  utter_gold:
    - text: "gold path"
  utter_silver:
    - text: "silver path"
  utter_basic:
    - text: "basic path"
  utter_vip_welcome:
    - text: "Welcome to the VIP lounge."
  utter_ask_code:
    - text: "Which code?"
  utter_status:
    - text: "Status {status}."
  utter_after:
    - text: "All done with {code}."
  utter_thank:
    - text: "You're very welcome!"

actions:
  - action_lookup
  - action_crash

session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
"""

FLOWS = """\
flows:
  order:
    description: Order a product.
    name: order a product
    nlu_trigger:
      - intent: order
    persisted_slots:
      - product
    steps:
      - collect: product
      - collect: quantity
        rejections:
          - if: slots.quantity > 10
            utter: utter_too_many
      - collect: gift
      - collect: size
        reset_after_flow_ends: false
      - action: utter_ordered

  tier:
    description: Make the customer a gold member.
    nlu_trigger:
      - intent: set_tier
    steps:
      - set_slots:
          - tier: gold
      - action: utter_tier

  parent:
    description: Calls a child flow.
    nlu_trigger:
      - intent: start_parent
    steps:
      - action: utter_parent_start
      - call: child
      - action: utter_parent_end

  child:
    description: Called by the parent.
    steps:
      - collect: code
      - action: utter_child

  linker:
    description: Hands over to another flow.
    nlu_trigger:
      - intent: start_linker
    steps:
      - action: utter_linking
      - link: linked

  linked:
    description: Asks for an email.
    steps:
      - collect: email
      - action: utter_email_ok

  confirm_email:
    description: Confirms the email even when known.
    nlu_trigger:
      - intent: confirm_email
    steps:
      - collect: email
        ask_before_filling: true
      - action: utter_email_ok

  route:
    description: Branches on the membership.
    nlu_trigger:
      - intent: route
    steps:
      - collect: member
        next:
          - if: slots.member = "gold"
            then:
              - action: utter_gold
                next: END
          - if: slots.member is "silver"
            then: silver
          - else:
              - action: utter_basic
                next: END
      - id: silver
        action: utter_silver

  vip:
    description: Only for gold members.
    if: slots.tier = "gold"
    nlu_trigger:
      - intent: vip
    steps:
      - action: utter_vip_welcome

  lookup:
    description: Looks up a code with custom actions.
    nlu_trigger:
      - intent: lookup
    steps:
      - collect: code
      - action: action_lookup
      - action: utter_status
      - action: action_crash
      - action: utter_after
"""

NLU = """\
version: "3.1"
nlu:
  - intent: order
    examples: |
      - I want to order [shoes](product)
      - buy a [hat](product)
      - purchase something
  - intent: thank
    examples: |
      - thanks a lot
      - thank you
      - cheers mate
  - intent: set_tier
    examples: |
      - upgrade my tier
      - make me gold
  - intent: start_parent
    examples: |
      - parent flow
      - run the parent
  - intent: start_linker
    examples: |
      - linker flow
      - run the linker
  - intent: route
    examples: |
      - pick a route
      - membership route
  - intent: vip
    examples: |
      - vip lounge
      - enter the lounge
  - intent: lookup
    examples: |
      - look up a code
      - lookup code
  - intent: confirm_email
    examples: |
      - confirm my email
      - check my email
"""

ACTIONS = """\
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ActionLookup(Action):
    def name(self) -> str:
        return "action_lookup"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=f"Looking up {tracker.get_slot('code')}.")
        return [SlotSet("status", "shipped")]


class ActionCrash(Action):
    def name(self) -> str:
        return "action_crash"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if tracker.get_slot("code") == "boom":
            raise RuntimeError("the warehouse is on fire")
        dispatcher.utter_message(text="No crash this time.")
        return []
"""

KNOWLEDGE = """\
# Delivery

## Shipping abroad

Parcels to Canada travel by air freight and cost 15 euros;
delivery to Canada takes seven working days.

## Gift wrapping

Gift wrapping with a ribbon costs 3 euros per parcel.
"""

OVERRIDE_FLOWS = """\
flows:
  greet_flow:
    description: Says hello.
    nlu_trigger:
      - intent: hello
    steps:
      - action: utter_hello
  pattern_completed:
    description: The shop's own goodbye once a task is done.
    steps:
      - action: utter_shop_done
"""

OVERRIDE_DOMAIN = """\
version: "3.1"
intents:
  - hello
responses:
  utter_hello:
    - text: "Hello there."
  utter_shop_done:
    - text: "Done! Anything else for the shop?"
"""

OVERRIDE_NLU = """\
version: "3.1"
nlu:
  - intent: hello
    examples: |
      - hello
      - hi there
"""


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def settings_for(db: Path) -> Settings:
    return Settings.from_env({"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, env_file=None)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = write_project(
        tmp_path_factory.mktemp("dialogue_project"),
        {
            "domain.yml": DOMAIN,
            "flows/flows.yml": FLOWS,
            "flows/nlu.yml": NLU,
            "actions/__init__.py": "",
            "actions/actions.py": ACTIONS,
            "knowledge/delivery.md": KNOWLEDGE,
        },
    )
    return load_project(root)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(project: Project, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    db = tmp_path_factory.mktemp("dialogue_db") / "kefu.db"
    bot = await App.create(project, settings=settings_for(db))
    yield bot
    await bot.close()


_ids = itertools.count()


def new_cid() -> str:
    return f"rest:dialogue{next(_ids)}"


class Chat:
    """One conversation: send turns, read what came back."""

    def __init__(self, agent: App, cid: str | None = None) -> None:
        self.agent = agent
        self.cid = cid or new_cid()

    async def send(self, text: str = "", *, payload: str | None = None, **extra: Any) -> TurnResult:
        if payload is None and text.startswith("/"):
            payload = text
        message = UserMessage(
            channel="rest",
            conversation_id=self.cid,
            sender_id="tester",
            text=text,
            payload=payload,
            **extra,
        )
        return await self.agent.turns.process(message)

    async def offer(self, *payloads: str) -> None:
        """Store ``payloads`` as the buttons the bot's latest turn offered: only an offered
        payload counts (``bot.dialogue.trust``), and these tests press ones no flow shows."""
        state = await self.agent.store.load(self.cid) or ConversationState(
            conversation_id=self.cid, channel="rest", sender_id="tester"
        )
        state.offered_payloads = list(payloads)
        await self.agent.store.save(state, [])

    async def press(self, payload: str, **extra: Any) -> TurnResult:
        """Send ``payload`` as a pressed button the bot had just offered."""
        await self.offer(payload)
        return await self.send(payload, **extra)

    async def state(self) -> ConversationState:
        state = await self.agent.store.load(self.cid)
        assert state is not None
        return state

    async def slots(self) -> dict[str, Any]:
        return (await self.state()).slots

    async def flows(self) -> list[str]:
        """Flow ids on the stack, bottom first (patterns included)."""
        return [f["flow_id"] for f in (await self.state()).stack]


def texts(result: TurnResult) -> list[str | None]:
    return [m.text for m in result.messages]


def of(result: TurnResult, kind: type[Event]) -> list[Any]:
    return [e for e in result.events if isinstance(e, kind)]


def started(result: TurnResult) -> list[str]:
    return [e.flow_id for e in of(result, FlowStarted)]


def slot_events(result: TurnResult) -> list[tuple[str, Any]]:
    return [(e.name, e.value) for e in of(result, SlotSet)]


async def started_chat(agent: App) -> Chat:
    """A conversation past its session start (first turn)."""
    chat = Chat(agent)
    await chat.press('/SetSlots(counter="0")')
    return chat


# --- project ------------------------------------------------------------------------------


async def test_project_loads_with_default_patterns(project: Project) -> None:
    for pattern in (
        "pattern_session_start",
        "pattern_collect_information",
        "pattern_completed",
        "pattern_cancel_flow",
        "pattern_correction",
        "pattern_continue_interrupted",
        "pattern_cannot_handle",
        "pattern_chitchat",
        "pattern_search",
        "pattern_human_handoff",
        "pattern_internal_error",
        "pattern_clarification",
        "pattern_restart",
    ):
        flow = project.flows.get(pattern)
        assert flow is not None and flow.is_pattern, pattern
    assert project.actions_package == "actions"
    assert project.knowledge_dir is not None


async def test_broken_flow_is_refused(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            "domain.yml": 'version: "3.1"\nresponses:\n  utter_a:\n    - text: a\n',
            "flows/flows.yml": (
                "flows:\n  f:\n    description: d\n    steps:\n"
                "      - action: utter_a\n        next: nowhere\n"
            ),
        },
    )
    with pytest.raises(ProjectError) as info:
        load_project(root)
    assert "nowhere" in str(info.value)


# --- session start --------------------------------------------------------------------------


async def test_first_message_starts_a_session(agent: App) -> None:
    chat = Chat(agent)
    result = await chat.press('/SetSlots(counter="1")')
    assert started(result)[0] == "pattern_session_start"
    assert len(of(result, SessionStarted)) == 1
    assert any(
        isinstance(e, ActionExecuted) and e.name == "action_session_start" for e in result.events
    )
    # the session starts before the user's event is appended
    kinds = [type(e) for e in result.events]
    assert kinds.index(SessionStarted) < kinds.index(UserMessage)
    assert ("counter", "1") in slot_events(result)
    second = await chat.press('/SetSlots(counter="2")')
    assert of(second, SessionStarted) == []
    assert (await chat.slots())["counter"] == "2"


async def test_expired_session_starts_a_new_one(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/order")
    assert await chat.flows() == ["order", "pattern_collect_information"]
    state = await chat.state()
    state.last_active_at = time.time() - 2 * 3600  # the domain's expiry is 60 minutes
    await agent.store.save(state, [])
    result = await chat.press('/SetSlots(counter="late")')
    assert len(of(result, SessionStarted)) == 1
    assert started(result)[0] == "pattern_session_start"
    # the old session's flow is gone; slots carry over (carry_over_slots_to_new_session: true)
    assert "order" not in await chat.flows()
    assert (await chat.slots())["counter"] == "late"


# --- collect --------------------------------------------------------------------------------


async def test_collect_asks_and_fills_every_slot_type(agent: App) -> None:
    chat = await started_chat(agent)
    first = await chat.send("/order")
    assert started(first) == ["order", "pattern_collect_information"]
    assert texts(first) == ["Which product would you like?"]
    assert await chat.flows() == ["order", "pattern_collect_information"]
    assert (await chat.state()).stack[-1]["collect"] == "product"

    product = await chat.send("red sneakers")
    assert ("product", "red sneakers") in slot_events(product)
    assert texts(product) == ["How many?"]

    quantity = await chat.send("3")
    assert ("quantity", 3.0) in slot_events(quantity)
    assert texts(quantity) == ["Is it a gift?"]

    gift = await chat.send("yes")
    assert ("gift", True) in slot_events(gift)
    assert texts(gift) == ["Which size?"]

    size = await chat.send("medium")
    assert ("size", "medium") in slot_events(size)
    assert texts(size)[0] == "Ordered 3.0 medium red sneakers, gift True."
    completed = [e.flow_id for e in of(size, FlowCompleted)]
    assert "order" in completed
    # pattern_completed follows the finished task
    assert "pattern_completed" in started(size)
    assert texts(size)[-1] == "Is there anything else I can help you with?"
    # slots reset after the flow ends, except persisted_slots and reset_after_flow_ends: false
    slots = await chat.slots()
    assert slots["product"] == "red sneakers"  # persisted_slots
    assert slots["size"] == "medium"  # reset_after_flow_ends: false
    assert slots.get("quantity") is None
    assert slots.get("gift") is None
    assert ("quantity", None) in slot_events(size) and ("gift", None) in slot_events(size)
    assert await chat.flows() == []


async def test_filled_slot_is_not_asked_again(agent: App) -> None:
    chat = await started_chat(agent)
    await agent.turns.set_slots(chat.cid, {"product": "hat", "quantity": 2})
    result = await chat.send("/order")
    assert texts(result) == ["Is it a gift?"]


async def test_bool_answers_in_english_and_chinese(agent: App) -> None:
    chat = await started_chat(agent)
    await agent.turns.set_slots(chat.cid, {"product": "hat", "quantity": 1})
    await chat.send("/order")
    no = await chat.send("no")
    assert ("gift", False) in slot_events(no)

    zh = await started_chat(agent)
    await agent.turns.set_slots(zh.cid, {"product": "hat", "quantity": 1})
    await zh.send("/order")
    yes = await zh.send("是的")
    assert ("gift", True) in slot_events(yes)
    assert yes.events[[type(e) for e in yes.events].index(UserMessage)].language == "zh"

    zh_no = await started_chat(agent)
    await agent.turns.set_slots(zh_no.cid, {"product": "hat", "quantity": 1})
    await zh_no.send("/order")
    refused = await zh_no.send("不要")
    assert ("gift", False) in slot_events(refused)
    assert texts(refused) == ["Which size?"]


async def test_rejection_reasks_with_its_utter(agent: App) -> None:
    chat = await started_chat(agent)
    await agent.turns.set_slots(chat.cid, {"product": "hat"})
    await chat.send("/order")
    rejected = await chat.send("50")
    assert slot_events(rejected)[:2] == [("quantity", 50.0), ("quantity", None)]
    assert texts(rejected) == ["At most 10 at a time, please.", "How many?"]
    assert (await chat.slots())["quantity"] is None
    assert await chat.flows() == ["order", "pattern_collect_information"]
    accepted = await chat.send("4")
    assert ("quantity", 4.0) in slot_events(accepted)
    assert texts(accepted) == ["Is it a gift?"]


async def test_ask_before_filling_reasks_a_filled_slot(agent: App) -> None:
    chat = await started_chat(agent)
    await agent.turns.set_slots(chat.cid, {"email": "old@example.com"})
    result = await chat.send("/confirm_email")
    assert ("email", None) in slot_events(result)
    assert texts(result) == ["What is your email?"]
    answered = await chat.send("new@example.com")
    assert texts(answered)[0] == "Email new@example.com noted."


# --- set_slots, responses, custom actions ------------------------------------------------------


async def test_set_slots_step_and_response_action(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("/set_tier")
    assert ("tier", "gold") in slot_events(result)
    assert texts(result)[0] == "Your tier is gold."
    assert any(isinstance(e, ActionExecuted) and e.name == "utter_tier" for e in result.events)
    assert result.messages[0].response == "utter_tier"
    assert (await chat.slots())["tier"] == "gold"  # set, not collected: not reset


async def test_custom_actions_run_from_the_actions_package(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/lookup")
    result = await chat.send("ok-42")
    assert texts(result)[:4] == [
        "Looking up ok-42.",
        "Status shipped.",
        "No crash this time.",
        "All done with ok-42.",
    ]
    assert ("status", "shipped") in slot_events(result)
    names = [e.name for e in of(result, ActionExecuted)]
    assert names.index("action_lookup") < names.index("action_crash")


async def test_crashing_action_reports_an_internal_error_and_keeps_the_conversation(
    agent: App,
) -> None:
    chat = await started_chat(agent)
    await chat.send("/lookup")
    result = await chat.send("boom")
    assert texts(result) == [
        "Looking up boom.",
        "Status shipped.",
        "Sorry, something went wrong on my side. Please try again in a moment.",
    ]
    assert "pattern_internal_error" in started(result)
    assert all(m.text != "All done with boom." for m in result.messages)
    # state intact: the flow and its slots are still there
    assert await chat.flows() == ["lookup"]
    slots = await chat.slots()
    assert slots["code"] == "boom" and slots["status"] == "shipped"
    # and the next turn works: the failed step runs again with the new value
    retry = await chat.press('/SetSlots(code="fine")')
    assert texts(retry)[:2] == ["No crash this time.", "All done with fine."]
    assert "lookup" in [e.flow_id for e in of(retry, FlowCompleted)]


# --- call, link, branches, guards ----------------------------------------------------------------


async def test_call_returns_to_the_parent(agent: App) -> None:
    chat = await started_chat(agent)
    asked = await chat.send("/start_parent")
    assert texts(asked) == ["parent start", "Which code?"]
    assert started(asked) == ["parent", "child", "pattern_collect_information"]
    state = await chat.state()
    assert [f["flow_id"] for f in state.stack] == ["parent", "child", "pattern_collect_information"]
    assert state.stack[1]["frame_type"] == "call"
    result = await chat.send("c-1")
    assert texts(result)[:2] == ["child here", "parent end"]
    completed = [e.flow_id for e in of(result, FlowCompleted)]
    assert completed.index("child") < completed.index("parent")
    # one pattern_completed, for the parent only; the child's slots are reset with the parent's
    assert started(result).count("pattern_completed") == 1
    assert await chat.flows() == []
    assert (await chat.slots()).get("code") is None


async def test_cancel_inside_a_called_flow_cancels_the_caller(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/start_parent")
    result = await chat.send("cancel")
    assert sorted(e.flow_id for e in of(result, FlowCancelled)) == ["child", "parent"]
    assert "parent end" not in texts(result)


async def test_link_replaces_the_flow(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("/start_linker")
    assert texts(result) == ["linking", "What is your email?"]
    assert [e.flow_id for e in of(result, FlowCompleted)] == ["linker"]
    state = await chat.state()
    assert [f["flow_id"] for f in state.stack] == ["linked", "pattern_collect_information"]
    assert state.stack[0]["frame_type"] == "link"
    done = await chat.send("me@example.com")
    assert texts(done)[0] == "Email me@example.com noted."
    assert "pattern_completed" in started(done)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("gold", "gold path"), ("Silver", "silver path"), ("basic", "basic path")],
)
async def test_branching_on_slot_values(agent: App, answer: str, expected: str) -> None:
    chat = await started_chat(agent)
    asked = await chat.send("/route")
    assert texts(asked) == ["Which membership?"]
    result = await chat.send(answer)
    assert texts(result)[0] == expected
    assert [t for t in texts(result) if t and t.endswith("path")] == [expected]


async def test_flow_guard_blocks_start(agent: App) -> None:
    chat = await started_chat(agent)
    blocked = await chat.send("/vip")
    assert "vip" not in started(blocked)
    assert "Welcome to the VIP lounge." not in texts(blocked)
    await agent.turns.set_slots(chat.cid, {"tier": "gold"}, trusted=True)  # as staff would
    allowed = await chat.send("/vip")
    assert "vip" in started(allowed)
    assert texts(allowed)[0] == "Welcome to the VIP lounge."


# --- interruptions, cancel, correction ----------------------------------------------------------


async def _interrupted(agent: App) -> tuple[Chat, TurnResult]:
    chat = await started_chat(agent)
    await chat.send("/order")
    await chat.send("kettle")
    result = await chat.send("/set_tier")  # while the bot waits for the quantity
    return chat, result


async def test_interrupt_then_resume(agent: App) -> None:
    chat, result = await _interrupted(agent)
    interrupted = of(result, FlowInterrupted)
    assert [e.flow_id for e in interrupted] == ["order"]
    assert "tier" in started(result) and "pattern_continue_interrupted" in started(result)
    assert texts(result)[0] == "Your tier is gold."
    question = result.messages[-1]
    assert question.response == "utter_ask_continue_interrupted_flow_confirmation"
    assert [b.payload for b in question.buttons] == [
        "/SetSlots(continue_interrupted_flow_confirmation=true)",
        "/SetSlots(continue_interrupted_flow_confirmation=false)",
    ]
    resumed = await chat.send("/SetSlots(continue_interrupted_flow_confirmation=true)")
    assert [e.flow_id for e in of(resumed, FlowResumed)] == ["order"]
    assert texts(resumed) == ["How many?"]  # the pending question, asked again
    assert await chat.flows() == ["order", "pattern_collect_information"]
    assert (await chat.slots())["product"] == "kettle"
    answered = await chat.send("2")
    assert ("quantity", 2.0) in slot_events(answered)
    assert texts(answered) == ["Is it a gift?"]


async def test_continue_interrupted_question_names_the_flow(agent: App) -> None:
    _, result = await _interrupted(agent)
    assert result.messages[-1].text == "Shall we go back to order a product?"


async def test_interrupt_then_decline(agent: App) -> None:
    chat, _ = await _interrupted(agent)
    declined = await chat.send("/SetSlots(continue_interrupted_flow_confirmation=false)")
    assert [e.flow_id for e in of(declined, FlowCancelled)] == ["order"]
    assert of(declined, FlowResumed) == []
    assert await chat.flows() == []
    assert "How many?" not in texts(declined)


async def test_cancel(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/order")
    await chat.send("teapot")
    result = await chat.send("cancel")
    assert "pattern_cancel_flow" in started(result)
    assert [e.flow_id for e in of(result, FlowCancelled)] == ["order"]
    assert texts(result) == ["Okay, I've stopped order a product."]
    assert await chat.flows() == []
    # cancelling resets what the flow collected (persisted slots too? no: persisted are kept)
    assert (await chat.slots()).get("quantity") is None


async def test_cancel_without_a_flow_is_not_a_cancel(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("cancel")
    assert of(result, FlowCancelled) == []
    assert "pattern_cancel_flow" not in started(result)


async def test_correction_of_a_filled_slot(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/order")
    await chat.send("boots")
    await chat.offer('/order{"product": "sandals"}')
    result = await chat.send("actually sandals", payload='/order{"product": "sandals"}')
    assert "pattern_correction" in started(result)
    assert ("product", "sandals") in slot_events(result)
    assert texts(result) == ["Okay, I've updated that.", "How many?"]
    assert (await chat.slots())["product"] == "sandals"
    assert await chat.flows() == ["order", "pattern_collect_information"]


# --- the other default patterns ----------------------------------------------------------------


async def test_cannot_handle_unknown_payload(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("/nonexistent")
    assert "pattern_cannot_handle" in started(result)
    assert texts(result) == ["I'm sorry, I can't help with that here."]


async def test_chitchat_answers_with_the_intent_response(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/order")
    result = await chat.send("/thank")
    assert "pattern_chitchat" in started(result)
    # the answer, then the pending question again
    assert texts(result) == ["You're very welcome!", "Which product would you like?"]
    # small talk does not disturb the running task
    assert "order" in await chat.flows()
    assert of(result, FlowCancelled) == [] and of(result, FlowInterrupted) == []


async def test_search_answers_from_the_knowledge_base(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("air freight Canada cost")
    assert "pattern_search" in started(result)
    assert len(result.messages) == 1
    answer = result.messages[0]
    assert answer.text is not None and "15 euros" in answer.text
    assert answer.metadata.get("sources")


async def test_search_without_an_answer_falls_back_to_cannot_handle(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("zyxw qwvut plorp")
    assert started(result)[-2:] == ["pattern_search", "pattern_cannot_handle"]
    assert texts(result) == ["I'm sorry, I couldn't find an answer to that."]


async def test_human_handoff_without_a_desk(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("human")
    assert "pattern_human_handoff" in started(result)
    assert texts(result) == [
        "I understand you'd like to talk to a person, but no one from our team is available "
        "right now. "
        "Is there something else I can help with?"
    ]
    assert (await chat.state()).paused is False


async def test_empty_message(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("")
    assert "pattern_internal_error" in started(result)
    assert texts(result) == ["I see an empty message. What can I help you with?"]


async def test_too_long_message(agent: App) -> None:
    chat = await started_chat(agent)
    result = await chat.send("shoes " * 834)  # 5,004 characters
    assert "pattern_internal_error" in started(result)
    assert texts(result) == [
        "Sorry, that message is too long for me. Could you say it in a few sentences?"
    ]
    user = of(result, UserMessage)[0]
    assert len(user.text) == constants.MAX_MESSAGE_CHARS


async def test_clarification_offers_buttons(agent: App, project: Project) -> None:
    state = ConversationState(conversation_id="rest:clarify", channel="rest", sender_id="c")
    turn = Turn(state=state, domain=project.domain, flows=project.flows)
    agent.dialogue.executor.apply(turn, [cmd.Clarify(("order", "route", "child"))])
    await agent.dialogue.executor.advance(turn)
    assert [e.flow_id for e in turn.events if isinstance(e, FlowStarted)] == [
        "pattern_clarification"
    ]
    (message,) = turn.messages
    assert message.text == "I can help with that. Which of these do you mean?"
    # flows without an nlu_trigger cannot be offered as a button
    assert [(b.title, b.payload) for b in message.buttons] == [
        ("order a product", "/order"),
        ("route", "/route"),
    ]
    assert state.stack == []


async def test_restart(agent: App) -> None:
    chat = await started_chat(agent)
    await chat.send("/order")
    await chat.send("scarf")
    result = await chat.send("/restart")
    assert "pattern_restart" in started(result)
    assert len(of(result, Restarted)) == 1
    assert await chat.flows() == []
    slots = await chat.slots()
    assert slots.get("product") is None and slots.get("counter") is None


async def test_project_flow_overrides_a_default_pattern(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "override",
        {
            "domain.yml": OVERRIDE_DOMAIN,
            "flows/flows.yml": OVERRIDE_FLOWS,
            "flows/nlu.yml": OVERRIDE_NLU,
        },
    )
    project = load_project(root)
    completed = project.flows.get("pattern_completed")
    assert completed is not None and completed.file is not None and "flows.yml" in completed.file
    bot = await App.create(project, settings=settings_for(tmp_path / "override.db"))
    try:
        chat = Chat(bot)
        result = await chat.send("/hello")
        assert texts(result) == ["Hello there.", "Done! Anything else for the shop?"]
        assert "Is there anything else I can help you with?" not in texts(result)
    finally:
        await bot.close()


# --- the store: duplicates, concurrency, long conversations ---------------------------------------


async def test_duplicate_message_id_is_processed_once(agent: App) -> None:
    chat = await started_chat(agent)
    first = await chat.press('/SetSlots(counter="once")', message_id="m-1")
    count = (await chat.state()).event_count
    again = await chat.press('/SetSlots(counter="twice")', message_id="m-1")
    assert first.duplicate is False and again.duplicate is True
    assert again.events == [] and again.messages == []
    state = await chat.state()
    assert state.event_count == count
    assert state.slots["counter"] == "once"


async def test_concurrent_turns_are_serialised(agent: App) -> None:
    chat = await started_chat(agent)
    before = (await chat.state()).event_count
    await chat.offer(*(f'/SetSlots(counter="{i}")' for i in range(20)))
    results = await asyncio.gather(*(chat.send(f'/SetSlots(counter="{i}")') for i in range(20)))
    assert all(len(of(r, UserMessage)) == 1 for r in results)
    stored = await agent.store.events(chat.cid)
    users = [s.event for s in stored if isinstance(s.event, UserMessage)]
    assert [u.payload for u in users[-20:]] == [f'/SetSlots(counter="{i}")' for i in range(20)]
    slot_log = [
        s.event.value for s in stored if isinstance(s.event, SlotSet) and s.event.name == "counter"
    ]
    assert slot_log[-20:] == [str(i) for i in range(20)]
    state = await chat.state()
    assert state.slots["counter"] == "19"
    assert state.event_count == before + sum(len(r.events) for r in results)
    assert len(stored) == state.event_count


async def test_a_long_conversation_does_not_load_its_history(
    agent: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = await started_chat(agent)
    state = await chat.state()
    # 1,000 turns' worth of history, written the way turns write it
    for batch in range(10):
        events: list[Event] = []
        for i in range(100):
            n = batch * 100 + i
            events.append(
                UserMessage(
                    channel="rest",
                    conversation_id=chat.cid,
                    sender_id="tester",
                    text=f'/SetSlots(counter="{n}")',
                )
            )
            events.append(SlotSet(name="counter", value=str(n)))
        state.remember(events)
        await agent.store.save(state, events)
    assert (await chat.state()).event_count >= 2000

    async def no_history(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a turn must not read the event log")

    await chat.offer('/SetSlots(counter="1000")')
    monkeypatch.setattr(agent.store, "events", no_history)
    result = await chat.send('/SetSlots(counter="1000")')
    assert ("counter", "1000") in slot_events(result)
    monkeypatch.undo()
    loaded = await chat.state()
    assert len(json.dumps(loaded.to_dict())) < 4_000  # the state does not grow with the log
    assert loaded.event_count == len(await agent.store.events(chat.cid))


async def test_turn_events_are_stored_in_order(agent: App) -> None:
    chat = Chat(agent)
    first = await chat.send("/order")
    second = await chat.send("mug")
    stored = [s.event for s in await agent.store.events(chat.cid)]
    assert [e.to_dict()["event"] for e in stored] == [
        e.to_dict()["event"] for e in first.events + second.events
    ]
    assert isinstance(first.messages[0], BotMessage)
