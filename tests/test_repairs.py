"""Conversation repairs, end to end over a tmp_path project: answers that do not fit,
"never mind" phrasings, and a conversation's language kept across button presses, with the
engine's own texts (flow names included) in that language."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import App
from bot.dialogue.command_generator import is_cancel
from bot.events import FlowCancelled, UserMessage
from bot.project import Project, load_project
from bot.settings import Settings
from bot.turns import TurnResult
from bot.understanding.language import conversation_language

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOMAIN = """\
version: "3.1"
language: en
intents: [buy, track, chat]
slots:
  quantity:
    type: float
    mappings:
      - type: from_text
  size:
    type: categorical
    values: [small, large]
    mappings:
      - type: from_text
responses:
  utter_ask_quantity:
    - text: "How many?"
      translation:
        zh: "要几个？"
  utter_quantity_trouble:
    - text: "A number like 2 works best; or type 'human'."
      translation:
        zh: "请直接输入数字，比如 2；或输入“人工”。"
  utter_ask_size:
    - text: "Small or large?"
      buttons:
        - title: "Small"
          payload: "/SetSlots(size=small)"
          translation:
            zh: "小号"
      translation:
        zh: "小号还是大号？"
  utter_bought:
    - text: "Done: {quantity}."
      translation:
        zh: "好的：{quantity}。"
  utter_tracked:
    - text: "On its way."
      translation:
        zh: "正在配送。"
"""

FLOWS = """\
flows:
  buy:
    name: buying
    translation:
      zh:
        name: 购买商品
    description: Buy something.
    nlu_trigger:
      - intent: buy
    steps:
      - collect: quantity
      - collect: size
      - action: utter_bought
  track:
    name: tracking
    translation:
      zh:
        name: 查询物流
    description: Track a parcel.
    nlu_trigger:
      - intent: track
    suggestions:
      - title: "Buy more"
        payload: "/buy"
        translation:
          zh: "再买点"
    steps:
      - action: utter_tracked
"""

NLU = """\
nlu:
  - intent: buy
    examples: |
      - I want to buy something
      - 我想买东西
  - intent: track
    examples: |
      - where is my parcel
      - 我的包裹在哪
  - intent: chat
    examples: |
      - nice weather
      - 天气不错
"""

_ids = itertools.count()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("repairs_project")
    for name, text in {
        "domain.yml": DOMAIN,
        "flows/flows.yml": FLOWS,
        "flows/nlu.yml": NLU,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return load_project(root)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(project: Project, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    db: Path = tmp_path_factory.mktemp("repairs_db") / "kefu.db"
    settings = Settings.from_env({"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, env_file=None)
    bot = await App.create(project, settings=settings)
    yield bot
    await bot.close()


class Chat:
    def __init__(self, agent: App) -> None:
        self.agent = agent
        self.cid = f"rest:repairs{next(_ids)}"

    async def send(self, text: str) -> TurnResult:
        message = UserMessage(
            channel="rest",
            conversation_id=self.cid,
            sender_id="tester",
            text=text,
            payload=text if text.startswith("/") else None,
        )
        return await self.agent.turns.process(message)


def texts(result: TurnResult) -> list[str | None]:
    return [m.text for m in result.messages]


async def test_two_answers_that_do_not_fit_change_tack(agent: App) -> None:
    chat = Chat(agent)
    assert texts(await chat.send("/buy")) == ["How many?"]

    first = await chat.send("lots")
    second = await chat.send("heaps and heaps")
    third = await chat.send("a great many")

    assert texts(first) == [
        "Sorry, that doesn't look like a number. Could you give me a number?",
        "How many?",
    ]
    assert texts(second) == ["A number like 2 works best; or type 'human'."]
    assert texts(third) == ["A number like 2 works best; or type 'human'."]
    assert texts(await chat.send("3")) == ["Small or large?"]


async def test_without_a_response_of_its_own_the_default_explains(agent: App) -> None:
    chat = Chat(agent)
    await chat.send("/buy")
    await chat.send("2")

    await chat.send("purple")
    second = await chat.send("green")

    [trouble] = second.messages
    assert trouble.text is not None and "'human'" in trouble.text
    assert "Small or large?" not in texts(second)
    assert [(b.title, b.payload) for b in trouble.buttons] == [("Small", "/SetSlots(size=small)")]


@pytest.mark.parametrize(
    "text",
    [
        "never mind, forget it",
        "oh ok, never mind",
        "嗯，算了，不改了",
        "算了不改了",
        "stop that please",
    ],
)
async def test_never_mind_phrasings_cancel_the_flow(agent: App, text: str) -> None:
    chat = Chat(agent)
    await chat.send("/buy")

    result = await chat.send(text)

    assert [e.flow_id for e in result.events if isinstance(e, FlowCancelled)] == ["buy"]


@pytest.mark.parametrize(
    "text",
    [
        "stop, I'll sort it out later",
        "不用了，谢谢，我自己再看看",
        "算了，回头再说",
        "ugh, forget it, not worth the hassle",
        "actually nvm, the old one is fine",
        "哎，算了算了，太麻烦了",
        "nah forget it, just browsing",
        "oh forget about it, my accountant will sort it",
        "actually forget it, my bank sorted it out",
        "算了，已经解决了",
        "算了不用推荐了，我自己逛逛",
        "scrap that, I'll be home anyway",
        "hold on, don't bother, I'll just keep it",
        "哦等等，地址没错，不用改了",
    ],
)
async def test_stopping_for_now_cancels_the_flow(agent: App, text: str) -> None:
    chat = Chat(agent)
    await chat.send("/buy")

    result = await chat.send(text)

    assert [e.flow_id for e in result.events if isinstance(e, FlowCancelled)] == ["buy"]


async def test_a_done_flow_suggests_its_next_questions_in_the_conversation_language(
    agent: App,
) -> None:
    english, chinese = Chat(agent), Chat(agent)
    await chinese.send("你好")

    [tracked_en] = (await english.send("/track")).messages[:1]
    tracked_zh = (await chinese.send("/track")).messages

    assert tracked_en.text == "On its way."
    assert [(b.title, b.payload) for b in tracked_en.buttons] == [("Buy more", "/buy")]
    assert tracked_zh[0].text == "正在配送。"
    assert [(b.title, b.payload) for b in tracked_zh[0].buttons] == [("再买点", "/buy")]
    assert all(not m.buttons for m in tracked_zh[1:])  # only under the flow's own answer


@pytest.mark.parametrize("text", ["later", "I'll do it myself later", "以后再说"])
async def test_putting_off_alone_is_not_a_stop(text: str) -> None:
    assert not is_cancel(text)


@pytest.mark.parametrize(
    "text",
    [
        "no",
        "cancel my order",
        "算了吧我还是自己查",
        "取消订单",
        "never mind, my order is KF-10002",
        "forget it, where is my refund",
        "不行了",
        "他不在家了",
    ],
)
async def test_a_sentence_that_only_mentions_stopping_is_not_a_stop(text: str) -> None:
    assert not is_cancel(text)


async def test_buttons_keep_the_conversation_chinese(agent: App) -> None:
    chat = Chat(agent)
    await chat.send("你好")
    assert texts(await chat.send("/buy")) == ["要几个？"]

    asked = await chat.send("2")
    done = await chat.send("/SetSlots(size=small)")

    assert [(m.text, [b.title for b in m.buttons]) for m in asked.messages] == [
        ("小号还是大号？", ["小号"])
    ]
    assert texts(done)[0] == "好的：2.0。"


async def test_flow_names_are_shown_in_the_conversation_language(agent: App) -> None:
    chat = Chat(agent)
    await chat.send("你好")
    await chat.send("/buy")

    interrupted = await chat.send("/track")
    cancelled = await chat.send("/SetSlots(continue_interrupted_flow_confirmation=false)")

    assert "正在配送。" in texts(interrupted)
    assert any("购买商品" in (text or "") for text in texts(interrupted))
    assert [e.flow_id for e in cancelled.events if isinstance(e, FlowCancelled)] == ["buy"]


async def test_flow_names_translate_by_language_code(project: Project) -> None:
    buy, track = project.flows.get("buy"), project.flows.get("track")
    assert buy is not None and track is not None

    assert [buy.name_in(code) for code in ("zh", "zh-CN", "zh_TW", "en", None)] == [
        "购买商品",
        "购买商品",
        "购买商品",
        "buying",
        "buying",
    ]
    assert track.name_in("zh") == "查询物流"


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("ok", "zh", "zh"),
        ("yes please", "zh", "zh"),
        ("iPhone 15", "zh", "zh"),
        ("KF-10001", "zh", "zh"),
        ("where is my order", "zh", "en"),
        ("好", "en", "en"),
        ("好的", "en", "zh"),
        ("ok", None, "en"),
        ("好", None, "zh"),
    ],
)
async def test_a_conversation_language_switches_only_on_enough_words(
    text: str, current: str | None, expected: str
) -> None:
    assert conversation_language(text, current=current) == expected


async def test_a_short_english_word_keeps_a_chinese_conversation_chinese(agent: App) -> None:
    chat = Chat(agent)
    await chat.send("你好")
    await chat.send("/buy")

    result = await chat.send("ok")

    assert texts(result) == ["抱歉，这似乎不是一个数字，请输入一个数字。", "要几个？"]
