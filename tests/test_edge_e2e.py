"""The reproducers of issue 8's HTTP edge, each a plain regression test against the real app:
every one once answered 500 (or crashed a Telegram update loop); now 4xx, or 200 with nothing
lost, on SQLite and PostgreSQL; logs never quote what an unreadable update carried.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import app as kefu_app
from bot.app import build
from bot.events import UserMessage
from bot.privacy import contains_card_number
from bot.server import create_app, running
from bot.settings import Settings
from bot.testing.telegram_double import TelegramBotApiDouble
from tests import telegram_updates as tg

PROJECT = Path(__file__).resolve().parent / "projects" / "minimal"
SECRET = "edge-s3cret"
REST = "/webhooks/rest/webhook"
JSON = {"content-type": "application/json"}
MARKER = "Mei-private-4111-1111-1111-1111"
"""Content of the hostile bodies that must never show up in a log line."""


@dataclass
class App:
    agent: kefu_app.App
    api: TelegramBotApiDouble
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def app(database_url: str, *, webhook: bool = True) -> AsyncIterator[App]:
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
        settings = Settings(
            database_url=database_url,
            telegram_bot_token=tg.TOKEN,
            telegram_webhook_url="https://shop.example" if webhook else None,
            telegram_webhook_secret=SECRET,
            telegram_api_base_url=api.base_url,
        )
        agent, channels = await build(PROJECT, settings)
        served = create_app(channels=channels, on_shutdown=[agent.close])
        async with running(served) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield App(agent, api, http)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _rest(sender: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"sender": sender, "message": message, **extra}).encode()


UTF16 = '{"sender": "u16", "message": "hi"}'.encode("utf-16")
RAW_SURROGATE = b'{"sender": "sur", "message": "a\xed\xa0\x80b"}'
REST_REFUSED = [
    (_rest("m", "hi", metadata={"deep": json.loads(_deep(250))}), "nested deeper"),
    (_rest("m", "hi", metadata={"n": 2**64}), "64 bits"),
    (RAW_SURROGATE, "not valid"),
    (b'{"sender": "\xed\xa0\x80", "message": "hi"}', "not valid"),
    (UTF16, "not valid"),
    (_rest("nul", "a\x00b"), "NUL"),
    (_rest("nul\x00", "hi"), "NUL"),
    (_rest("m", "hi", metadata={"k": "v\x00"}), "NUL"),
]
REST_ANSWERED = [
    f"/greet{{{json.dumps('e')}: {_deep(250)}}}",
    "/greet{" + '"e": ' + "9" * 40 + "}",
    "/SetSlots(order_id=" + "9" * 40 + ")",
    "/SetSlots(order_id=" + _deep(300) + ")",
    "/SetSlots(order_id=1e999)",
]


async def test_rest_reproducers_get_a_4xx_or_an_answer(database_url: str) -> None:
    async with app(database_url) as a:
        for body, reason in REST_REFUSED:
            response = await a.http.post(REST, content=body, headers=JSON)
            assert response.status_code == 400, body[:80]
            assert reason in response.json()["error"]
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await a.http.post(
                REST, content=_rest("m", "hi"), headers={"content-type": content_type}
            )
            assert response.status_code == 415
        for text in REST_ANSWERED:
            response = await a.http.post(REST, content=_rest("payloads", text), headers=JSON)
            assert response.status_code == 200, text[:80]
            assert isinstance(response.json(), list)
        stored = await a.agent.store.events("rest:payloads")
        assert len([e for e in stored if isinstance(e.event, UserMessage)]) == len(REST_ANSWERED)
        assert await a.agent.store.events("rest:nul") == []
        assert (await a.http.get("/health")).status_code == 200


async def test_dedupe_keys_of_different_senders_do_not_collide(tmp_path: Path) -> None:
    async with app(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}") as a:
        first = {"sender": "bob/7", "message": "hello", "message_id": "x"}
        second = {"sender": "bob", "message": "hello", "message_id": "7/x"}
        for body in (first, second):
            response = await a.http.post(REST, json=body)
            assert response.status_code == 200
        for conversation in ("rest:bob/7", "rest:bob"):
            stored = await a.agent.store.events(conversation)
            assert [e.event.text for e in stored if isinstance(e.event, UserMessage)] == ["hello"]


def _message(update_id: int, **fields: Any) -> dict[str, Any]:
    update = tg.message(update_id, MARKER)
    update["message"].update(fields)
    return update


def _unreadable_updates() -> list[dict[str, Any] | bytes]:
    deep = _message(10)
    deep["message"]["extra"] = json.loads(_deep(250))
    return [
        deep,
        _message(11, date=10**20),
        _message(12, date=-1),
        {"update_id": 13, "message": MARKER},
        _message(14, entities=MARKER),
        _message(15, chat={"id": [5550123], "type": "private"}),
        _message(16, chat={"id": 2**70, "type": "private"}),
        _message(17, text=["not", "text"]),
        _message(18, **{"from": MARKER}),
        _message(19, sticker=MARKER),
        {"update_id": 20, "callback_query": {"id": "1", "from": MARKER, "chat_instance": "c"}},
        {"update_id": 21, "message": tg.message(21, MARKER)["message"], "edited_message": {}},
        _message(22, text=MARKER + "\x00"),
        {"update_id": 23, "channel_post": {"chat": {"id": []}}},
    ]


async def test_unreadable_telegram_updates_are_acknowledged_quietly(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"x-telegram-bot-api-secret-token": SECRET}
    async with app(database_url) as a:
        for update in _unreadable_updates():
            response = await a.http.post("/webhooks/telegram", json=update, headers=headers)
            assert response.status_code == 200, update
        deep_body = b'{"update_id": 30, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        response = await a.http.post(
            "/webhooks/telegram", content=deep_body, headers={**headers, **JSON}
        )
        assert response.status_code == 400
        ok = await a.http.post("/webhooks/telegram", json=tg.message(40, "hi"), headers=headers)
        assert ok.status_code == 200
        await a.api.wait_for("sendMessage")
    sent = [call.params["chat_id"] for call in a.api.calls_to("sendMessage")]
    assert set(sent) == {str(tg.PRIVATE_CHAT["id"])} or set(sent) == {tg.PRIVATE_CHAT["id"]}
    assert "ignored" in caplog.text
    assert MARKER not in caplog.text
    # the card in MARKER, in any spelling (a random port may well contain "4111")
    assert "4111-1111" not in caplog.text and not contains_card_number(caplog.text)


async def test_long_polling_skips_an_unreadable_update(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with app(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}", webhook=False) as a:
        a.api.queue_update(_message(501, date=10**20))
        a.api.queue_update({"update_id": 502, "message": MARKER})
        a.api.queue_update(tg.message(503, "hi"))
        await a.api.wait_for("sendMessage")
        await a.api.wait_for("getUpdates", len(a.api.calls_to("getUpdates")) + 1)
        offsets = [call.params.get("offset") for call in a.api.calls_to("getUpdates")]
        assert str(offsets[-1]) == "504"
    assert MARKER not in caplog.text
