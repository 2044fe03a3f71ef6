"""kefu's :class:`~bot.events.BotMessage` parts shaped to Telegram's limits.

Telegram measures text in UTF-16 code units: 4096 for a message, 1024 for a caption, and 64
UTF-8 bytes for a button's ``callback_data``. Longer texts are split at the most natural
boundary that fits; longer payloads are stored and replaced by a short key. A ``custom``
payload becomes the Bot API calls Rasa's Telegram channel would make for it.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    TelegramObject,
)

from bot.events import Button
from bot.ports import KeyValueStore

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_BYTES = 64
CALLBACK_NAMESPACE = "telegram_callback"
CALLBACK_KEY_PREFIX = "kefu:"
SHORT_TITLE = 16
"""Buttons go two to a row when every title is at most this long, else one per row."""

_SENTENCE_END = re.compile(r"[.!?…](?=\s)|[。！？]")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut ``text`` into chunks of at most ``limit`` UTF-16 units.

    Prefers a paragraph break, then a line break, then a sentence end, then a space, and cuts
    hard only when a chunk would otherwise be less than half full. Whitespace at a cut is
    dropped (Telegram trims it anyway); nothing else is lost.
    """
    chunks: list[str] = []
    rest = text.strip()
    while utf16_len(rest) > limit:
        window = _fitting_prefix(rest, limit)
        cut = _natural_cut(window)
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks


def _fitting_prefix(text: str, limit: int) -> str:
    size = 0
    for index, char in enumerate(text):
        size += 2 if ord(char) > 0xFFFF else 1
        if size > limit:
            return text[:index]
    return text


def _natural_cut(window: str) -> int:
    floor = len(window) // 2
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= floor:
        return ends[-1]
    at = window.rfind(" ")
    return at + 1 if at >= floor else len(window)


def callback_key(payload: str) -> str:
    """A short, stable stand-in for a payload too long for ``callback_data``."""
    digest = hashlib.sha256(payload.encode()).digest()
    return CALLBACK_KEY_PREFIX + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


async def keyboard(buttons: Sequence[Button], store: KeyValueStore) -> InlineKeyboardMarkup:
    """An inline keyboard for ``buttons``, long payloads mapped through the store."""
    cells: list[InlineKeyboardButton] = []
    for button in buttons:
        data = button.payload or button.title
        if len(data.encode()) > MAX_CALLBACK_BYTES or data.startswith(CALLBACK_KEY_PREFIX):
            key = callback_key(data)
            await store.put_value(CALLBACK_NAMESPACE, key, data)
            data = key
        cells.append(InlineKeyboardButton(text=button.title, callback_data=data))
    per_row = 2 if all(len(b.title) <= SHORT_TITLE for b in buttons) else 1
    return InlineKeyboardMarkup([cells[i : i + per_row] for i in range(0, len(cells), per_row)])


async def resolve_callback(data: str, store: KeyValueStore) -> str | None:
    """The payload behind a pressed button's ``callback_data``; None if a mapped key is lost."""
    if not data.startswith(CALLBACK_KEY_PREFIX):
        return data
    return await store.get_value(CALLBACK_NAMESPACE, data)


CUSTOM_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("text",), "send_message"),
    (("photo",), "send_photo"),
    (("audio",), "send_audio"),
    (("document",), "send_document"),
    (("sticker",), "send_sticker"),
    (("video",), "send_video"),
    (("video_note",), "send_video_note"),
    (("animation",), "send_animation"),
    (("voice",), "send_voice"),
    (("latitude", "longitude", "title", "address"), "send_venue"),
    (("latitude", "longitude"), "send_location"),
    (("phone_number", "first_name"), "send_contact"),
)
"""Rasa's ``send_custom_json`` mapping: the first kind whose keys a payload has all of wins."""
_FILE_PARAMS = frozenset(
    {"photo", "audio", "document", "sticker", "video", "video_note", "animation", "voice"}
    | {"thumbnail", "cover"}
)
"""Parameters PTB would fill from a file on disk when given its path."""
_NOT_FROM_PAYLOADS = frozenset(
    {"self", "chat_id", "location", "venue", "contact", "api_kwargs", "rate_limit_args"}
    | {"read_timeout", "write_timeout", "connect_timeout", "pool_timeout"}
)
"""The recipient and PTB's own parameters: never taken from a payload."""
_MARKUPS: dict[str, type[TelegramObject]] = {
    "inline_keyboard": InlineKeyboardMarkup,
    "keyboard": ReplyKeyboardMarkup,
    "remove_keyboard": ReplyKeyboardRemove,
    "force_reply": ForceReply,
}

CustomCall = tuple[str, dict[str, Any]]
"""A ``Bot`` method name and its keyword arguments, ``chat_id`` left out."""


def custom_calls(payload: Any, chat_id: int) -> list[CustomCall]:
    """The Bot API calls that deliver a ``custom`` payload to ``chat_id``, in order.

    Raises ValueError, saying why, for a payload that is not a mapping, has no recognised kind,
    names another chat, has a parameter the method lacks or a value of the wrong shape. Plain
    text (no ``parse_mode`` or ``entities``) is split like any reply, markup on the last part.
    """
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise ValueError("a custom payload must be a mapping with string keys")
    method = next(
        (name for keys, name in CUSTOM_KINDS if all(payload.get(k) is not None for k in keys)),
        None,
    )
    if method is None:
        raise ValueError(f"no Telegram message kind in keys {sorted(payload)}")
    quoted = payload.get("reply_parameters")
    targets = (
        payload.get("chat_id"),
        quoted.get("chat_id") if isinstance(quoted, Mapping) else None,
    )
    if any(target is not None and str(target) != str(chat_id) for target in targets):
        raise ValueError("it addresses another chat")
    kwargs = {k: v for k, v in payload.items() if k != "chat_id"}
    accepted = inspect.signature(getattr(Bot, method)).parameters.keys() - _NOT_FROM_PAYLOADS
    if unknown := sorted(kwargs.keys() - accepted):
        raise ValueError(f"{method} takes no {', '.join(unknown)}")
    for name in kwargs.keys() & _FILE_PARAMS:
        if not is_remote_file(kwargs[name]):
            raise ValueError(f"{name} must be a URL or a Telegram file_id")
    _check_values(kwargs)
    if "reply_markup" in kwargs:
        kwargs["reply_markup"] = _markup(kwargs["reply_markup"])
    if method != "send_message" or "parse_mode" in kwargs or "entities" in kwargs:
        return [(method, kwargs)]
    *first, last = split_text(kwargs.pop("text"))
    markup = {"reply_markup": kwargs.pop("reply_markup")} if "reply_markup" in kwargs else {}
    calls = [(method, {**kwargs, "text": chunk}) for chunk in first]
    return [*calls, (method, {**kwargs, "text": last, **markup})]


def _check_values(kwargs: dict[str, Any]) -> None:
    for name in ("text", "title", "address", "phone_number", "first_name"):
        if name in kwargs and not (isinstance(kwargs[name], str) and kwargs[name].strip()):
            raise ValueError(f"{name} must be non-empty text")
    for name in ("latitude", "longitude"):
        value = kwargs.get(name)
        if name in kwargs and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{name} must be a number")


def is_remote_file(value: Any) -> bool:
    """A URL or file_id; never a path, which PTB would upload from the server's disk."""
    if not isinstance(value, str) or not value.strip() or value.startswith("file:"):
        return False
    try:
        return not Path(value).is_file()
    except OSError:
        return True


def _markup(value: Any) -> TelegramObject:
    """A reply markup from Telegram's JSON shape (``{"inline_keyboard": [[...]]}`` etc.)."""
    kind = next((_MARKUPS[k] for k in _MARKUPS if isinstance(value, Mapping) and k in value), None)
    if kind is None:
        raise ValueError(f"reply_markup needs one of {', '.join(_MARKUPS)}")
    try:
        return kind.de_json(dict(value))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"reply_markup is malformed: {exc}") from exc
