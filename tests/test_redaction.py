"""Personal data replaced by placeholders before text leaves kefu, and put back after."""

from __future__ import annotations

import pytest

from bot.privacy import Redactor, mask_personal_data, personal_slot_values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to li.na+shop@example.com.cn please", "write to [EMAIL_1] please"),
        ("邮箱bob@example.com谢谢", "邮箱[EMAIL_1]谢谢"),
        ("call 13812345678", "call [PHONE_1]"),
        ("电话13912345678，谢谢", "电话[PHONE_1]，谢谢"),
        ("mobile +86 138 1234 5678", "mobile [PHONE_1]"),
        ("mobile 0086-139-1234-5678", "mobile [PHONE_1]"),
        ("office 021-62345678", "office [PHONE_1]"),
        ("hotline 400-123-4567", "hotline [PHONE_1]"),
        ("in London +44 20 7946 0958", "in London [PHONE_1]"),
        ("US (415) 555-0100", "US [PHONE_1]"),
        ("card 4111 1111 1111 1111 expires", "card [CARD_1] expires"),
        ("card 4111-1111-1111-1111", "card [CARD_1]"),
        ("masked **** 1111 already", "masked [CARD_1] already"),
    ],
)
def test_emails_phones_and_cards_are_replaced(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order KF-10001 placed 2024-05-01",
        "3 items for 129.90 yuan",
        "tracking number SF1234567890",
        "version 1.2.3",
    ],
)
def test_order_numbers_dates_and_prices_stay(text: str) -> None:
    assert Redactor().redact(text) == text


def test_the_order_owners_details_are_replaced_and_everything_restored() -> None:
    slots = {"customer_name": "Mei Lin", "shipping_address": "88 Nanjing Road", "order_id": "KF-1"}
    redactor = Redactor(personal_slot_values(slots))
    text = "Mei Lin at 88 Nanjing Road, mei@example.com, 13812345678, again mei@example.com"
    redacted = redactor.redact(text)
    assert redacted == "[PERSON_2] at [PERSON_1], [EMAIL_1], [PHONE_1], again [EMAIL_1]"
    assert redactor.restore(redacted) == text
    assert redactor.restore("Hello [PERSON_2], we wrote to [EMAIL_1] ([EMAIL_9])") == (
        "Hello Mei Lin, we wrote to mei@example.com ([EMAIL_9])"
    )


def test_personal_slot_values_pick_names_addresses_and_contacts() -> None:
    slots = {"contact": "a@b.co", "full_name": "Wang Fang", "order_id": "KF-2", "age": 7}
    assert sorted(personal_slot_values(slots)) == ["Wang Fang", "a@b.co"]


def test_logs_use_the_same_patterns() -> None:
    assert mask_personal_data("from a@b.co, 021-62345678") == "from <email>, <phone>"
