"""Telegram end to end: the real agent and the reference shop, behind the real server and
python-telegram-bot, against the local Bot API double, with a SQLite file for the store.

The app is built the way ``kefu run`` builds it (``bot.app.build`` from ``Settings``), in
webhook mode and in long-polling mode. Assertions stay on what the shop keeps stable while its
content grows: the greeting, "where is my order" asking for the order number, a button press,
the handoff command and the too-long message.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import App, build
from bot.events import BotMessage, Button, UserMessage
from bot.project import Project, load_project
from bot.server import create_app, running
from bot.settings import Settings
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.telegram import SECRET_HEADER, WEBHOOK_PATH, TelegramChannel
from tests import telegram_updates as tg

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-s3cret_token"
PUBLIC_URL = "https://shop.example"
WAIT = 5.0

EN_USER = {
    "id": 4242001,
    "is_bot": False,
    "first_name": "Alice",
    "last_name": "Smith",
    "username": "alice_s",
    "language_code": "en",
}


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(ROOT)


def response_text(project: Project, name: str, language: str | None = None) -> str:
    """A response's text as the shop defines it (its first variation), in ``language``."""
    variation = project.domain.responses[name][0]
    text = variation.translation.get(language) if language else variation.text
    assert text, f"{name} has no text in {language or 'the default language'}"
    return text


def customer(chat_id: int, *, language: str = "en", first_name: str = "Alice") -> dict[str, Any]:
    return {**EN_USER, "id": chat_id, "first_name": first_name, "language_code": language}


def private_chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": "Alice"}


def text_update(update_id: int, chat_id: int, text: str, **sender: Any) -> dict[str, Any]:
    return tg.message(
        update_id, text, chat=private_chat(chat_id), sender=customer(chat_id, **sender)
    )


OutboxRow = tuple[str, int, str | None]
"""status, attempts, last_error"""


def settled(count: int) -> Callable[[list[OutboxRow]], bool]:
    return lambda rows: len([row for row in rows if row[0] != "pending"]) >= count


def attempted(count: int) -> Callable[[list[OutboxRow]], bool]:
    return lambda rows: sum(row[1] for row in rows) >= count


@dataclass
class Shop:
    """A running kefu server (or a polling one) and what a test needs to talk to it."""

    agent: App
    channel: TelegramChannel
    api: TelegramBotApiDouble
    url: str
    http: httpx.AsyncClient
    db_path: Path

    async def post(
        self, update: dict[str, Any] | bytes, secret: str | None = SECRET
    ) -> httpx.Response:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        if isinstance(update, bytes):
            headers["Content-Type"] = "application/json"
            return await self.http.post(WEBHOOK_PATH, content=update, headers=headers)
        return await self.http.post(WEBHOOK_PATH, json=update, headers=headers)

    def sent_to(self, chat_id: int) -> list[str]:
        return [m.get("text", "") for m in self.api.sent_messages if m["chat"]["id"] == chat_id]

    async def replies(self, chat_id: int, count: int = 1) -> list[str]:
        """Wait until ``count`` messages reached ``chat_id`` at the double; return their texts."""
        async with asyncio.timeout(WAIT):
            while len(self.sent_to(chat_id)) < count:
                await self.api.wait_for("sendMessage", len(self.api.calls_to("sendMessage")) + 1)
        return self.sent_to(chat_id)

    async def outbox_when(
        self, conversation_id: str, ready: Callable[[list[OutboxRow]], bool]
    ) -> list[OutboxRow]:
        """The conversation's outbox rows once ``ready`` holds for them (the agent records an
        attempt just after the double answered it)."""
        async with asyncio.timeout(WAIT):
            while True:
                rows = self.outbox(conversation_id)
                if ready(rows):
                    return rows
                await asyncio.sleep(0.02)

    def outbox(self, conversation_id: str) -> list[OutboxRow]:
        """(status, attempts, last_error) of the conversation's outbox rows, oldest first."""
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute(
                "SELECT status, attempts, last_error FROM outbox "
                "WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            ).fetchall()
        return [(str(s), int(a), e) for s, a, e in rows]


@asynccontextmanager
async def shop(
    tmp_path: Path, *, webhook: bool = True, retry_loop: bool = False, root: Path = ROOT
) -> AsyncIterator[Shop]:
    """The reference shop (or the project at ``root``) served as ``kefu run`` serves it,
    Telegram pointed at the double.

    The agent's background retry loop runs only with ``retry_loop=True``; otherwise a test
    drives retries itself with ``agent.outbox.deliver_pending()``. Off by default because the loop's
    outbox read can overlap a turn's inline delivery and send a reply twice (a known race in
    ``Outbox.deliver_pending``), which would make the tests counting messages flaky.
    """
    db_path = tmp_path / "kefu.db"
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{db_path}",
            telegram_bot_token=tg.TOKEN,
            telegram_webhook_url=PUBLIC_URL if webhook else None,
            telegram_webhook_secret=SECRET if webhook else None,
            telegram_api_base_url=api.base_url,
        )
        agent, channels = await build(root, settings)
        telegram = agent.outbox.channels["telegram"]
        assert isinstance(telegram, TelegramChannel)
        app = create_app(
            channels=channels,
            on_startup=[agent.start] if retry_loop else [],
            on_shutdown=[agent.close],
        )
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Shop(agent, telegram, api, url, http, db_path)


async def settle(seconds: float = 0.3) -> None:
    """Give background work a moment, for asserting that nothing (more) happened."""
    await asyncio.sleep(seconds)


# --- webhook mode -------------------------------------------------------------------------


async def test_webhook_is_registered_with_the_secret(tmp_path: Path) -> None:
    async with shop(tmp_path, retry_loop=True) as s:
        (call,) = s.api.calls_to("setWebhook")
        assert call.params["url"] == PUBLIC_URL + WEBHOOK_PATH
        assert call.params["secret_token"] == SECRET
        assert set(call.params["allowed_updates"]) >= {"message", "callback_query"}
        assert s.api.webhook["secret_token"] == SECRET


async def test_webhook_conversation_reaches_telegram(tmp_path: Path, project: Project) -> None:
    chat = 4242001
    async with shop(tmp_path) as s:
        response = await s.post(text_update(1, chat, "hi"))
        assert response.status_code == 200
        assert (await s.replies(chat, 1)) == [response_text(project, "utter_greet")]

        assert (await s.post(text_update(2, chat, "where is my order"))).status_code == 200
        texts = await s.replies(chat, 2)
        assert texts[1] == response_text(project, "utter_ask_order_id")

        # The answers went out as plain text to the customer's chat.
        for call in s.api.calls_to("sendMessage"):
            assert call.params["chat_id"] == chat
            assert "parse_mode" not in call.params

        state = await s.agent.store.load(f"telegram:{chat}")
        assert state is not None
        assert state.profile["first_name"] == "Alice"
        assert state.profile["language_code"] == "en"
        rows = await s.outbox_when(f"telegram:{chat}", settled(2))
        assert [row[0] for row in rows] == ["delivered", "delivered"]


async def test_help_command_is_answered(tmp_path: Path, project: Project) -> None:
    chat = 4242012
    async with shop(tmp_path) as s:
        await s.post(text_update(1, chat, "/help"))
        (text,) = await s.replies(chat, 1)
        assert text == response_text(project, "utter_help")


async def test_handoff_command_is_answered(tmp_path: Path, project: Project) -> None:
    chat = 4242002
    async with shop(tmp_path) as s:
        await s.post(text_update(1, chat, "/human"))
        (text,) = await s.replies(chat, 1)
        # With no desk configured the shop says so; with one, it says a person is coming.
        assert text in {
            response_text(project, "utter_human_handoff_not_available"),
            response_text(project, "utter_human_handoff_requested"),
        }


async def test_wrong_or_missing_secret_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    chat = 4242003
    async with shop(tmp_path) as s:
        wrong = await s.post(text_update(1, chat, "hi"), secret="guess")
        missing = await s.post(text_update(2, chat, "hi"), secret=None)
        assert (wrong.status_code, missing.status_code) == (403, 403)
        await settle()
        assert s.sent_to(chat) == []
        assert await s.agent.store.load(f"telegram:{chat}") is None
        # The refused update ids were not remembered: the real delivery still gets through.
        assert (await s.post(text_update(1, chat, "hi"))).status_code == 200
        assert len(await s.replies(chat, 1)) == 1


async def test_non_json_body_is_a_bad_request(tmp_path: Path) -> None:
    async with shop(tmp_path) as s:
        response = await s.post(b"{not json")
        assert response.status_code == 400
        assert "error" in response.json()
        assert s.api.calls_to("sendMessage") == []


async def test_same_update_twice_is_answered_once(tmp_path: Path) -> None:
    chat = 4242004
    async with shop(tmp_path) as s:
        update = text_update(7, chat, "where is my order")
        first, second = await asyncio.gather(s.post(update), s.post(update))
        assert (first.status_code, second.status_code) == (200, 200)
        assert (await s.post(update)).status_code == 200
        await s.replies(chat, 1)
        await settle()
        assert len(s.sent_to(chat)) == 1
        stored = await s.agent.store.events(f"telegram:{chat}")
        assert [e.event for e in stored if isinstance(e.event, UserMessage)] != []
        assert len([e for e in stored if isinstance(e.event, UserMessage)]) == 1


async def test_megabyte_text_gets_a_polite_answer(tmp_path: Path, project: Project) -> None:
    chat = 4242005
    async with shop(tmp_path) as s:
        response = await s.post(text_update(1, chat, "where is my order " + "x" * 1_000_000))
        assert response.status_code == 200
        texts = await s.replies(chat, 1)
        assert texts[-1] == response_text(project, "utter_user_input_too_long_error_rasa")
        # The conversation goes on normally afterwards.
        await s.post(text_update(2, chat, "where is my order"))
        texts = await s.replies(chat, len(texts) + 1)
        assert texts[-1] == response_text(project, "utter_ask_order_id")


async def test_button_press_is_acknowledged_and_answered(tmp_path: Path, project: Project) -> None:
    chat = 4242006
    async with shop(tmp_path) as s:
        await s.post(text_update(1, chat, "hi"))
        await s.replies(chat, 1)
        # A message with buttons, sent the way the core sends any reply.
        buttons = (
            Button(title="Track my order", payload="/track_order"),
            Button(title="Talk to a person", payload="/contact_human_agent"),
        )
        await s.channel.send(
            BotMessage(conversation_id=f"telegram:{chat}", text="Pick one", buttons=buttons)
        )
        shown = s.api.sent_messages[-1]
        keyboard = shown["reply_markup"]["inline_keyboard"]
        assert [b["callback_data"] for row in keyboard for b in row] == [
            "/track_order",
            "/contact_human_agent",
        ]

        press = {
            "update_id": 2,
            "callback_query": {
                "id": "cbq-e2e-1",
                "from": customer(chat),
                "message": shown,
                "chat_instance": "-77",
                "data": "/track_order",
            },
        }
        assert (await s.post(press)).status_code == 200
        texts = await s.replies(chat, 3)
        assert texts[-1] == response_text(project, "utter_ask_order_id")
        (answer,) = s.api.calls_to("answerCallbackQuery")
        assert answer.params["callback_query_id"] == "cbq-e2e-1"
        (edit,) = s.api.calls_to("editMessageReplyMarkup")
        assert edit.params["message_id"] == shown["message_id"]
        assert "reply_markup" not in shown  # the stale keyboard is gone


async def test_chinese_customer_gets_chinese_replies(tmp_path: Path, project: Project) -> None:
    async with shop(tmp_path) as s:
        await s.post(tg.message(1, "我的订单在哪里"))  # Mei Lin, language_code zh-hans
        chat = tg.PRIVATE_CHAT["id"]
        (text,) = await s.replies(chat, 1)
        assert text == response_text(project, "utter_ask_order_id", "zh")
        assert text != response_text(project, "utter_ask_order_id")
        state = await s.agent.store.load(f"telegram:{chat}")
        assert state is not None
        assert state.language == "zh"
        assert state.profile["first_name"] == tg.CUSTOMER["first_name"]
        assert state.profile["last_name"] == tg.CUSTOMER["last_name"]
        assert state.profile["username"] == tg.CUSTOMER["username"]
        assert state.profile["language_code"] == "zh-hans"


# --- long polling -------------------------------------------------------------------------


async def test_long_polling_conversation(tmp_path: Path, project: Project) -> None:
    chat = 4242010
    async with shop(tmp_path, webhook=False) as s:
        assert s.api.calls_to("deleteWebhook")
        assert s.api.calls_to("setWebhook") == []
        s.api.queue_update(text_update(101, chat, "hi"))
        assert (await s.replies(chat, 1)) == [response_text(project, "utter_greet")]
        s.api.queue_update(text_update(102, chat, "where is my order"))
        s.api.queue_update(text_update(103, 4242011, "我的订单在哪里", language="zh"))
        texts = await s.replies(chat, 2)
        assert texts[1] == response_text(project, "utter_ask_order_id")
        (zh,) = await s.replies(4242011, 1)
        assert zh == response_text(project, "utter_ask_order_id", "zh")
        # Updates are confirmed: the next poll asks past them and nothing is answered twice.
        await s.api.wait_for("getUpdates", len(s.api.calls_to("getUpdates")) + 1)
        await settle()
        assert len(s.sent_to(chat)) == 2
        offsets = [c.params.get("offset") for c in s.api.calls_to("getUpdates")]
        assert offsets[-1] == 104


# --- Telegram down --------------------------------------------------------------------------


async def _due(agent: App, *, within: float = 3.0) -> int:
    """Call ``deliver_pending`` until it delivers something (a retry waits out its delay)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        delivered = await agent.outbox.deliver_pending()
        if delivered:
            return delivered
        await asyncio.sleep(0.05)
    return 0


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (429, 1)], ids=["server-error", "rate-limited"]
)
async def test_failed_delivery_is_stored_and_retried(
    tmp_path: Path,
    project: Project,
    status: int,
    retry_after: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PTB's RetryAfter warns in its own constructor unless opted in to timedelta periods.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    chat = 4242020
    conversation = f"telegram:{chat}"
    async with shop(tmp_path) as s:
        s.api.fail_next("sendMessage", status=status, retry_after=retry_after)
        await s.post(text_update(1, chat, "where is my order"))
        ((state, attempts, error),) = await s.outbox_when(conversation, attempted(1))
        assert s.sent_to(chat) == []
        assert (state, attempts) == ("pending", 1)
        assert error
        # The turn itself was saved: the bot now waits for the order number.
        saved = await s.agent.store.load(conversation)
        assert saved is not None and saved.stack

        assert await _due(s.agent) == 1
        assert s.sent_to(chat) == [response_text(project, "utter_ask_order_id")]
        assert s.outbox(conversation)[0][:2] == ("delivered", 2)
        assert await s.agent.outbox.deliver_pending() == 0
        assert len(s.api.calls_to("sendMessage")) == 2


async def test_retry_loop_delivers_by_itself(tmp_path: Path, project: Project) -> None:
    chat = 4242021
    async with shop(tmp_path, retry_loop=True) as s:
        s.api.fail_next("sendMessage", status=502)
        await s.post(text_update(1, chat, "hi"))
        await s.api.wait_for("sendMessage", 2)  # failed, then retried after a second
        assert s.sent_to(chat) == [response_text(project, "utter_greet")]
        ((state, attempts, _),) = await s.outbox_when(f"telegram:{chat}", settled(1))
        assert (state, attempts) == ("delivered", 2)


async def test_blocked_customer_is_failed_not_retried(tmp_path: Path) -> None:
    chat = 4242022
    conversation = f"telegram:{chat}"
    async with shop(tmp_path) as s:
        s.api.block_chat(chat)
        await s.post(text_update(1, chat, "where is my order"))
        ((state, attempts, error),) = await s.outbox_when(conversation, settled(1))
        assert (state, attempts) == ("failed", 1)
        assert error is not None and "blocked" in error
        far_future = time.time() + 365 * 86400
        pending = await s.agent.store.pending_deliveries(now=far_future)
        assert [p for p in pending if p.message.conversation_id == conversation] == []
        assert await s.agent.outbox.deliver_pending() == 0
        assert len(s.api.calls_to("sendMessage")) == 1


# --- custom payloads ------------------------------------------------------------------------

VENUE = {"latitude": 31.2304, "longitude": 121.4737, "title": "Kefu", "address": "1 Nanjing Rd"}


def greeting_with(tmp_path: Path, **fields: Any) -> Path:
    """The minimal test project, its greeting's text and ``fields`` replaced or added."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "tests" / "projects" / "minimal", root)
    domain = root / "domain.yml"
    greet = '    - text: "Hello! How can I help?"\n'
    text = domain.read_text(encoding="utf-8")
    assert greet in text
    response = {"text": "Hello! How can I help?", **fields}
    lines = [f"{key}: {json.dumps(value)}" for key, value in response.items()]
    domain.write_text(text.replace(greet, "    - " + "\n      ".join(lines) + "\n"))
    return root


def greeting_with_custom(tmp_path: Path, custom: dict[str, Any]) -> Path:
    """The minimal test project, its greeting carrying ``custom`` beside its text."""
    return greeting_with(tmp_path, custom=custom)


async def test_custom_response_reaches_telegram(tmp_path: Path) -> None:
    chat = 4242030
    async with shop(tmp_path, root=greeting_with_custom(tmp_path, VENUE)) as s:
        await s.post(text_update(1, chat, "hi"))
        (venue,) = await s.api.wait_for("sendVenue")
        assert venue.params == {"chat_id": chat, **VENUE}
        assert s.sent_to(chat) == ["Hello! How can I help?", ""]
        rows = await s.outbox_when(f"telegram:{chat}", settled(2))
        assert [row[:2] for row in rows] == [("delivered", 1), ("delivered", 1)]  # two parts


async def test_custom_payload_telegram_rejects_is_failed_not_retried(tmp_path: Path) -> None:
    chat = 4242031
    conversation = f"telegram:{chat}"
    async with shop(tmp_path, root=greeting_with_custom(tmp_path, VENUE)) as s:
        s.api.fail_next("sendVenue", status=400, description="Bad Request: wrong venue")
        await s.post(text_update(1, chat, "hi"))
        text, (state, attempts, error) = await s.outbox_when(conversation, settled(2))
        assert text[:2] == ("delivered", 1)  # the text and the payload are parts of their own
        assert (state, attempts) == ("failed", 1)
        assert error is not None and "Wrong venue" in error
        pending = await s.agent.store.pending_deliveries(now=time.time() + 365 * 86400)
        assert [p for p in pending if p.message.conversation_id == conversation] == []
        assert await s.agent.outbox.deliver_pending() == 0
        assert len(s.api.calls_to("sendVenue")) == 1
        assert s.sent_to(chat) == ["Hello! How can I help?"]


LONG = " ".join(f"Sentence number {i} of a long greeting." for i in range(300))  # ~12,000 chars


async def test_a_retry_resends_only_the_part_that_failed(tmp_path: Path) -> None:
    """An image and the pieces of a long text are parts of their own: the text failing does
    not send the image again, and every piece reaches the customer once, in order."""
    chat = 4242040
    conversation = f"telegram:{chat}"
    image = "https://shop.example/welcome.png"
    async with shop(tmp_path, root=greeting_with(tmp_path, text=LONG, image=image)) as s:
        s.api.fail_next("sendMessage", status=500)
        await s.post(text_update(1, chat, "hi"))
        rows = await s.outbox_when(conversation, attempted(4))
        assert [row[0] for row in rows] == ["delivered", "pending", "pending", "pending"]
        assert await _due(s.agent) == 3
        assert [row[:2] for row in s.outbox(conversation)] == [("delivered", 1)] + [
            ("delivered", 2)
        ] * 3
        assert [call.params["photo"] for call in s.api.calls_to("sendPhoto")] == [image]
        texts = s.sent_to(chat)
        assert len(texts) == 4 and " ".join(texts[1:]) == LONG
