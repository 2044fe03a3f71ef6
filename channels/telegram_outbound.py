"""kefu's :class:`~bot.events.BotMessage` parts shaped to Telegram's limits.

Telegram measures text in UTF-16 code units: 4096 for a message, 1024 for a caption, and 64
UTF-8 bytes for a button's ``callback_data``. Longer texts are split at the most natural
boundary that fits; longer payloads are stored and replaced by a short key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.events import Button
from bot.ports import ConversationStore

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


async def keyboard(buttons: Sequence[Button], store: ConversationStore) -> InlineKeyboardMarkup:
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


async def resolve_callback(data: str, store: ConversationStore) -> str | None:
    """The payload behind a pressed button's ``callback_data``; None if a mapped key is lost."""
    if not data.startswith(CALLBACK_KEY_PREFIX):
        return data
    return await store.get_value(CALLBACK_NAMESPACE, data)
