"""The REST and web chat channels, over real HTTP, the recording core standing in for kefu's."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.errors import BadRequestError, ConcurrentUpdateError, PermanentDeliveryError
from bot.events import BotMessage, Button, UserMessage
from bot.server import create_app, running
from bot.testing.recording_core import RecordingCore
from channels.rest import RestChannel
from channels.webchat import WebChatChannel

WEBHOOK = "/webhooks/rest/webhook"
WEBCHAT = "/webchat/webhook"
JSON = {"content-type": "application/json"}
WITH_METADATA = b'{"sender": "alice", "message": "hi", "metadata": %b}'


def echo(message: UserMessage) -> list[BotMessage]:
    """The replies of every turn: an echo, then a message with a button and an image."""
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
    return RecordingCore(replies=echo)


@pytest.fixture
async def client(core: RecordingCore) -> AsyncIterator[httpx.AsyncClient]:
    rest, webchat = RestChannel(), WebChatChannel()
    rest.attach(core)
    webchat.attach(core)
    app = create_app(channels=[rest, webchat])
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
        (b"\xff\xfe", "not valid"),
        (b"[" * 100_000, "nested too deeply"),
        (b'["alice", "hi"]', "must be a JSON object"),
        (b'"hi"', "must be a JSON object"),
        (b'{"message": "hi"}', "missing required field `sender`"),
        (b'{"sender": 42, "message": "hi"}', "Expected `str`, got `int` - at `$.sender`"),
        (b'{"sender": "", "message": "hi"}', '"sender" must not be empty'),
        (b'{"sender": "   ", "message": "hi"}', '"sender" must not be empty'),
        (json.dumps({"sender": "a" * 257, "message": "hi"}).encode(), "at most 256"),
        (b'{"sender": "alice"}', "missing required field `message`"),
        (b'{"sender": "alice", "message": null}', "Expected `str`, got `null`"),
        (b'{"sender": "alice", "message": ["hi"]}', "Expected `str`, got `array`"),
        (b'{"sender": "alice", "message": "hi", "metadata": []}', "at `$.metadata`"),
        (b'{"sender": "alice", "message": "hi", "metadata": "x"}', "at `$.metadata`"),
        (b'{"sender": "alice", "message": "hi", "message_id": 7}', "at `$.message_id`"),
        (b'{"sender": "alice", "message": "hi", "message_id": ""}', '"message_id" must not'),
        (b'{"sender": "alice", "message": "\\ud800"}', "not valid JSON"),
        (b'{"sender": "alice", "message": "\\udc00 x"}', "surrogate"),
        (b'{"sender": "\xed\xa0\x80", "message": "hi"}', "not valid"),
        (b'{"sender": "alice", "message": "\xed\xa0\x80"}', "not valid"),
        ('{"sender": "alice", "message": "hi"}'.encode("utf-16"), "not valid"),
        ('{"sender": "alice", "message": "hi"}'.encode("utf-16-le"), "not valid JSON"),
        (b'{"sender": "alice", "message": "a\\u0000b"}', "NUL"),
        (b'{"sender": "a\\u0000", "message": "hi"}', "NUL"),
        (b'{"sender": "alice", "message": "hi", "metadata": {"k\\u0000": 1}}', "key"),
        (
            b'{"sender": "alice", "message": "hi", "metadata": {"n": 9223372036854775808}}',
            "64 bits",
        ),
        (
            b'{"sender": "alice", "message": "hi", "metadata": {"n": -9223372036854775809}}',
            "64 bits",
        ),
        (b'{"sender": "alice", "message": "hi", "metadata": {"n": 1e999}}', "out of range"),
        (b'{"sender": "alice", "message": "hi", "metadata": {"n": NaN}}', "not valid JSON"),
        (
            b'{"sender": "alice", "message": "hi", "metadata": {"d": '
            + b"[" * 250
            + b"]" * 250
            + b"}}",
            "nested deeper than 32",
        ),
        (
            json.dumps(
                {"sender": "alice", "message": "hi", "metadata": {"x": "y" * 70_000}}
            ).encode(),
            '"metadata" must be at most',
        ),
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
    response = await client.post(
        WEBHOOK,
        content=b'{"sender": "bob", "message": "\\ud83d\\ude00"}',
        headers={"content-type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 200
    assert core.received[0].text == "\U0001f600"


async def test_oversized_webhook_body_gets_413(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    body = json.dumps({"sender": "alice", "message": "x" * (3 * 1024 * 1024)})
    response = await client.post(WEBHOOK, content=body, headers=JSON)
    assert response.status_code == 413
    assert "error" in response.json()
    assert core.received == []


@pytest.mark.parametrize(
    ("error", "status", "reply"),
    [
        (RuntimeError("bug in the core"), 500, {"error": "internal error"}),
        (
            ConcurrentUpdateError("other processes kept saving first"),
            503,
            {"error": "busy: send the same message again shortly"},
        ),
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
    assert 'data-endpoint="webchat/webhook"' in page.text
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


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/jsonx",
    ],
)
async def test_only_json_bodies_are_read(
    client: httpx.AsyncClient, core: RecordingCore, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for path in (WEBHOOK, WEBCHAT):
        response = await client.post(
            path, content=b'{"sender": "alice", "message": "hi"}', headers=headers
        )
        assert response.status_code == 415
        assert "application/json" in response.json()["error"]
    form = await client.post(WEBHOOK, data={"sender": "alice", "message": "hi"})
    assert form.status_code == 415
    assert core.received == []


async def test_internal_metadata_flags_are_dropped(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    metadata = {"command": "start", "truncated": True, "edited": True, "name": "Ann"}
    body = {"sender": "alice", "message": "hi", "metadata": metadata}
    response = await client.post(WEBHOOK, json=body)
    assert response.status_code == 200
    assert core.received[0].metadata == {"name": "Ann"}


async def test_trailing_slash_is_not_redirected(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/health/"), ("POST", WEBHOOK + "/")):
        response = await client.request(method, path, headers={"host": "evil.example"})
        assert response.status_code == 404
        assert "location" not in response.headers


async def test_the_web_chat_posts_to_its_own_endpoint(
    client: httpx.AsyncClient, core: RecordingCore
) -> None:
    sender = "web-" + "0123456789abcdef" * 2
    body = {"sender": sender, "message": "hi", "message_id": "m1", "metadata": {"name": "Eve"}}
    response = await client.post(WEBCHAT, json=body)
    assert response.status_code == 200
    assert response.json()[0] == {"recipient_id": sender, "text": "echo: hi"}
    [message] = core.received
    assert (message.channel, message.conversation_id) == ("webchat", f"webchat:{sender}")
    assert message.metadata == {}  # nothing a public page says about its visitor is trusted


@pytest.mark.parametrize("sender", ["alice", "web-1", "web-" + "A" * 32, "web-" + "0" * 33])
async def test_the_web_chat_takes_only_unguessable_sender_ids(
    client: httpx.AsyncClient, core: RecordingCore, sender: str
) -> None:
    response = await client.post(WEBCHAT, json={"sender": sender, "message": "hi"})
    assert response.status_code == 400
    assert "sender" in response.json()["error"]
    assert core.received == []


@pytest.fixture
async def guarded(core: RecordingCore) -> AsyncIterator[httpx.AsyncClient]:
    rest, webchat = RestChannel(token="s3cret-token"), WebChatChannel()
    rest.attach(core)
    webchat.attach(core)
    app = create_app(channels=[rest, webchat])
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", "Basic s3cret-token", "Bearer s3cret-token-and-more"],
)
async def test_a_rest_token_is_required_when_set(
    guarded: httpx.AsyncClient, core: RecordingCore, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    body = {"sender": "alice", "message": "hi"}
    response = await guarded.post(WEBHOOK, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert core.received == []


async def test_the_right_token_passes_and_the_web_chat_needs_none(
    guarded: httpx.AsyncClient, core: RecordingCore
) -> None:
    body = {"sender": "alice", "message": "hi"}
    response = await guarded.post(
        WEBHOOK, json=body, headers={"authorization": "bearer s3cret-token"}
    )
    assert response.status_code == 200
    web = {"sender": "web-" + "f" * 32, "message": "hi"}
    assert (await guarded.post(WEBCHAT, json=web)).status_code == 200
    assert [m.conversation_id for m in core.received] == ["rest:alice", "webchat:" + web["sender"]]
