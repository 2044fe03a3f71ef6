"""Telegram updates read safely: their shape checked before python-telegram-bot parses them.

PTB's ``Update.de_json`` trusts its input: a ``date`` out of range raises ``OverflowError``, a
string where an object belongs ``AttributeError``, a list as chat id is kept as it is. Telegram
never sends such updates, but a webhook is reachable by anyone who has (or guesses) its
secret, and a bug upstream must not turn into a crash loop. So an update is first checked by
:func:`bot.edge.check_json` (depth, 64-bit integers, NUL), then against the msgspec types
below, which spell out every field kefu reads; only the update kinds kefu handles go on to
PTB, whose own failures are caught too. An update that fails is :class:`UnreadableUpdateError`:
the channel acknowledges it (so Telegram stops redelivering it) and logs why, never what.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from telegram import Bot, Update

from bot.edge import check_json
from bot.errors import BadRequestError

__all__ = ["HANDLED_KINDS", "UnreadableUpdateError", "UpdatesBot", "read_update"]

HANDLED_KINDS = ("message", "edited_message", "callback_query")
"""The update kinds kefu asks for (``allowed_updates``) and reads; others are ignored."""

_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Date = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
"""Unix time, as PTB turns it into a ``datetime`` (0 marks an inaccessible message)."""


class UnreadableUpdateError(BadRequestError):
    """An update kefu cannot read; the message says why without quoting it."""


class _Base(msgspec.Struct, forbid_unknown_fields=False):
    pass


class _User(_Base):
    id: _Int64
    is_bot: bool
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class _Chat(_Base):
    id: _Int64
    type: str


class _Entity(_Base):
    type: str
    offset: _Int64
    length: _Int64
    user: _User | None = None


class _PhotoSize(_Base):
    file_id: str
    file_unique_id: str
    width: _Int64
    height: _Int64


class _File(_Base):
    file_id: str
    file_unique_id: str
    file_name: str | None = None
    mime_type: str | None = None


class _Location(_Base):
    latitude: float
    longitude: float


class _Contact(_Base):
    phone_number: str
    first_name: str
    last_name: str | None = None
    user_id: _Int64 | None = None


class _InlineButton(_Base):
    text: str
    callback_data: str | None = None


class _InlineKeyboard(_Base):
    inline_keyboard: list[list[_InlineButton]]


class _Message(_Base, rename={"from_user": "from"}):
    message_id: _Int64
    date: _Date
    chat: _Chat
    from_user: _User | None = None
    edit_date: _Date | None = None
    text: str | None = None
    caption: str | None = None
    entities: list[_Entity] | None = None
    caption_entities: list[_Entity] | None = None
    reply_to_message: _Message | None = None
    photo: list[_PhotoSize] | None = None
    document: _File | None = None
    voice: _File | None = None
    audio: _File | None = None
    video: _File | None = None
    location: _Location | None = None
    contact: _Contact | None = None
    reply_markup: _InlineKeyboard | None = None


class _CallbackQuery(_Base, rename={"from_user": "from"}):
    id: str
    from_user: _User
    chat_instance: str
    data: str | None = None
    message: _Message | None = None


class _Update(_Base):
    update_id: _Int64
    message: _Message | None = None
    edited_message: _Message | None = None
    callback_query: _CallbackQuery | None = None


def read_update(data: Any, bot: Bot) -> Update | None:
    """The PTB ``Update`` in ``data`` (a decoded JSON object with an integer ``update_id``);
    None for a kind kefu does not handle; :class:`UnreadableUpdateError` when it cannot be read."""
    try:
        check_json(data, where="update")
        msgspec.convert(data, type=_Update)
    except BadRequestError as exc:
        raise UnreadableUpdateError(str(exc)) from None
    except msgspec.ValidationError as exc:
        raise UnreadableUpdateError(str(exc)) from None
    kinds = [kind for kind in HANDLED_KINDS if data.get(kind) is not None]
    if not kinds:
        return None
    if len(kinds) > 1:
        raise UnreadableUpdateError(f"one update carries {' and '.join(kinds)}")
    try:
        return Update.de_json({"update_id": data["update_id"], kinds[0]: data[kinds[0]]}, bot)
    except Exception as exc:  # PTB parses fields kefu does not check: any failure is theirs
        reason = f"python-telegram-bot could not parse it ({type(exc).__name__})"
        raise UnreadableUpdateError(reason) from None


class UpdatesBot(Bot):
    """PTB's ``Bot`` that can also fetch updates as JSON, for :func:`read_update` to check.

    ``Bot.get_updates`` parses the whole batch at once: one bad update fails it (after
    logging the raw batch), and the same batch comes back on every poll.
    """

    async def get_raw_updates(
        self, *, offset: int | None, wait: int, allowed_updates: tuple[str, ...]
    ) -> list[Any]:
        """``getUpdates``' result as decoded JSON; a long poll of ``wait`` seconds."""
        data = {"offset": offset, "timeout": wait, "allowed_updates": list(allowed_updates)}
        read_timeout = wait + (self.request.read_timeout or 0)
        result = await self._post("getUpdates", data, read_timeout=read_timeout)
        return result if isinstance(result, list) else []
