"""What the core accepts of a customer's message, before anything reads it: control
characters stripped, oversized text cut (and marked ``truncated``), card numbers masked; and
the message's once-only key, by which a platform's retry is recognised."""

from __future__ import annotations

import dataclasses
import re

from bot import constants
from bot.events import UserMessage
from bot.privacy import redact_user_message

__all__ = ["message_key", "sanitize"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize(message: UserMessage) -> UserMessage:
    """Strip control characters, cut oversized text (noting the cut), then mask card numbers
    in every field (``bot.privacy``): last, so that no later step can rejoin a number."""
    text = _CONTROL.sub("", message.text)
    truncated = message.truncated
    if len(text) > constants.MAX_MESSAGE_CHARS:
        text = text[: constants.MAX_MESSAGE_CHARS]
        truncated = True
    payload = _CONTROL.sub("", message.payload) if message.payload else message.payload
    if text != message.text or truncated != message.truncated or payload != message.payload:
        message = dataclasses.replace(message, text=text, payload=payload, truncated=truncated)
    return redact_user_message(message)


def message_key(message: UserMessage) -> tuple[str, str] | None:
    """The store's once-only key of a platform message: its id is only taken to be unique
    within its conversation (two REST clients may both number their messages from 1). The
    conversation id's length comes first, so no two (conversation, id) pairs share a key."""
    if not message.message_id:
        return None
    cid = message.conversation_id
    return message.channel, f"{len(cid)}:{cid}/{message.message_id}"
