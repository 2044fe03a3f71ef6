"""Card numbers never reach the store; other numbers are left alone."""

from __future__ import annotations

import pytest

from bot.privacy import mask_card_numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card 4111 1111 1111 1111 was charged", "my card **** 1111 was charged"),
        ("4111-1111-1111-1111", "**** 1111"),
        ("卡号5555555555554444扣了两次", "卡号**** 4444扣了两次"),
        ("amex 378282246310005.", "amex **** 0005."),
        ("卡号6222021234567890128有问题", "卡号**** 0128有问题"),
    ],
)
def test_card_numbers_are_masked(text: str, expected: str) -> None:
    assert mask_card_numbers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order KF-10001",
        "call me on 13800138000",
        "4111 1111 1111 1112",  # fails the Luhn check
        "tracking SF1234567890",
        "2026-11-22 12:00",
        "",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_card_numbers(text) == text
