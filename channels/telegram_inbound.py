"""Telegram updates into kefu's :class:`~bot.events.UserMessage` records.

Pure translation: no network, no store. Updates kefu has nothing to say to (service messages,
membership changes, polls, other bots, channel posts, group chatter not addressed to the bot)
translate to ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import CallbackQuery, Chat, Message, MessageEntity, Update, User

from bot.events import Attachment, UserMessage, conversation_id_for

CHANNEL = "telegram"
GROUP_TYPES = frozenset({Chat.GROUP, Chat.SUPERGROUP})


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is on Telegram (from ``getMe``), to tell when a group addresses it."""

    id: int
    username: str


def message_from_update(update: Update, me: BotIdentity | None) -> UserMessage | None:
    """The customer's message in a ``message`` or ``edited_message`` update, if it is for us."""
    message, edited = update.message, False
    if message is None and update.edited_message is not None:
        message, edited = update.edited_message, True
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    if message.chat.type in GROUP_TYPES and not _addressed(message, me):
        return None
    raw = message.text or message.caption or ""
    command = _command(message, me)
    text = _strip_mention(raw, me)
    attachments = _attachments(message)
    if not text and not attachments:
        return None
    metadata: dict[str, Any] = {}
    if edited:
        metadata["edited"] = True
    reply = message.reply_to_message
    if reply is not None:
        metadata["reply_to_text"] = reply.text or reply.caption or ""
    return UserMessage(
        channel=CHANNEL,
        conversation_id=conversation_id_for(CHANNEL, message.chat.id),
        sender_id=str(message.from_user.id),
        text=text,
        attachments=attachments,
        language=message.from_user.language_code,
        message_id=str(update.update_id),
        metadata=metadata,
        command=command or None,
        profile=sender_profile(message.from_user, message.chat),
    )


def callback_from_update(
    update: Update, payload: str | None, title: str | None
) -> UserMessage | None:
    """A button press: the button's payload, and its title as the text the customer "said".

    With the payload lost (an expired long-payload key) the title alone still makes sense.
    """
    query = update.callback_query
    if query is None or query.from_user.is_bot or query.message is None:
        return None
    if payload is None and title is None:
        return None
    chat = query.message.chat
    return UserMessage(
        channel=CHANNEL,
        conversation_id=conversation_id_for(CHANNEL, chat.id),
        sender_id=str(query.from_user.id),
        text=title or "",
        payload=payload,
        language=query.from_user.language_code,
        message_id=str(update.update_id),
        profile=sender_profile(query.from_user, chat),
    )


def button_title(query: CallbackQuery) -> str | None:
    """The pressed button's title, read from the keyboard of the message it was on."""
    message = query.message
    if not isinstance(message, Message) or message.reply_markup is None:
        return None
    for row in message.reply_markup.inline_keyboard:
        for button in row:
            if button.callback_data == query.data:
                return button.text
    return None


def sender_profile(user: User, chat: Chat) -> dict[str, Any]:
    """Who wrote, in Telegram's own words (``UserMessage.profile``)."""
    return {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "language_code": user.language_code,
        "chat_type": chat.type,
    }


def _entities(message: Message) -> dict[MessageEntity, str]:
    if message.text is not None:
        return message.parse_entities()
    return message.parse_caption_entities()


def _addressed(message: Message, me: BotIdentity | None) -> bool:
    """In a group the bot answers a mention, a reply to itself, or a ``/command@itsname``."""
    if me is None:
        return False
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    handle = f"@{me.username}".lower()
    for entity, content in _entities(message).items():
        if entity.type == MessageEntity.MENTION and content.lower() == handle:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == me.id:
            return True
        if entity.type == MessageEntity.BOT_COMMAND and content.lower().endswith(handle):
            return True
    return False


def _command(message: Message, me: BotIdentity | None) -> str | None:
    """``start`` for ``/start`` or ``/start@thisbot``; None for text or another bot's command."""
    for entity, content in _entities(message).items():
        if entity.type != MessageEntity.BOT_COMMAND or entity.offset != 0:
            continue
        name, _, target = content[1:].partition("@")
        if target and (me is None or target.lower() != me.username.lower()):
            return None
        return name.lower()
    return None


def _strip_mention(text: str, me: BotIdentity | None) -> str:
    if me is None:
        return text
    return re.sub(rf"(?i)\s*@{re.escape(me.username)}\b", "", text).strip()


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        found.append(Attachment(kind="image", file_id=largest.file_id))
    if message.document is not None:
        doc = message.document
        found.append(
            Attachment(
                kind="document", file_id=doc.file_id, name=doc.file_name, mime_type=doc.mime_type
            )
        )
    if message.voice is not None:
        voice = message.voice
        found.append(
            Attachment(
                kind="audio", file_id=voice.file_id, mime_type=voice.mime_type, data={"voice": True}
            )
        )
    if message.audio is not None:
        audio = message.audio
        found.append(
            Attachment(
                kind="audio", file_id=audio.file_id, name=audio.file_name, mime_type=audio.mime_type
            )
        )
    if message.video is not None:
        video = message.video
        found.append(
            Attachment(
                kind="video", file_id=video.file_id, name=video.file_name, mime_type=video.mime_type
            )
        )
    if message.location is not None:
        where = message.location
        found.append(
            Attachment(
                kind="location", data={"latitude": where.latitude, "longitude": where.longitude}
            )
        )
    if message.contact is not None:
        contact = message.contact
        data = {
            "phone_number": contact.phone_number,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "user_id": contact.user_id,
        }
        found.append(Attachment(kind="contact", data=data))
    return tuple(found)
