"""The REST and web chat channels, over real HTTP, with a recording double of the core."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.errors import BadRequestError, PermanentDeliveryError
from bot.events import BotMessage, Button, UserMessage
from bot.server import create_app, running
from channels.rest import RestChannel
from channels.webchat import WebChatChannel

WEBHOOK = "/webhooks/rest/webhook"


class RecordingCore:
    """Stands in for ``Agent.handle``: records each message and answers with an echo."""

    def __init__(self) -> None:
        self.received: list[UserMessage] = []
        self.error: Exception | None = None

    async def __call__(self, message: UserMessage) -> list[BotMessage]:
        self.received.append(message)
        if self.error is not None:
            raise self.error
        cid = message.conversation_id
        return [
            BotMessage(conversation_id=cid, text=f"echo: {message.text}"),
            BotMessage(
                conversation_id=cid,
                text="Anything else?",
                buttons=(Button(title="Track order", payload="/track_order"),),
                image="https://shop.example/logo.png",
            ),
        ]


@pytest.fixture
def core() -> RecordingCore:
    return RecordingCore()


@pytest.fixture
async def client(core: RecordingCore) -> AsyncIterator[httpx.AsyncClient]:
    rest = RestChannel()
    rest.attach(core)
    app = create_app(channels=[rest, WebChatChannel()])
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def test_message_is_answered_in_rasa_shape(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    body = {"sender": "alice", "message": "where is my order?", "metadata": {"page": "/cart"}}
    response = await client.post(WEBHOOK, json=body)
    assert response.status_code == 200
    assert response.json() == [
        {"recipient_id": "alice", "text": "echo: where is my order?"},
        {
            "recipient_id": "alice",
            "text": "Anything else?",
            "buttons": [{"title": "Track order", "payload": "/track_order"}],
            "image": "https://shop.example/logo.png",
        },
    ]
    [message] = core.received
    assert message.channel == "rest"
    assert message.conversation_id == "rest:alice"
    assert message.sender_id == "alice"
    assert message.text == "where is my order?"
    assert message.payload is None
    assert message.message_id is None
    assert message.metadata == {"page": "/cart"}


async def test_button_payload_and_message_id(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    body = {"sender": "李雷", "message": "/track_order", "message_id": "m-1", "metadata": None}
    response = await client.post(WEBHOOK, json=body)
    assert response.status_code == 200
    assert response.json()[0] == {"recipient_id": "李雷", "text": "echo: /track_order"}
    [message] = core.received
    assert (message.payload, message.message_id, message.metadata) == ("/track_order", "m-1", {})
    assert message.conversation_id == "rest:李雷"


async def test_status_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/webhooks/rest/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'["alice", "hi"]', "must be a JSON object"),
        (b'"hi"', "must be a JSON object"),
        (b'{"message": "hi"}', '"sender" is required'),
        (b'{"sender": 42, "message": "hi"}', '"sender" is required and must be a string'),
        (b'{"sender": "", "message": "hi"}', '"sender" must not be empty'),
        (b'{"sender": "   ", "message": "hi"}', '"sender" must not be empty'),
        (json.dumps({"sender": "a" * 257, "message": "hi"}).encode(), "at most 256"),
        (b'{"sender": "alice"}', '"message" is required'),
        (b'{"sender": "alice", "message": null}', '"message" is required'),
        (b'{"sender": "alice", "message": ["hi"]}', '"message" is required'),
        (b'{"sender": "alice", "message": "hi", "metadata": []}', '"metadata" must be'),
        (b'{"sender": "alice", "message": "hi", "metadata": "x"}', '"metadata" must be'),
        (b'{"sender": "alice", "message": "hi", "message_id": 7}', '"message_id" is required'),
        (b'{"sender": "alice", "message": "hi", "message_id": ""}', '"message_id" must not'),
        (b'{"sender": "alice", "message": "\\ud800"}', "invalid Unicode"),
        (b'{"sender": "alice", "message": "a\\u0000b"}', "NUL"),
    ],
)
async def test_bad_bodies_get_400_with_a_reason(
    client: httpx.AsyncClient, core: RecordingCore, content: bytes, reason: str
) -> None:
    response = await client.post(
        WEBHOOK, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert core.received == []


async def test_escaped_emoji_is_fine(client: httpx.AsyncClient, core: RecordingCore) -> None:
    response = await client.post(WEBHOOK, content=b'{"sender": "bob", "message": "\\ud83d\\ude00"}')
    assert response.status_code == 200
    assert core.received[0].text == "\U0001f600"


async def test_oversized_webhook_body_gets_413(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    body = json.dumps({"sender": "alice", "message": "x" * (3 * 1024 * 1024)})
    response = await client.post(WEBHOOK, content=body)
    assert response.status_code == 413
    assert "error" in response.json()
    assert core.received == []


@pytest.mark.parametrize(
    ("error", "status", "reply"),
    [
        (RuntimeError("bug in the core"), 500, {"error": "internal error"}),
        (
            BadRequestError("attachments are not supported"),
            400,
            {"error": "attachments are not supported"},
        ),
    ],
)
async def test_core_failure_is_json(
    client: httpx.AsyncClient, core: RecordingCore, error: Exception, status: int, reply: Any
) -> None:
    core.error = error
    response = await client.post(WEBHOOK, json={"sender": "alice", "message": "hi"})
    assert response.status_code == status
    assert response.json() == reply


async def test_rest_send_is_refused() -> None:
    with pytest.raises(PermanentDeliveryError):
        await RestChannel().send(BotMessage(conversation_id="rest:alice", text="hi"))


async def test_webchat_page_and_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = await client.get("/webchat/static/chat.js")
    style = await client.get("/webchat/static/chat.css")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert "webchat/static/chat.js" in page.text
    assert "webchat/static/chat.css" in page.text
    assert 'data-endpoint="webchat/"' in page.text
    assert "Authorization" in script.text
    for text in (page.text, script.text, style.text):
        assert re.findall(r"https?://", text) == []
        assert "innerHTML" not in text
    assert "localStorage" in script.text
    assert "isComposing" in script.text


async def test_webchat_asset_caching_and_unknown_asset(client: httpx.AsyncClient) -> None:
    first = await client.get("/webchat/static/chat.css")
    again = await client.get(
        "/webchat/static/chat.css", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304
    for path in ("/webchat/static/secrets.txt", "/webchat/static/..%2Fwebchat.py"):
        missing = await client.get(path)
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not Found"}
