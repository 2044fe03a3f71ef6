"""Keeping customers' secrets out of the store and the logs: one redaction pass at the edge.

Payment card numbers (13 to 19 digits, spaces or dashes between them, passing the Luhn check)
are masked to ``**** 1234`` in every field of a customer's message before anything else sees
it (:func:`redact_user_message`), in every bot message before it is stored or sent
(:func:`redact_bot_message`), and in every slot value (:func:`redact`). Identifiers (sender,
conversation and message ids) holding a card number are refused instead: masking them would
merge two customers' conversations or two messages into one.

Log records are cleaned too (:func:`install_log_redaction`): card numbers, e-mail addresses
and phone numbers never reach a log line, whatever logged them.

Text that leaves kefu for a language model goes through a :class:`Redactor`: e-mail
addresses, phone numbers, card numbers and the customer's own details (names, addresses)
become placeholders such as ``[EMAIL_1]``, which the redactor puts back into the answer.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from bot.errors import BadRequestError
from bot.events import BotMessage, UserMessage

__all__ = [
    "Redactor",
    "contains_card_number",
    "install_log_redaction",
    "mask_card_numbers",
    "mask_personal_data",
    "personal_slot_values",
    "redact",
    "redact_bot_message",
    "redact_user_message",
]

_CARD_CANDIDATE = re.compile(r"(?<![\dA-Za-z-])(?<!\d\.)\d(?:[ -]?\d){12,18}(?![\dA-Za-z-])")
"""13 to 19 digits, not part of a longer number, a decimal fraction (0.7624881267547607) nor
a Latin identifier (the hex of ``549423961608470d8b0c…``)."""
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(
    r"(?<![\dA-Za-z+])(?:"
    r"(?:\+|00)?86[ -]?1[3-9]\d(?:[ -]?\d{4}){2}"  # Chinese mobile with country code
    r"|1[3-9]\d(?:[ -]?\d{4}){2}"  # Chinese mobile
    r"|0\d{2,3}-\d{7,8}"  # Chinese landline with area code
    r"|[48]00-?\d{3}-?\d{4}"  # Chinese service numbers
    r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international, with a leading +
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"  # North American
    r")(?![\dA-Za-z])"
)
_WEB_CHAT_KEY = re.compile(r"(?<![0-9A-Za-z])web-([0-9a-f]{6})[0-9a-f]{26}(?![0-9A-Za-z])")
"""A web chat visitor's id (``channels.webchat``): it is also the key to their history and live
stream, so a log line keeps only enough of it to tell conversations apart."""
EMAIL_MASK = "<email>"
PHONE_MASK = "<phone>"

T = TypeVar("T")


def mask_card_numbers(text: str) -> str:
    """Replace each payment card number in ``text`` with ``**** 1234`` (its last four digits).

    A run of 13 to 19 digits (spaces or dashes allowed between them) counts as a card number
    when it passes the Luhn check, so order numbers and phone numbers are left alone.
    """
    if _CARD_CANDIDATE.search(text) is None:  # the common case, at the regex engine's speed
        return text
    return _CARD_CANDIDATE.sub(_mask, text)


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds a payment card number in full."""
    return mask_card_numbers(text) != text


def mask_personal_data(text: str) -> str:
    """Card numbers, e-mail addresses, phone numbers and web chat keys in ``text`` masked: for
    log lines and the dashboard."""
    text = mask_card_numbers(text)
    if "web-" in text:
        text = _WEB_CHAT_KEY.sub(r"web-\1…", text)
    if "@" in text:
        text = _EMAIL.sub(EMAIL_MASK, text)
    if any(ch.isdigit() for ch in text):
        text = _PHONE.sub(PHONE_MASK, text)
    return text


def redact(value: T) -> T:
    """``value`` with card numbers masked in every string inside it (dict keys included, and
    the fields of records such as events)."""
    return _walk(value, mask_card_numbers) if _may_hold_card(value) else value


def redact_user_message(message: UserMessage) -> UserMessage:
    """The customer's message with card numbers masked in every field that is stored.

    Raises :class:`~bot.errors.BadRequestError` when an identifier holds a card number.
    """
    for name, value in (
        ("sender", message.sender_id),
        ("conversation id", message.conversation_id),
        ("message id", message.message_id),
    ):
        if value and contains_card_number(value):
            raise BadRequestError(f"the {name} must not contain a payment card number")
    try:
        return _redacted(message)
    except RecursionError:
        raise BadRequestError("the message is nested too deeply") from None


def _redacted(message: UserMessage) -> UserMessage:
    if not any(
        _may_hold_card(value)
        for value in (
            message.text,
            message.payload,
            message.metadata,
            message.profile,
            message.parse_data,
            message.attachments,
        )
    ):
        return message
    changes: dict[str, Any] = {}
    text = mask_card_numbers(message.text)
    if text != message.text:
        changes["text"] = text
    if message.payload:
        payload = mask_card_numbers(message.payload)
        if payload != message.payload:
            changes["payload"] = payload
    for name in ("metadata", "profile", "parse_data", "attachments"):
        value = getattr(message, name)
        if value:
            cleaned = _walk(value, mask_card_numbers)
            if cleaned != value:
                changes[name] = cleaned
    return dataclasses.replace(message, **changes) if changes else message


def redact_bot_message(message: BotMessage) -> BotMessage:
    """A bot (or human agent) message with card numbers masked in text, buttons and payloads."""
    if not _may_hold_card(message):
        return message
    cleaned = _walk(message, mask_card_numbers)
    return cleaned if cleaned != message else message


def install_log_redaction() -> None:
    """Mask card numbers, e-mail addresses and phone numbers in every log record from now on.

    Installs a record factory (so every logger and handler is covered, uvicorn's and the
    test runner's included): the message is formatted and masked as the record is made, and
    an exception's traceback text likewise. Calling it again changes nothing.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_kefu_redacting", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_log_record(record)
        return record

    redacting_factory._kefu_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


def redact_log_record(record: logging.LogRecord) -> None:
    """Mask personal data in ``record``'s message, arguments and traceback, in place."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: keep the template alone, never the arguments
        message, record.args = str(record.msg), None
    masked = mask_personal_data(message)
    if masked != message:
        _replace_message(record, masked)
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = mask_personal_data(_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = mask_personal_data(record.stack_info)


def _replace_message(record: logging.LogRecord, masked: str) -> None:
    """Mask the arguments one by one when that is enough (formatters such as uvicorn's
    access log read them), else keep the masked message alone."""
    if isinstance(record.args, tuple):
        args = tuple(mask_personal_data(a) if isinstance(a, str) else a for a in record.args)
        try:
            fits = str(record.msg) % args == masked
        except (TypeError, ValueError):
            fits = False
        if fits:
            record.args = args
            return
    record.msg, record.args = masked, None


_formatter = logging.Formatter()


_FIELDS: dict[type, tuple[str, ...] | None] = {}
_SCALARS = (type(None), bool, int, float)


def _fields(value: Any) -> tuple[str, ...] | None:
    """The field names of a record (an event, a button); None for anything else."""
    cls = type(value)
    if cls not in _FIELDS:
        is_record = dataclasses.is_dataclass(value) and not isinstance(value, type)
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(value)) if is_record else None
    return _FIELDS[cls]


def _may_hold_card(value: Any) -> bool:
    """Whether some string inside ``value`` has a run of 13 to 19 digits: a cheap look before
    the walk that rebuilds what it masks (most messages hold none)."""
    if isinstance(value, str):
        return _CARD_CANDIDATE.search(value) is not None
    if isinstance(value, _SCALARS):
        return False
    if isinstance(value, dict):
        return any(_may_hold_card(k) or _may_hold_card(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_may_hold_card(v) for v in value)
    names = _fields(value)
    return names is not None and any(_may_hold_card(getattr(value, n)) for n in names)


def _walk(value: Any, clean: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {_walk(k, clean): _walk(v, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, clean) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v, clean) for v in value)
    names = _fields(value)
    if names is None:
        return value
    changed = {
        name: _walk(getattr(value, name), clean)
        for name in names
        if _may_hold_card(getattr(value, name))
    }
    return dataclasses.replace(value, **changed) if changed else value


def _mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return f"**** {digits[-4:]}" if _luhn_valid(digits) else match.group()


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_MASKED_CARD = re.compile(r"\*{4} \d{4}")
_KINDS = ("EMAIL", "PHONE", "CARD", "PERSON")


class Redactor:
    """Replaces personal data in text that leaves kefu with placeholders, and restores them.

    E-mail addresses, phone numbers (Chinese mobiles and landlines, international numbers),
    card numbers (full or masked) and the ``personal`` values given (an order owner's name,
    address...) become ``[EMAIL_1]``, ``[PHONE_1]``, ``[CARD_1]``, ``[PERSON_1]``; the same value
    gets the same placeholder. :meth:`restore` puts the originals back into a model's answer.
    One redactor serves one conversation turn.
    """

    def __init__(self, personal: Iterable[str] = ()) -> None:
        self._personal = sorted(
            {value.strip() for value in personal if len(value.strip()) >= 3}, key=len, reverse=True
        )
        self._by_value: dict[str, str] = {}
        self._by_placeholder: dict[str, str] = {}

    def redact(self, text: str) -> str:
        """``text`` with every personal datum replaced by its placeholder."""
        text = _EMAIL.sub(lambda m: self._placeholder("EMAIL", m.group()), text)
        text = _PHONE.sub(lambda m: self._placeholder("PHONE", m.group()), text)
        text = mask_card_numbers(text)
        text = _MASKED_CARD.sub(lambda m: self._placeholder("CARD", m.group()), text)
        for value in self._personal:
            if value in text:
                text = text.replace(value, self._placeholder("PERSON", value))
        return text

    def restore(self, text: str) -> str:
        """``text`` with the placeholders this redactor made replaced by their values."""
        if "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(), m.group()), text)

    @property
    def placeholders(self) -> dict[str, str]:
        """Placeholder → original value, for what was redacted so far."""
        return dict(self._by_placeholder)

    def _placeholder(self, kind: str, value: str) -> str:
        found = self._by_value.get(value)
        if found is None:
            count = sum(1 for p in self._by_placeholder if p.startswith(f"[{kind}_"))
            found = f"[{kind}_{count + 1}]"
            self._by_value[value] = found
            self._by_placeholder[found] = value
        return found


_PLACEHOLDER = re.compile(rf"\[(?:{'|'.join(_KINDS)})_\d+\]")


PERSONAL_SLOT_WORDS = ("name", "address", "email", "phone", "contact", "mobile")
"""A slot whose name holds one of these words holds the customer's personal data."""


def personal_slot_values(slots: Mapping[str, Any]) -> list[str]:
    """The text values of slots holding the customer's personal data (an order owner's name,
    address, contact), for a :class:`Redactor` to replace wherever they appear."""
    return [
        value
        for name, value in slots.items()
        if isinstance(value, str) and any(word in name.lower() for word in PERSONAL_SLOT_WORDS)
    ]
