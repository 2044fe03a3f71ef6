"""The REST channel over HTTP with the real agent: the contract, bad input, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from sqlalchemy.engine import make_url

from bot.app import App
from bot.channel import Channel
from bot.errors import PermanentDeliveryError, RejectedMessageError
from bot.events import BotMessage, UserMessage
from bot.project import load_project
from bot.responses import ResponseRenderer
from bot.server import create_app, running
from bot.settings import Settings
from bot.store import open_store
from bot.understanding.encoder import encoder
from channels.rest import RestChannel
from channels.webchat import WebChatChannel

PROJECT = Path(__file__).resolve().parent / "projects" / "minimal"
pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = {"content-type": "application/json"}
GREETING = "Hello! How can I help?"
CARD = {
    "text": "Our bestseller:",
    "buttons": [{"title": "Buy", "payload": "/buy"}, {"title": "More", "payload": "/more"}],
    "image": "https://shop.example/mug.png",
    "custom": {"sku": "MUG-1", "price": 12.5},
}
CARD_FLOWS = """
flows:
  show_card:
    description: Show the shop's bestseller.
    nlu_trigger:
      - intent: show_card
    steps:
      - action: utter_card
  pattern_session_start:
    description: Greets the customer; stored before the customer's first message.
    steps:
      - action: action_session_start
      - action: utter_greet
"""


@contextlib.asynccontextmanager
async def serve(project: Path, database: Path) -> AsyncIterator[tuple[str, App]]:
    settings = Settings.from_env(
        {"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}, env_file=None
    )
    store = await open_store(settings.database_url)
    agent = await App.create(load_project(project), settings=settings, store=store)
    rest = RestChannel()
    agent.add_channel(rest)
    webchat = WebChatChannel(greeting=ResponseRenderer(agent.project.domain).greeting)
    app = create_app(channels=[rest, webchat], on_shutdown=[agent.close])
    async with running(app) as base:
        yield base, agent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, App]]:
    async with serve(PROJECT, tmp_path_factory.mktemp("rest") / "kefu.db") as running_server:
        yield running_server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def card_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[str, App]]:
    """The minimal project plus a reply with buttons, image and custom payload, and a greeting
    at session start."""
    root = tmp_path_factory.mktemp("card")
    project = root / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".kefu"))
    domain = yaml.safe_load((project / "domain.yml").read_text(encoding="utf-8"))
    domain["intents"].append("show_card")
    domain["responses"]["utter_card"] = [CARD]
    (project / "domain.yml").write_text(yaml.safe_dump(domain, allow_unicode=True), "utf-8")
    (project / "flows" / "card.yml").write_text(CARD_FLOWS, encoding="utf-8")
    async with serve(project, root / "kefu.db") as running_server:
        yield running_server


async def post(base: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/webhooks/rest/webhook", json=body) as response,
    ):
        return response.status, await response.json()


async def user_texts(agent: App, conversation_id: str) -> list[str]:
    stored = await agent.store.events(conversation_id)
    return [e.event.text for e in stored if e.event.event == "user"]  # type: ignore[attr-defined]


def sql(agent: App, statement: str) -> list[Any]:
    """Run SQL on the agent's SQLite file beside the store, as another program would."""
    with contextlib.closing(sqlite3.connect(make_url(agent.settings.database_url).database)) as db:
        rows = db.execute(statement).fetchall()
        db.commit()
        return rows


async def test_a_flow_over_http(server: tuple[str, App]) -> None:
    base, _ = server
    status, replies = await post(base, {"sender": "ann", "message": "where is my order"})
    assert status == 200
    assert replies == [{"recipient_id": "ann", "text": "What is your order number?"}]
    status, replies = await post(base, {"sender": "ann", "message": "it is A123"})
    assert status == 200
    assert any("A123" in r.get("text", "") for r in replies)


@pytest.mark.parametrize(
    ("browser", "greeting"),
    [
        ("zh-CN", "您好！有什么可以帮您？"),
        ("en-GB", GREETING),
        ("", GREETING),
        ("x" * 500, GREETING),
    ],
)
async def test_the_web_chat_greets_in_the_browser_language(
    server: tuple[str, App], browser: str, greeting: str
) -> None:
    base, _ = server
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/webchat/greeting", params={"lang": browser}) as response,
    ):
        assert response.status == 200
        assert await response.json() == {"text": greeting, "buttons": []}


async def test_malformed_bodies_get_400_with_a_reason(server: tuple[str, App]) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as http:
        for raw in (b"{not json", b"[]", b'{"sender": 5, "message": "hi"}', b'{"message": "hi"}'):
            async with http.post(
                f"{base}/webhooks/rest/webhook", data=raw, headers=JSON
            ) as response:
                assert response.status == 400
                assert "error" in await response.json()


async def test_a_one_megabyte_message_gets_a_polite_answer(server: tuple[str, App]) -> None:
    base, agent = server
    status, replies = await post(base, {"sender": "big", "message": "a" * 1_000_000})
    assert status == 200
    assert "too long" in replies[-1]["text"]
    stored = await user_texts(agent, "rest:big")
    assert len(stored) == 1 and len(stored[0]) <= 4000


async def test_control_characters_are_stripped_not_fatal(server: tuple[str, App]) -> None:
    base, agent = server
    status, replies = await post(base, {"sender": "ctl", "message": "hel\x07lo\x1b[31m"})
    assert status == 200 and replies
    assert await user_texts(agent, "rest:ctl") == ["hello[31m"]


async def test_unknown_button_payload_and_empty_text_are_answered_politely(
    server: tuple[str, App],
) -> None:
    base, _ = server
    status, replies = await post(base, {"sender": "odd", "message": "/no_such_intent"})
    assert status == 200 and replies[0]["text"]
    status, replies = await post(base, {"sender": "odd", "message": "   "})
    assert status == 200
    assert "empty" in replies[0]["text"]


async def test_bad_input_mid_flow_loses_nothing(server: tuple[str, App]) -> None:
    base, agent = server
    await post(base, {"sender": "keep", "message": "where is my order"})
    for noise in ("/SetSlots(", "x" * 50_000, "\x01\x02"):
        status, _ = await post(base, {"sender": "keep", "message": noise})
        assert status == 200
    status, refused = await post(base, {"sender": "keep", "message": "nul \x00 byte"})
    assert status == 400 and "error" in refused  # PostgreSQL cannot store NUL: refused up front
    state = await agent.store.load("rest:keep")
    assert state is not None and state.stack[0]["flow_id"] == "track_order"
    status, replies = await post(base, {"sender": "keep", "message": "B456"})
    assert any("B456" in r.get("text", "") for r in replies)


async def test_a_retried_message_id_gets_the_first_answer_again(
    card_server: tuple[str, App],
) -> None:
    base, agent = card_server
    body = {"sender": "dup", "message": "/show_card", "message_id": "m-1"}
    status, first = await post(base, body)
    assert status == 200
    greeting = {"recipient_id": "dup", "text": GREETING}
    assert first == [greeting, {"recipient_id": "dup", **CARD}, greeting]
    state = await agent.store.load("rest:dup")
    events = await agent.store.events("rest:dup")
    status, again = await post(base, body)
    assert (status, again) == (200, first)
    assert await agent.store.load("rest:dup") == state
    assert await agent.store.events("rest:dup") == events
    assert await user_texts(agent, "rest:dup") == ["/show_card"]


async def test_concurrent_duplicates_get_the_same_answer_from_one_turn(
    card_server: tuple[str, App],
) -> None:
    base, agent = card_server
    body = {"sender": "twice", "message": "/show_card", "message_id": "m-2"}
    results = await asyncio.gather(*(post(base, body) for _ in range(3)))
    assert results[0][1][1]["buttons"] == CARD["buttons"]
    assert results == [results[0]] * 3
    assert await user_texts(agent, "rest:twice") == ["/show_card"]


async def test_a_duplicate_after_later_turns_gets_its_own_replies(
    server: tuple[str, App],
) -> None:
    base, agent = server
    ask = {"sender": "late", "message": "where is my order", "message_id": "m-ask"}
    answer = {"sender": "late", "message": "it is A123", "message_id": "m-answer"}
    _, asked = await post(base, ask)
    _, answered = await post(base, answer)
    await post(base, {"sender": "late", "message": "hello", "message_id": "m-hello"})
    assert asked == [{"recipient_id": "late", "text": "What is your order number?"}]
    state = await agent.store.load("rest:late")
    assert (await post(base, ask))[1] == asked
    assert (await post(base, answer))[1] == answered
    assert await agent.store.load("rest:late") == state
    assert await user_texts(agent, "rest:late") == ["where is my order", "it is A123", "hello"]


async def test_a_duplicate_whose_turn_is_gone_gets_an_empty_answer(
    server: tuple[str, App],
) -> None:
    base, agent = server
    body = {"sender": "gone", "message": "where is my order", "message_id": "m-gone"}
    assert (await post(base, body))[1]
    sql(agent, "DELETE FROM events WHERE conversation_id = 'rest:gone'")
    state = await agent.store.load("rest:gone")
    assert await post(base, body) == (200, [])
    assert await agent.store.load("rest:gone") == state
    assert await agent.store.events("rest:gone") == []
    # Another sender numbering messages alike is another conversation: answered afresh.
    status, replies = await post(base, {**body, "sender": "other"})
    assert (status, replies) == (
        200,
        [{"recipient_id": "other", "text": "What is your order number?"}],
    )
    assert await user_texts(agent, "rest:other") == ["where is my order"]


class PushChannel(Channel):
    """A channel whose replies go out through the outbox, as Telegram's do."""

    name = "push"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[BotMessage] = []

    async def send(self, message: BotMessage) -> None:
        self.sent.append(message)


async def test_a_duplicate_on_a_push_channel_is_not_sent_again(server: tuple[str, App]) -> None:
    _, agent = server
    push = PushChannel()
    agent.add_channel(push)
    message = UserMessage(
        channel="push",
        conversation_id="push:p1",
        sender_id="p1",
        text="where is my order",
        message_id="u-1",
    )
    first = await agent.turns.process(message)
    outbox = "SELECT id, status FROM outbox WHERE conversation_id = 'push:p1'"
    rows = sql(agent, outbox)
    again = await agent.turns.process(message)
    assert again.duplicate and not first.duplicate
    assert again.messages == first.messages == push.sent
    assert again.events == []
    assert sql(agent, outbox) == rows == [(rows[0][0], "delivered")]


async def test_concurrent_messages_of_one_conversation_are_serialised(
    server: tuple[str, App],
) -> None:
    base, agent = server
    results = await asyncio.gather(
        *(post(base, {"sender": "many", "message": f"hello {i}"}) for i in range(20))
    )
    assert all(status == 200 for status, _ in results)
    texts = await user_texts(agent, "rest:many")
    assert sorted(texts) == sorted(f"hello {i}" for i in range(20))
    state = await agent.store.load("rest:many")
    assert state is not None and state.version >= 20


async def test_an_engine_bug_costs_one_answer_not_the_conversation(
    server: tuple[str, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, agent = server
    await post(base, {"sender": "bug", "message": "where is my order"})
    before = await agent.store.load("rest:bug")
    assert before is not None

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(agent.dialogue.executor, "advance", broken)
    status, replies = await post(base, {"sender": "bug", "message": "A123"})
    assert status == 200
    assert "went wrong" in replies[0]["text"]
    monkeypatch.undo()

    after = await agent.store.load("rest:bug")
    assert after is not None and after.stack == before.stack and after.slots == before.slots
    assert (await user_texts(agent, "rest:bug"))[-1] == "A123"
    status, replies = await post(base, {"sender": "bug", "message": "A123"})
    assert any("A123" in r.get("text", "") for r in replies)


async def test_a_card_number_never_reaches_the_store(server: tuple[str, App]) -> None:
    base, agent = server
    status, _ = await post(base, {"sender": "card", "message": "card 4111 1111 1111 1111 failed"})
    assert status == 200
    stored = await agent.store.events("rest:card")
    dumped = " ".join(str(s.event.to_dict()) for s in stored)
    assert "**** 1111" in dumped and "4111 1111" not in dumped


class PickyChannel(PushChannel):
    """A push channel whose platform refuses messages with an image with ``error``."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__()
        self.name = name
        self.error = error

    async def send(self, message: BotMessage) -> None:
        if message.image:
            raise self.error
        self.sent.append(message)


@pytest.mark.parametrize(
    ("error", "later_status"),
    [
        (RejectedMessageError("Bad Request: wrong file identifier"), "delivered"),
        (PermanentDeliveryError("Forbidden: bot was blocked by the user"), "failed"),
    ],
)
async def test_a_rejected_message_is_given_up_alone(
    card_server: tuple[str, App], error: Exception, later_status: str
) -> None:
    """A message the platform refuses does not hold back the turn's later ones; a chat that
    is gone (blocked) does."""
    _, agent = card_server
    name = f"picky{later_status}"
    channel = PickyChannel(name, error)
    agent.add_channel(channel)
    message = UserMessage(
        channel=name,
        conversation_id=f"{name}:c1",
        sender_id="c1",
        text="/show_card",
        payload="/show_card",
    )
    result = await agent.turns.process(message)
    assert [m.text for m in result.messages] == [GREETING, CARD["text"], GREETING]
    rows = sql(
        agent,
        f"SELECT status, last_error FROM outbox WHERE conversation_id = '{name}:c1' ORDER BY id",
    )
    assert [status for status, _ in rows] == ["delivered", "failed", later_status]
    assert str(error) in rows[1][1]
    assert [m.text for m in channel.sent] == [GREETING] * (2 if later_status == "delivered" else 1)
    assert await agent.outbox.deliver_pending() == 0  # neither is retried


async def test_a_slow_message_is_understood_off_the_event_loop(
    server: tuple[str, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, agent = server
    threads: list[bool] = []
    parse = agent.interpreter.parse
    slow = "慢慢来，这条消息只有句子编码器读得懂"

    def recording_parse(text: str, **kwargs: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        if text == slow:
            encoder("zh").embed_one(text)  # a message only a sentence encoder can read
        return parse(text, **kwargs)

    monkeypatch.setattr(agent.interpreter, "parse", recording_parse)
    monkeypatch.setattr(agent.interpreter, "may_be_slow", lambda text: text == slow)
    assert (await post(base, {"sender": "slow", "message": "where is my order"}))[0] == 200
    assert (await post(base, {"sender": "slow", "message": slow}))[0] == 200
    # tried on the loop, where the encoder must not compute: then in a worker thread
    assert threads == [True, True, False]
    assert (await post(base, {"sender": "slow", "message": slow}))[0] == 200
    assert threads[3:] == [True]  # the encoder knows it now: no thread needed
