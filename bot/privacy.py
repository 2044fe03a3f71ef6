"""Keeping customers' secrets out of the conversation store.

Payment card numbers are masked in every customer message before it is understood or stored,
so no slot, log line, event or agent ever sees one in full (only the last four digits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def mask_card_numbers(text: str) -> str:
    """Replace each payment card number in ``text`` with ``**** 1234`` (its last four digits).

    A run of 13 to 19 digits (spaces or dashes allowed between them) counts as a card number
    when it passes the Luhn check, so order numbers and phone numbers are left alone.
    """
    if not any(ch.isdigit() for ch in text):
        return text
    return _CARD_CANDIDATE.sub(_mask, text)


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


def redact(text: str) -> str:
    """``text`` with e-mails, phone numbers and card numbers replaced (for logs)."""
    return Redactor().redact(text)


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
