"""Telegram update payloads in the shapes the Bot API documents (core.telegram.org/bots/api)."""

from __future__ import annotations

from typing import Any

TOKEN = "123456:TEST-TOKEN"
BOT_ID = 123456
BOT_USERNAME = "kefu_test_bot"
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Kefu Test Shop", "username": BOT_USERNAME}
CUSTOMER = {
    "id": 5550123,
    "is_bot": False,
    "first_name": "Mei",
    "last_name": "Lin",
    "username": "meilin",
    "language_code": "zh-hans",
}
PRIVATE_CHAT = {
    "id": 5550123,
    "type": "private",
    "first_name": "Mei",
    "last_name": "Lin",
    "username": "meilin",
}
GROUP_CHAT = {"id": -1001234567890, "type": "supergroup", "title": "Shop fans"}
OTHER_BOT = {"id": 777, "is_bot": True, "first_name": "Other", "username": "other_bot"}
DATE = 1_735_689_600


def message(
    update_id: int,
    text: str | None = None,
    *,
    chat: dict[str, Any] = PRIVATE_CHAT,
    sender: dict[str, Any] = CUSTOMER,
    kind: str = "message",
    **content: Any,
) -> dict[str, Any]:
    """An update carrying a message; ``content`` adds fields (photo, caption, reply...)."""
    body: dict[str, Any] = {
        "message_id": 1000 + update_id,
        "date": DATE,
        "chat": chat,
        "from": sender,
        **content,
    }
    if text is not None:
        body["text"] = text
        entities = _entities(text)
        if entities:
            body["entities"] = entities
    return {"update_id": update_id, kind: body}


def _entities(text: str) -> list[dict[str, Any]]:
    """Telegram's entities for a leading /command and @mentions (ASCII offsets)."""
    found = []
    if text.startswith("/"):
        length = len(text.split()[0])
        found.append({"type": "bot_command", "offset": 0, "length": length})
    start = text.find("@")
    while start != -1:
        if start == 0 or text[start - 1] == " ":
            end = start + 1
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            found.append({"type": "mention", "offset": start, "length": end - start})
        start = text.find("@", start + 1)
    return found


def edited(update_id: int, text: str) -> dict[str, Any]:
    update = message(update_id, text, kind="edited_message")
    update["edited_message"]["edit_date"] = DATE + 60
    return update


def reply(update_id: int, text: str, to: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A message replying to ``to`` (a message object)."""
    return message(update_id, text, reply_to_message=to, **kwargs)


def photo(update_id: int, caption: str | None = None) -> dict[str, Any]:
    sizes = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 67, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960},
        {"file_id": "medium", "file_unique_id": "m", "width": 320, "height": 240},
    ]
    extra = {"caption": caption} if caption else {}
    return message(update_id, photo=sizes, **extra)


def document(update_id: int) -> dict[str, Any]:
    doc = {
        "file_id": "doc-1",
        "file_unique_id": "d1",
        "file_name": "receipt.pdf",
        "mime_type": "application/pdf",
        "file_size": 52_000,
    }
    return message(update_id, document=doc, caption="my receipt")


def voice(update_id: int) -> dict[str, Any]:
    note = {"file_id": "voice-1", "file_unique_id": "v1", "duration": 3, "mime_type": "audio/ogg"}
    return message(update_id, voice=note)


def audio(update_id: int) -> dict[str, Any]:
    track = {
        "file_id": "audio-1",
        "file_unique_id": "a1",
        "duration": 120,
        "file_name": "complaint.mp3",
        "mime_type": "audio/mpeg",
    }
    return message(update_id, audio=track)


def video(update_id: int) -> dict[str, Any]:
    clip = {
        "file_id": "video-1",
        "file_unique_id": "vi1",
        "width": 640,
        "height": 480,
        "duration": 10,
        "file_name": "broken.mp4",
        "mime_type": "video/mp4",
    }
    return message(update_id, video=clip, caption="it arrived broken")


def location(update_id: int) -> dict[str, Any]:
    return message(update_id, location={"latitude": 31.2304, "longitude": 121.4737})


def contact(update_id: int) -> dict[str, Any]:
    card = {"phone_number": "+8613800138000", "first_name": "Mei", "user_id": CUSTOMER["id"]}
    return message(update_id, contact=card)


def callback(update_id: int, data: str, on_message: dict[str, Any]) -> dict[str, Any]:
    """A button press on ``on_message`` (a message object the bot sent, with its keyboard)."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cbq-{update_id}",
            "from": CUSTOMER,
            "message": on_message,
            "chat_instance": "-4242",
            "data": data,
        },
    }


def bot_message(text: str, keyboard: list[list[dict[str, str]]] | None = None) -> dict[str, Any]:
    """A message the bot sent earlier, as it appears inside a callback query or a reply."""
    body: dict[str, Any] = {
        "message_id": 42,
        "date": DATE,
        "chat": PRIVATE_CHAT,
        "from": BOT_USER,
        "text": text,
    }
    if keyboard:
        body["reply_markup"] = {"inline_keyboard": keyboard}
    return body


def my_chat_member(update_id: int) -> dict[str, Any]:
    member = {"user": BOT_USER, "status": "member"}
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": GROUP_CHAT,
            "from": CUSTOMER,
            "date": DATE,
            "old_chat_member": {**member, "status": "left"},
            "new_chat_member": member,
        },
    }


def poll(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "poll": {
            "id": "poll-1",
            "question": "Best colour?",
            "options": [
                {"persistent_id": "o1", "text": "red", "voter_count": 1},
                {"persistent_id": "o2", "text": "blue", "voter_count": 0},
            ],
            "total_voter_count": 1,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        },
    }


def channel_post(update_id: int) -> dict[str, Any]:
    chat = {"id": -1009876543210, "type": "channel", "title": "Shop news"}
    return {
        "update_id": update_id,
        "channel_post": {"message_id": 9, "date": DATE, "chat": chat, "text": "Sale!"},
    }


def new_member(update_id: int) -> dict[str, Any]:
    """A service message (someone joined a group) with no text to answer."""
    return message(update_id, chat=GROUP_CHAT, new_chat_members=[CUSTOMER])
