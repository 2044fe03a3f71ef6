"""Keeping customers' secrets out of the conversation store.

Payment card numbers are masked in every customer message before it is understood or stored,
so no slot, log line, event or agent ever sees one in full (only the last four digits).
"""

from __future__ import annotations

import re

_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w-])\+?\d(?:[ ()-]?\d){6,14}(?![\w-])")


def mask_personal_data(text: str) -> str:
    """``text`` for staff to read: card numbers, e-mail addresses and phone numbers masked.

    E-mails become ``a***@example.com``, phone numbers keep their last two digits; order
    numbers with letters (``KF-10001``) are left alone.
    """
    text = _EMAIL.sub(_mask_email, mask_card_numbers(text))
    return _PHONE.sub(_mask_phone, text)


def _mask_email(match: re.Match[str]) -> str:
    local, _, domain = match.group().partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return f"***{digits[-2:]}"


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
