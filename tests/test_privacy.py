"""Card numbers never reach the store; other numbers are left alone."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.dialogue.turn import Turn
from bot.domain import Domain
from bot.errors import BadRequestError
from bot.events import Attachment, BotMessage, Button, UnknownEvent, UserMessage
from bot.flows.model import FlowsList
from bot.privacy import (
    contains_card_number,
    install_log_redaction,
    mask_card_numbers,
    mask_personal_data,
    redact_user_message,
)
from bot.state import ConversationState


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
        "confidence 0.7624881267547607",  # a Luhn-valid fraction is no card
        "notice:549423961608470d8b0cc232f81b8bff",  # Luhn-valid digits inside a hex id
        "",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_card_numbers(text) == text


# --- one redaction pass: every field of a message --------------------------------------------

CARD = "4111 1111 1111 1111"
OTHER_CARD = "5555-5555-5555-4444"


def test_every_stored_field_of_a_customer_message_is_masked() -> None:
    message = UserMessage(
        channel="telegram",
        conversation_id="telegram:5550123",
        sender_id="5550123",
        text=f"card {CARD}",
        payload=f"/SetSlots(email={CARD})",
        attachments=(Attachment(kind="document", name=f"{CARD}.pdf", data={"note": OTHER_CARD}),),
        message_id="77",
        metadata={"reply_to_text": f"was it {CARD}?", "deep": [{OTHER_CARD: [CARD]}]},
        parse_data={"entities": [{"entity": "email", "value": CARD}]},
    )
    cleaned = redact_user_message(message)
    assert not contains_card_number(repr(cleaned))
    assert cleaned.text == "card **** 1111"
    assert cleaned.payload == "/SetSlots(email=**** 1111)"
    assert cleaned.metadata["deep"] == [{"**** 4444": ["**** 1111"]}]
    assert cleaned.attachments[0].name == "**** 1111.pdf"
    clean = UserMessage(channel="rest", conversation_id="rest:a", sender_id="a", text="hi")
    assert redact_user_message(clean) is clean


@pytest.mark.parametrize(
    "identifiers",
    [
        {"sender_id": "4111111111111111", "conversation_id": "rest:4111111111111111"},
        {"message_id": "4111-1111-1111-1111"},
    ],
)
def test_identifiers_holding_a_card_number_are_refused(identifiers: dict[str, str]) -> None:
    fields = {"channel": "rest", "conversation_id": "rest:a", "sender_id": "a", **identifiers}
    with pytest.raises(BadRequestError, match="payment card number"):
        redact_user_message(UserMessage(**fields))


def test_a_too_deeply_nested_message_is_a_bad_request() -> None:
    deep: Any = CARD
    for _ in range(5000):
        deep = [deep]
    message = UserMessage(
        channel="rest", conversation_id="rest:a", sender_id="a", metadata={"x": deep}
    )
    with pytest.raises(BadRequestError, match="nested too deeply"):
        redact_user_message(message)


def test_bot_replies_and_slots_are_masked_before_they_are_kept() -> None:
    turn = Turn(
        state=ConversationState(conversation_id="rest:a", channel="rest", sender_id="a"),
        domain=Domain(),
        flows=FlowsList(flows={}),
    )
    turn.say(
        BotMessage(
            conversation_id="rest:a",
            text=f"I couldn't find order {CARD}",
            buttons=(Button(title=f"Use {CARD}", payload=f"/SetSlots(card={CARD})"),),
            custom={"cards": [OTHER_CARD]},
        )
    )
    turn.set_slot("note", {"said": [CARD]})
    assert not contains_card_number(repr(turn.messages) + repr(turn.events) + repr(turn.state))
    assert turn.messages[0].text == "I couldn't find order **** 1111"
    assert turn.state.slots["note"] == {"said": ["**** 1111"]}


# --- log lines ------------------------------------------------------------------------------------


def test_log_lines_never_show_cards_emails_or_phones(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # twice changes nothing
    log = logging.getLogger("kefu.test.privacy")
    with caplog.at_level(logging.INFO, logger="kefu.test.privacy"):
        log.info("turn failed in %s: %r", "rest:bob@example.com", {"text": CARD})
        log.warning("call +86 138 0013 8000 or 13800138000 about KF-10001 at 1764381234.5")
        try:
            raise ValueError(f"bad card {OTHER_CARD} from alice@example.com")
        except ValueError:
            log.exception("handling %s failed", "rest:13912345678")
    text = caplog.text
    assert not contains_card_number(text)
    assert "example.com" not in text and "138 0013" not in text
    assert "13800138000" not in text and "13912345678" not in text
    assert "rest:<email>" in text and "**** 1111" in text and "**** 4444" in text
    assert "KF-10001" in text and "1764381234.5" in text  # order numbers and times stay


def test_log_lines_keep_only_the_start_of_a_web_chat_key(caplog: pytest.LogCaptureFixture) -> None:
    """A web chat id is the key to the visitor's history: a log line must not hand it out."""
    install_log_redaction()
    key = "web-" + "0123456789abcdef" * 2
    with caplog.at_level(logging.INFO, logger="kefu.test.privacy"):
        logging.getLogger("kefu.test.privacy").info("turn failed in %s", f"webchat:{key}")
    assert key not in caplog.text
    assert "webchat:web-012345…" in caplog.text
    assert mask_personal_data("web-" + "0" * 33) == "web-" + "0" * 33  # not a key: left alone


def test_log_arguments_stay_arguments_when_masking_them_suffices() -> None:
    install_log_redaction()
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", "/?m=a@b.io"),
        None,
    )
    assert record.args == ("1.2.3.4", "GET", "/?m=<email>")
    assert record.getMessage() == '1.2.3.4 - "GET /?m=<email>"'


def test_an_event_an_action_returns_is_masked_too() -> None:
    turn = Turn(
        state=ConversationState(conversation_id="rest:a", channel="rest", sender_id="a"),
        domain=Domain(),
        flows=FlowsList(flows={}),
    )
    turn.emit(UnknownEvent(data={"event": "user_featurization", "text": CARD}))
    turn.emit(UserMessage(channel="rest", conversation_id="rest:a", sender_id="a", text=CARD))
    assert not contains_card_number(repr(turn.events))
