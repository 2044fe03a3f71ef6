"""The Telegram channel: real python-telegram-bot against the local Bot API double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bot.errors import (
    DatabaseUnavailableError,
    PermanentDeliveryError,
    RejectedMessageError,
    TransientDeliveryError,
)
from bot.events import BotMessage, Button, UserMessage
from bot.settings import Settings
from bot.testing.memory_store import MemoryStore
from bot.testing.recording_core import RecordingCore
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.telegram import TelegramChannel
from channels.telegram_outbound import MAX_TEXT, split_text, utf16_len
from tests import telegram_updates as tg

SECRET = "s3cret-token_for-tests"
CUSTOMER_CHAT = tg.PRIVATE_CHAT["id"]
CONVERSATION = f"telegram:{CUSTOMER_CHAT}"


@pytest.fixture
async def api() -> AsyncIterator[TelegramBotApiDouble]:
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as double:
        yield double


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def make_channel(api: TelegramBotApiDouble, store: MemoryStore, **kwargs: Any) -> TelegramChannel:
    return TelegramChannel(
        token=tg.TOKEN,
        store=store,
        api_base_url=api.base_url,
        **kwargs,
    )


@pytest.fixture
async def channel(api: TelegramBotApiDouble, store: MemoryStore) -> AsyncIterator[TelegramChannel]:
    chan = make_channel(api, store, webhook_url="https://shop.example", webhook_secret=SECRET)
    yield chan
    await chan.stop()


@pytest.fixture
async def core(channel: TelegramChannel) -> RecordingCore:
    handler = RecordingCore(channel)
    channel.attach(handler)
    await channel.start()
    return handler


@pytest.fixture
async def client(channel: TelegramChannel) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=list(channel.routes()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kefu") as http:
        yield http


async def post(
    client: httpx.AsyncClient, body: Any, *, secret: str | None = SECRET
) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    if isinstance(body, dict | list):
        return await client.post("/webhooks/telegram", json=body, headers=headers)
    return await client.post("/webhooks/telegram", content=body, headers=headers)


async def deliver(
    client: httpx.AsyncClient, core: RecordingCore, *updates: dict[str, Any]
) -> UserMessage:
    """Post ``updates`` to the webhook and return the one message the core received."""
    for update in updates:
        assert (await post(client, update)).status_code == 200
    [message] = await core.wait()
    return message


async def sentinel(client: httpx.AsyncClient, core: RecordingCore, update: dict[str, Any]) -> None:
    """Post an update that must get through; earlier ones of its chat were handled before it."""
    assert (await post(client, update)).status_code == 200
    [message] = await core.wait()
    assert message.message_id == str(update["update_id"])


# --- inbound --------------------------------------------------------------------------------


async def test_text_message_becomes_user_message(
    core: RecordingCore, client: httpx.AsyncClient
) -> None:
    message = await deliver(client, core, tg.message(1, "where is my order?"))

    assert message.channel == "telegram"
    assert message.conversation_id == CONVERSATION
    assert message.sender_id == str(tg.CUSTOMER["id"])
    assert message.text == "where is my order?"
    assert message.message_id == "1"
    assert message.language == "zh-hans"
    assert message.metadata == {}
    assert message.profile == {
        "first_name": "Mei",
        "last_name": "Lin",
        "username": "meilin",
        "language_code": "zh-hans",
        "chat_type": "private",
    }


@pytest.mark.parametrize("command", ["start", "help", "human"])
async def test_commands_carry_their_name(
    core: RecordingCore, client: httpx.AsyncClient, command: str
) -> None:
    message = await deliver(client, core, tg.message(2, f"/{command}"))

    assert message.text == f"/{command}"
    assert message.command == command


@pytest.mark.parametrize(
    ("update", "text", "expected"),
    [
        (tg.photo(3, caption="is this damaged?"), "is this damaged?", ("image", "large", None)),
        (tg.document(4), "my receipt", ("document", "doc-1", "receipt.pdf")),
        (tg.voice(5), "", ("audio", "voice-1", None)),
        (tg.audio(6), "", ("audio", "audio-1", "complaint.mp3")),
        (tg.video(7), "it arrived broken", ("video", "video-1", "broken.mp4")),
    ],
)
async def test_media_become_attachments(
    core: RecordingCore,
    client: httpx.AsyncClient,
    update: dict[str, Any],
    text: str,
    expected: tuple[str, str, str | None],
) -> None:
    message = await deliver(client, core, update)

    [attachment] = message.attachments
    assert (attachment.kind, attachment.file_id, attachment.name) == expected
    assert message.text == text


async def test_location_and_contact_carry_their_data(
    core: RecordingCore, client: httpx.AsyncClient
) -> None:
    await post(client, tg.location(8))
    await post(client, tg.contact(9))
    where, who = await core.wait(2)

    assert where.attachments[0].kind == "location"
    assert where.attachments[0].data == {"latitude": 31.2304, "longitude": 121.4737}
    assert who.attachments[0].kind == "contact"
    assert who.attachments[0].data["phone_number"] == "+8613800138000"


async def test_edited_message_is_marked(core: RecordingCore, client: httpx.AsyncClient) -> None:
    message = await deliver(client, core, tg.edited(10, "order 1234, not 1243"))

    assert message.text == "order 1234, not 1243"
    assert message.metadata["edited"] is True


async def test_reply_carries_the_replied_text(
    core: RecordingCore, client: httpx.AsyncClient
) -> None:
    earlier = tg.bot_message("Which order do you mean?")
    message = await deliver(client, core, tg.reply(11, "the red shoes", earlier))

    assert message.metadata["reply_to_text"] == "Which order do you mean?"


async def test_huge_text_is_passed_through(core: RecordingCore, client: httpx.AsyncClient) -> None:
    text = "a" * 1_000_000
    message = await deliver(client, core, tg.message(12, text))

    assert message.text == text


@pytest.mark.parametrize(
    "make",
    [
        lambda n: tg.message(n, "@kefu_test_bot where is my parcel", chat=tg.GROUP_CHAT),
        lambda n: tg.message(n, "/help@kefu_test_bot", chat=tg.GROUP_CHAT),
        lambda n: tg.reply(
            n,
            "where is my parcel",
            {**tg.bot_message("Hi"), "chat": tg.GROUP_CHAT},
            chat=tg.GROUP_CHAT,
        ),
    ],
    ids=["mention", "command", "reply-to-bot"],
)
async def test_group_message_addressed_to_the_bot(
    core: RecordingCore, client: httpx.AsyncClient, make: Callable[[int], dict[str, Any]]
) -> None:
    message = await deliver(client, core, make(13))

    assert message.conversation_id == f"telegram:{tg.GROUP_CHAT['id']}"
    assert message.profile["chat_type"] == "supergroup"
    assert "@kefu_test_bot" not in message.text


async def test_group_chatter_is_ignored(core: RecordingCore, client: httpx.AsyncClient) -> None:
    for update in (
        tg.message(14, "anyone else waiting for the sale?", chat=tg.GROUP_CHAT),
        tg.message(15, "/help@other_bot", chat=tg.GROUP_CHAT),
        tg.message(16, "/help", chat=tg.GROUP_CHAT),
        tg.message(17, "@other_bot hi", chat=tg.GROUP_CHAT),
    ):
        assert (await post(client, update)).status_code == 200

    await sentinel(client, core, tg.message(18, "@kefu_test_bot hi", chat=tg.GROUP_CHAT))


@pytest.mark.parametrize(
    "update",
    [
        tg.my_chat_member(19),
        tg.poll(19),
        tg.channel_post(19),
        tg.message(19, "beep", sender=tg.OTHER_BOT),
        tg.new_member(19),
        {"update_id": 19, "chat_member": None},
        {"update_id": 19, "some_future_kind": {"id": 1}},
        {"update_id": 19, "poll": {"id": "p", "question": "unreadable, fields missing"}},
    ],
    ids=[
        "my_chat_member",
        "poll",
        "channel_post",
        "from-bot",
        "service",
        "null-kind",
        "future-kind",
        "unreadable",
    ],
)
async def test_updates_without_a_customer_message_are_ignored(
    core: RecordingCore, client: httpx.AsyncClient, update: dict[str, Any]
) -> None:
    assert (await post(client, update)).status_code == 200
    await sentinel(client, core, tg.message(20, "hello"))


async def test_an_update_sent_again_while_it_runs_is_handled_once(
    api: TelegramBotApiDouble, store: MemoryStore
) -> None:
    channel = make_channel(api, store, webhook_url="https://shop.example", webhook_secret=SECRET)
    core = RecordingCore(channel, delay=0.2)
    channel.attach(core)
    await channel.start()
    app = Starlette(routes=list(channel.routes()))
    update = tg.message(21, "hello")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as c:
            answers = await asyncio.gather(*(post(c, update) for _ in range(3)))
    finally:
        await channel.stop()

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [m.message_id for m in core.received] == ["21"]
    assert len(api.calls_to("sendMessage")) == 1


# --- webhook --------------------------------------------------------------------------------


async def test_start_registers_webhook_with_secret(
    core: RecordingCore, api: TelegramBotApiDouble
) -> None:
    assert api.webhook == {
        "url": "https://shop.example/webhooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    }
    assert not api.calls_to("getUpdates")


@pytest.mark.parametrize("secret", [None, "", "wrong"])
async def test_webhook_refuses_wrong_secret(
    core: RecordingCore, client: httpx.AsyncClient, secret: str | None
) -> None:
    response = await post(client, tg.message(23, "hello"), secret=secret)

    assert response.status_code == 403
    await sentinel(client, core, tg.message(24, "hello"))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", [1, 2], {"message": {}}, {"update_id": "25"}, {"update_id": True}],
)
async def test_webhook_refuses_what_is_not_an_update(
    core: RecordingCore, client: httpx.AsyncClient, body: Any
) -> None:
    response = await post(client, body)

    assert response.status_code == 400
    assert "error" in response.json()
    await sentinel(client, core, tg.message(26, "hello"))


async def test_webhook_replies_reach_telegram(
    core: RecordingCore, client: httpx.AsyncClient, api: TelegramBotApiDouble
) -> None:
    await deliver(client, core, tg.message(27, "hi"))
    [call] = await api.wait_for("sendMessage")

    assert call.params["chat_id"] == CUSTOMER_CHAT
    assert call.params["text"] == "Hello!"
    assert "parse_mode" not in call.params


async def test_webhook_answers_once_the_turn_is_done(
    core: RecordingCore, client: httpx.AsyncClient, api: TelegramBotApiDouble
) -> None:
    core.delay = 0.2
    response = await post(client, tg.message(28, "hi"))

    assert response.status_code == 200
    assert [m.message_id for m in core.received] == ["28"]
    assert len(api.calls_to("sendMessage")) == 1  # the turn's reply went before the answer


async def test_webhook_answers_503_while_the_database_is_away_then_takes_it_again(
    core: RecordingCore, client: httpx.AsyncClient, api: TelegramBotApiDouble
) -> None:
    update = tg.message(29, "hi")
    core.error = DatabaseUnavailableError("database unavailable: ConnectionRefusedError")
    refused = await post(client, update)
    core.error = None
    accepted = await post(client, update)

    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert accepted.status_code == 200
    assert [m.message_id for m in core.received] == ["29", "29"]
    assert len(api.calls_to("sendMessage")) == 1


async def test_webhook_acknowledges_an_update_that_would_fail_again(
    core: RecordingCore, client: httpx.AsyncClient
) -> None:
    core.error = RuntimeError("a bug")
    response = await post(client, tg.message(33, "hi"))

    assert response.status_code == 200  # Telegram sending it again would fail again
    assert [m.message_id for m in core.received] == ["33"]


# --- long polling ---------------------------------------------------------------------------


async def test_long_polling_end_to_end(api: TelegramBotApiDouble, store: MemoryStore) -> None:
    channel = make_channel(api, store, poll_timeout=1)
    core = RecordingCore(channel, replies=("Your order ships tomorrow.",))
    channel.attach(core)
    await channel.start()
    try:
        api.queue_update(tg.message(30, "where is my order?"))
        api.queue_update(tg.message(31, "thanks"))
        await api.wait_for("sendMessage", 2)
    finally:
        await channel.stop()

    assert api.calls_to("deleteWebhook")
    assert [m.text for m in core.received] == ["where is my order?", "thanks"]
    assert [m["text"] for m in api.sent_messages] == ["Your order ships tomorrow."] * 2
    # stop() confirmed the handled updates, so Telegram would not send them again.
    assert api.calls_to("getUpdates")[-1].params["offset"] == 32


async def test_long_polling_backs_off_and_recovers(
    api: TelegramBotApiDouble, store: MemoryStore
) -> None:
    channel = make_channel(api, store, poll_timeout=1)
    core = RecordingCore(channel)
    channel.attach(core)
    api.fail_next("getUpdates", status=502)
    await channel.start()
    try:
        api.queue_update(tg.message(32, "hello"))
        await core.wait()
    finally:
        await channel.stop()

    assert len(api.calls_to("getUpdates")) >= 2


async def test_long_polling_confirms_only_updates_whose_turn_was_saved(
    api: TelegramBotApiDouble, store: MemoryStore
) -> None:
    channel = make_channel(api, store, poll_timeout=1)
    core = RecordingCore(channel)
    core.error = DatabaseUnavailableError("database unavailable: ConnectionRefusedError")
    channel.attach(core)
    await channel.start()
    try:
        api.queue_update(tg.message(34, "hello"))
        await core.wait(1)
        core.error = None
        await core.wait(2)  # the same update, fetched again after the failure
        await api.wait_for("sendMessage")
    finally:
        await channel.stop()

    assert [m.message_id for m in core.received] == ["34", "34"]
    offsets = [call.params.get("offset") for call in api.calls_to("getUpdates")]
    past = offsets.index(35)  # the first call that confirms the update
    assert past >= 2 and set(offsets[:past]) <= {None, 34}  # not while its turn was unsaved
    assert len(api.calls_to("sendMessage")) == 1


# --- outbound -------------------------------------------------------------------------------


async def test_long_text_is_split_and_preserved(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    paragraph = "Our return policy covers every item bought in the last 30 days. " * 20
    text = "\n\n".join([paragraph.strip()] * 8)

    await channel.send(BotMessage(conversation_id=CONVERSATION, text=text))

    chunks = [m["text"] for m in api.sent_messages]
    assert len(chunks) > 1
    assert all(utf16_len(c) <= MAX_TEXT for c in chunks)
    assert " ".join(chunks).split() == text.split()


async def test_concurrent_sends_all_arrive(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    messages = [BotMessage(conversation_id=CONVERSATION, text=f"reply {i}") for i in range(60)]
    await asyncio.gather(*(channel.send(m) for m in messages))

    assert sorted(m["text"] for m in api.sent_messages) == sorted(m.text or "" for m in messages)


def test_split_text_prefers_natural_boundaries() -> None:
    lines = "\n".join(f"line {i} of the answer" for i in range(400))
    assert all(chunk.startswith("line ") for chunk in split_text(lines))

    sentences = "这是一句话。" * 1000
    chunks = split_text(sentences)
    assert all(c.endswith("。") for c in chunks)
    assert "".join(chunks) == sentences

    emoji = "😀" * 3000  # two UTF-16 units each, no boundary at all
    chunks = split_text(emoji)
    assert all(utf16_len(c) <= MAX_TEXT for c in chunks)
    assert "".join(chunks) == emoji

    assert split_text("  short  ") == ["short"]
    assert split_text("") == []


async def test_buttons_become_an_inline_keyboard(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    buttons = (Button("Yes", "/affirm"), Button("No", "/deny"), Button("Maybe", "/maybe"))
    await channel.send(BotMessage(conversation_id=CONVERSATION, text="Cancel it?", buttons=buttons))

    markup = api.sent_messages[-1]["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in markup] == [["Yes", "No"], ["Maybe"]]
    assert markup[0][0]["callback_data"] == "/affirm"


async def test_long_callback_data_is_mapped_and_resolved(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    client: httpx.AsyncClient,
) -> None:
    payload = '/SetSlots(order_id="ORD-2024-0000123", item="Blue wool scarf — 180 × 30 cm")'
    assert len(payload.encode()) > 64
    buttons = (Button("Return the scarf, please", payload), Button("Keep it", "/deny"))
    await channel.send(BotMessage(conversation_id=CONVERSATION, text="Which?", buttons=buttons))

    sent = api.sent_messages[-1]
    rows = sent["reply_markup"]["inline_keyboard"]
    assert [len(row) for row in rows] == [1, 1]
    key = rows[0][0]["callback_data"]
    assert len(key.encode()) <= 64

    message = await deliver(client, core, tg.callback(40, key, sent))

    assert message.payload == payload
    assert message.text == "Return the scarf, please"
    assert message.conversation_id == CONVERSATION
    [answer] = api.calls_to("answerCallbackQuery")
    assert answer.params["callback_query_id"] == "cbq-40"
    [edit] = api.calls_to("editMessageReplyMarkup")
    assert edit.params["message_id"] == sent["message_id"]
    assert "reply_markup" not in sent


async def test_short_callback_data_is_the_payload(
    core: RecordingCore, client: httpx.AsyncClient
) -> None:
    pressed_on = tg.bot_message("Track?", [[{"text": "Track order", "callback_data": "/track"}]])
    message = await deliver(client, core, tg.callback(41, "/track", pressed_on))

    assert (message.payload, message.text) == ("/track", "Track order")


async def test_image_is_sent_with_caption(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    await channel.send(
        BotMessage(
            conversation_id=CONVERSATION,
            text="Our bestseller",
            image="https://shop.example/scarf.jpg",
            buttons=(Button("Buy", "/buy"),),
        )
    )

    [photo] = api.calls_to("sendPhoto")
    assert photo.params["photo"] == "https://shop.example/scarf.jpg"
    assert photo.params["caption"] == "Our bestseller"
    assert photo.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "Buy"
    assert not api.calls_to("sendMessage")


async def test_image_with_long_text_is_sent_before_it(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    text = "A long description. " * 100
    await channel.send(
        BotMessage(conversation_id=CONVERSATION, text=text, image="https://shop.example/a.jpg")
    )

    [photo] = api.calls_to("sendPhoto")
    assert "caption" not in photo.params
    [message] = api.calls_to("sendMessage")
    assert message.params["text"] == text.strip()


async def test_rate_limit_is_transient_with_retry_after(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PTB warns on every RetryAfter until a timedelta is opted in; the channel reads both forms.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    api.fail_next("sendMessage", status=429, retry_after=3)

    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(BotMessage(conversation_id=CONVERSATION, text="hi"))

    assert caught.value.retry_after == 3


async def test_blocked_chat_is_permanent(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    api.block_chat(CUSTOMER_CHAT)

    with pytest.raises(PermanentDeliveryError, match="blocked"):
        await channel.send(BotMessage(conversation_id=CONVERSATION, text="hi"))


@pytest.mark.parametrize(
    ("status", "description", "error"),
    [
        (400, "Bad Request: message text is empty", RejectedMessageError),
        (400, "Bad Request: chat not found", PermanentDeliveryError),
        (500, None, TransientDeliveryError),
        (502, None, TransientDeliveryError),
    ],
)
async def test_delivery_errors_are_classified(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    status: int,
    description: str | None,
    error: type,
) -> None:
    api.fail_next("sendMessage", status=status, description=description)

    with pytest.raises(error) as caught:
        await channel.send(BotMessage(conversation_id=CONVERSATION, text="hi"))
    # One refused message is given up alone; a chat that is gone gives up the rest too.
    assert (type(caught.value) is RejectedMessageError) == (error is RejectedMessageError)


async def test_unreachable_api_is_transient(store: MemoryStore) -> None:
    async with TelegramBotApiDouble(token=tg.TOKEN) as gone:
        url = gone.base_url
    channel = TelegramChannel(token=tg.TOKEN, store=store, api_base_url=url)
    try:
        with pytest.raises(TransientDeliveryError):
            await channel.send(BotMessage(conversation_id=CONVERSATION, text="hi"))
    finally:
        await channel.stop()


async def test_foreign_conversation_is_permanent(
    core: RecordingCore, channel: TelegramChannel
) -> None:
    with pytest.raises(PermanentDeliveryError):
        await channel.send(BotMessage(conversation_id="rest:alice", text="hi"))


# --- custom payloads -----------------------------------------------------------------------

SCARF = "https://shop.example/scarf.jpg"
KEYBOARD = {
    "inline_keyboard": [
        [
            {"text": "Open the shop", "url": "https://shop.example"},
            {"text": "Track", "callback_data": "/track_order"},
        ]
    ]
}


def sends(api: TelegramBotApiDouble) -> list[str]:
    """The Bot API methods called that post something to a chat, in order."""
    return [
        c.method for c in api.calls if c.method.startswith("send") and c.method != "sendChatAction"
    ]


KINDS = [
    ({"text": "Track your order here", "reply_markup": KEYBOARD}, "sendMessage"),
    ({"photo": SCARF, "caption": "Our bestseller"}, "sendPhoto"),
    ({"document": "https://shop.example/invoice.pdf", "caption": "Invoice"}, "sendDocument"),
    ({"latitude": 31.2304, "longitude": 121.4737}, "sendLocation"),
    (
        {
            "latitude": 31.2304,
            "longitude": 121.4737,
            "title": "Kefu",
            "address": "1 Nanjing Rd",
        },
        "sendVenue",
    ),
    ({"phone_number": "+862155550100", "first_name": "Kefu support"}, "sendContact"),
    ({"audio": "https://shop.example/jingle.mp3", "title": "Jingle"}, "sendAudio"),
    ({"sticker": "CAACAgIAAxkBAAEBsticker"}, "sendSticker"),
    ({"video": "https://shop.example/howto.mp4", "supports_streaming": True}, "sendVideo"),
    ({"video_note": "DQACAgIAAxkBAAEBnote"}, "sendVideoNote"),
    ({"animation": "https://shop.example/thanks.gif"}, "sendAnimation"),
    ({"voice": "https://shop.example/hello.ogg", "caption": "Hello"}, "sendVoice"),
]


@pytest.mark.parametrize(("payload", "method"), KINDS, ids=[method for _, method in KINDS])
async def test_custom_payload_becomes_its_bot_api_method(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    payload: dict,
    method: str,
) -> None:
    await channel.send(BotMessage(conversation_id=CONVERSATION, custom=payload))

    assert sends(api) == [method]
    [call] = api.calls_to(method)
    assert call.params == {"chat_id": CUSTOMER_CHAT, **payload}
    assert api.sent_messages[-1]["chat"]["id"] == CUSTOMER_CHAT


PARTED = "\n\n".join(["Our return policy covers every item for 30 days. " * 30] * 6)
"""About 8,800 characters: three Telegram messages."""
BUY = (Button(title="Buy", payload="/buy"),)


@pytest.mark.parametrize(
    ("message", "parts"),
    [
        (BotMessage(conversation_id=CONVERSATION, text="hi", buttons=BUY), 1),
        (BotMessage(conversation_id=CONVERSATION, text="Look", image=SCARF, buttons=BUY), 1),
        (BotMessage(conversation_id=CONVERSATION, buttons=BUY), 1),
        (BotMessage(conversation_id=CONVERSATION, custom={"photo": SCARF}), 1),
        (BotMessage(conversation_id=CONVERSATION, text="x" * 2000, image=SCARF), 2),
        (BotMessage(conversation_id=CONVERSATION, text=PARTED, buttons=BUY), 3),
        (BotMessage(conversation_id=CONVERSATION, text="hi", custom={"photo": SCARF}), 2),
        (
            BotMessage(
                conversation_id=CONVERSATION, text=PARTED, image=SCARF, custom={"photo": SCARF}
            ),
            5,
        ),
    ],
)
async def test_a_message_is_delivered_in_parts_one_per_call(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    message: BotMessage,
    parts: int,
) -> None:
    """Each part is one Bot API call, so the outbox can retry it alone; together they make
    the same calls as the message sent whole."""
    delivered = channel.deliveries(message)
    assert len(delivered) == parts
    if parts == 1:
        assert delivered == [message]
    assert [part.buttons for part in delivered if part.buttons] == (
        [BUY] if message.buttons else []
    )

    await channel.send(message)
    whole = [(c.method, c.params) for c in api.calls if c.method.startswith("send")]
    for part in delivered:
        await channel.send(part)
    in_parts = [(c.method, c.params) for c in api.calls if c.method.startswith("send")]
    assert in_parts[len(whole) :] == whole
    assert len(whole) == parts


async def test_custom_payload_follows_the_message_text(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    custom = {"photo": SCARF, "caption": "Blue wool scarf", "reply_markup": KEYBOARD}
    await channel.send(BotMessage(conversation_id=CONVERSATION, text="Here it is", custom=custom))

    assert sends(api) == ["sendMessage", "sendPhoto"]
    assert api.sent_messages[0]["text"] == "Here it is"
    assert api.sent_messages[1]["reply_markup"] == KEYBOARD


async def test_custom_text_is_split_with_the_keyboard_last(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    text = "\n\n".join(["Our return policy covers every item for 30 days. " * 30] * 8)
    custom = {"text": text, "reply_markup": KEYBOARD, "disable_notification": True}
    await channel.send(BotMessage(conversation_id=CONVERSATION, custom=custom))

    calls = api.calls_to("sendMessage")
    assert len(calls) > 1
    assert " ".join(c.params["text"] for c in calls).split() == text.split()
    assert all(c.params["disable_notification"] is True for c in calls)
    assert [c.params.get("reply_markup") for c in calls] == [None] * (len(calls) - 1) + [KEYBOARD]


async def test_formatted_custom_text_is_sent_whole(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    custom = {"text": "Order <b>ORD-1</b> has shipped", "parse_mode": "HTML"}
    await channel.send(BotMessage(conversation_id=CONVERSATION, custom=custom))

    [call] = api.calls_to("sendMessage")
    assert call.params == {"chat_id": CUSTOMER_CHAT, **custom}


async def test_custom_payload_cannot_message_another_chat(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = CUSTOMER_CHAT + 1
    for custom in (
        {"text": "Internal: refund approved", "chat_id": other},
        {"text": "Quoted", "reply_parameters": {"message_id": 1, "chat_id": other}},
        {"text": "Hello again", "chat_id": CUSTOMER_CHAT},
    ):
        await channel.send(BotMessage(conversation_id=CONVERSATION, custom=custom))

    assert [m["text"] for m in api.sent_messages] == ["Hello again"]
    assert {c.params["chat_id"] for c in api.calls_to("sendMessage")} == {CUSTOMER_CHAT}
    assert caplog.text.count("addresses another chat") == 2


@pytest.mark.parametrize(
    ("custom", "reason"),
    [
        (["Hello"], "must be a mapping"),
        ({"carousel": [{"title": "Scarf"}]}, "no Telegram message kind"),
        ({"text": "Hi", "link": "https://shop.example"}, "send_message takes no link"),
        ({"text": "Hi", "api_kwargs": {"chat_id": 1}}, "send_message takes no api_kwargs"),
        ({"text": "   "}, "text must be non-empty"),
        ({"latitude": "north", "longitude": 121.4}, "latitude must be a number"),
        ({"photo": ["a", "b"]}, "photo must be a URL or a Telegram file_id"),
        ({"document": "file:///etc/passwd"}, "document must be a URL"),
        ({"text": "Hi", "reply_markup": [["Yes"]]}, "reply_markup needs one of"),
        ({"text": "Hi", "reply_markup": {"inline_keyboard": [[{"url": "x"}]]}}, "malformed"),
        (
            {"text": "Hi", "reply_to_message_id": 1, "reply_parameters": {"message_id": 1}},
            "mutually exclusive",
        ),
    ],
    ids=[
        "not-a-mapping",
        "unknown-kind",
        "unknown-parameter",
        "ptb-parameter",
        "blank-text",
        "wrong-type",
        "not-a-file",
        "file-uri",
        "markup-shape",
        "markup-button",
        "ptb-rejects",
    ],
)
async def test_unusable_custom_payload_is_skipped_and_the_turn_goes_on(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    caplog: pytest.LogCaptureFixture,
    custom: Any,
    reason: str,
) -> None:
    for message in (
        BotMessage(conversation_id=CONVERSATION, text="First"),
        BotMessage(conversation_id=CONVERSATION, text="Second", custom=custom),
        BotMessage(conversation_id=CONVERSATION, custom=custom),
        BotMessage(conversation_id=CONVERSATION, text="Third"),
    ):
        await channel.send(message)

    assert [m["text"] for m in api.sent_messages] == ["First", "Second", "Third"]
    assert sends(api) == ["sendMessage"] * 3
    skipped = [r for r in caplog.records if "custom payload" in r.getMessage()]
    assert len(skipped) == 2
    assert all(reason in r.getMessage() and CONVERSATION in r.getMessage() for r in skipped)


@pytest.mark.parametrize("where", ["image", "custom"])
async def test_a_file_on_the_server_is_never_uploaded(
    core: RecordingCore,
    channel: TelegramChannel,
    api: TelegramBotApiDouble,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    secret = tmp_path / "secrets.env"
    secret.write_text("TELEGRAM_BOT_TOKEN=...")
    if where == "image":
        message = BotMessage(conversation_id=CONVERSATION, text="Look:", image=str(secret))
    else:
        message = BotMessage(conversation_id=CONVERSATION, custom={"document": str(secret)})
    await channel.send(message)

    assert api.calls_to("sendPhoto") == api.calls_to("sendDocument") == []
    assert [call.params["text"] for call in api.calls_to("sendMessage")] == (
        ["Look:"] if where == "image" else []
    )
    key = "image" if where == "image" else "document"
    assert f"{key} must be a URL or a Telegram file_id" in caplog.text


async def test_custom_payload_the_api_rejects_is_permanent(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    api.fail_next(
        "sendDocument", status=400, description="Bad Request: wrong file identifier specified"
    )

    with pytest.raises(PermanentDeliveryError, match="Wrong file identifier"):
        await channel.send(
            BotMessage(conversation_id=CONVERSATION, custom={"document": "no-such-file-id"})
        )

    assert len(api.calls_to("sendDocument")) == 1


# --- typing indicator -----------------------------------------------------------------------


async def test_typing_shown_for_a_slow_turn(api: TelegramBotApiDouble, store: MemoryStore) -> None:
    channel = make_channel(
        api, store, webhook_url="https://shop.example", webhook_secret=SECRET, typing_delay=0.05
    )
    core = RecordingCore(channel, delay=0.3)
    channel.attach(core)
    await channel.start()
    app = Starlette(routes=list(channel.routes()))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as c:
            await post(c, tg.message(50, "hi"))
        await api.wait_for("sendMessage")
    finally:
        await channel.stop()

    [action, *_] = api.calls_to("sendChatAction")
    assert action.params == {"chat_id": CUSTOMER_CHAT, "action": "typing"}
    assert action in api.calls[: api.calls.index(api.calls_to("sendMessage")[0])]


async def test_no_typing_for_a_quick_turn(
    core: RecordingCore, client: httpx.AsyncClient, api: TelegramBotApiDouble
) -> None:
    await deliver(client, core, tg.message(51, "hi"))
    await api.wait_for("sendMessage")
    await asyncio.sleep(0.35)

    assert not api.calls_to("sendChatAction")


# --- construction ---------------------------------------------------------------------------


def test_from_settings(store: MemoryStore) -> None:
    assert TelegramChannel.from_settings(Settings(), store) is None
    channel = TelegramChannel.from_settings(Settings(telegram_bot_token=tg.TOKEN), store)
    assert isinstance(channel, TelegramChannel)


async def test_double_accepts_uploads_and_form_bodies(
    core: RecordingCore, channel: TelegramChannel, api: TelegramBotApiDouble
) -> None:
    await channel.bot.send_photo(CUSTOMER_CHAT, photo=b"\x89PNG fake image", caption="upload")
    async with httpx.AsyncClient(base_url=f"{api.base_url}/bot{tg.TOKEN}") as http:
        form = await http.post("/sendMessage", data={"chat_id": "7", "text": "42"})
        bad = await http.post("/sendMessage", json={"chat_id": 7, "text": "x" * 4097})

    [upload] = api.calls_to("sendPhoto")
    assert upload.params["photo"].data == b"\x89PNG fake image"
    assert upload.params["caption"] == "upload"
    assert form.json()["result"]["text"] == "42"
    assert api.calls_to("sendMessage")[0].params == {"chat_id": 7, "text": "42"}
    assert bad.status_code == 400
    assert bad.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message is too long",
    }
