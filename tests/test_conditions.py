"""The flow condition language: slots./context. access, operators, literals, errors."""

from __future__ import annotations

from typing import Any

import pytest

from bot.flows.conditions import Condition, compile_condition

SLOTS: dict[str, Any] = {
    "quantity": 3,
    "price": 19.5,
    "order_status": "shipped",
    "is_gift": True,
    "express": False,
    "order_id": None,
    "items": ["shoes", "hat"],
    "email": "ada@example.com",
    "note": "Hello World",
}
CONTEXT: dict[str, Any] = {
    "collect": "order_id",
    "reason": "cannot_handle_no_relevant_answer",
    "step": 2,
}


def holds(
    source: str | bool, slots: dict[str, Any] | None = None, context: dict[str, Any] | None = None
) -> bool:
    condition = compile_condition(source)
    assert condition.is_valid, condition.errors
    return condition.evaluate(
        SLOTS if slots is None else slots, CONTEXT if context is None else context
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # comparisons
        ("slots.quantity = 3", True),
        ("slots.quantity = 4", False),
        ("slots.quantity != 3", False),
        ("slots.quantity != 4", True),
        ("slots.quantity > 2", True),
        ("slots.quantity > 3", False),
        ("slots.quantity >= 3", True),
        ("slots.quantity >= 4", False),
        ("slots.quantity < 3", False),
        ("slots.quantity < 4", True),
        ("slots.quantity <= 3", True),
        ("slots.quantity <= 2", False),
        ("slots.price > 19", True),
        ("slots.quantity = 3.0", True),
        ('slots.order_status = "shipped"', True),
        ("slots.order_status = 'shipped'", True),
        ('slots.order_status != "pending"', True),
        ('slots.quantity = "3"', False),
        # is / is not
        ('slots.order_status is "shipped"', True),
        ('slots.order_status is not "shipped"', False),
        ('slots.order_status is not "pending"', True),
        ("slots.order_id is null", True),
        ("slots.order_id is not null", False),
        ("slots.quantity is not null", True),
        ("slots.order_id = null", True),
        ("slots.is_gift is true", True),
        ("slots.express is false", True),
        ("slots.is_gift = true", True),
        ("slots.express = false", True),
        # truthiness of a bare slot
        ("slots.is_gift", True),
        ("slots.express", False),
        ("slots.order_id", False),
        # contains / matches
        ('slots.items contains "shoes"', True),
        ('slots.items contains "socks"', False),
        ('slots.note contains "World"', True),
        ('slots.order_id contains "x"', False),
        ('slots.email matches "^.+@.+\\.com$"', True),
        ('slots.email matches "^bob"', False),
        ('slots.order_status matches "^ship"', True),
        # and / or / not / parentheses
        ('slots.quantity > 1 and slots.order_status = "shipped"', True),
        ("slots.quantity > 1 and slots.express", False),
        ("slots.quantity > 5 or slots.is_gift", True),
        ("slots.quantity > 5 or slots.express", False),
        ("not slots.express", True),
        ("not slots.is_gift", False),
        ("not (slots.quantity > 5 or slots.express)", True),
        ("(slots.quantity = 3 or slots.express) and not slots.order_id", True),
        ("slots.quantity = 3 or slots.express and slots.order_id", True),  # and binds tighter
        ("(slots.quantity = 3 or slots.express) and slots.order_id", False),
        # context.
        ('context.collect = "order_id"', True),
        ("context.collect is not null", True),
        ('context.reason is "cannot_handle_no_relevant_answer"', True),
        ('context.reason is not "cannot_handle_default"', True),
        ("context.step >= 2", True),
        # literals
        ("true", True),
        ("false", False),
        ("null", False),
        ("slots.is_gift and true", True),
        ("slots.is_gift and false", False),
    ],
)
def test_condition_evaluates(source: str, expected: bool) -> None:
    assert holds(source) is expected


def test_unset_domain_slots_are_null_but_unknown_keys_are_undefined() -> None:
    # The executor passes every domain slot (None when unset), so `is null` works for them.
    assert holds("slots.order_id is null") is True
    # A key that is not there at all is pypred's "undefined": neither null nor truthy.
    assert holds("slots.no_such_slot") is False
    assert holds("context.no_such_key is not null") is True


def test_empty_slots_and_context() -> None:
    assert compile_condition("slots.quantity = 3").evaluate({}) is False
    assert compile_condition("not slots.quantity").evaluate({}, None) is True


@pytest.mark.parametrize(
    "source",
    [
        "slots.quantity = = 3",
        "slots.quantity >",
        "",
        "   ",
        "and",
        "(slots.quantity",
        "slots.quantity = 3)",
        "slots.a === 3",
    ],
)
def test_invalid_conditions_report_errors_and_never_hold(source: str) -> None:
    condition = compile_condition(source)
    assert condition.is_valid is False
    assert condition.errors and all(isinstance(e, str) and e for e in condition.errors)
    assert condition.evaluate(SLOTS, CONTEXT) is False
    assert condition.evaluate({"quantity": 3}) is False


def test_empty_condition_message() -> None:
    assert compile_condition("  ").errors == ["the condition is empty"]


@pytest.mark.parametrize("value", [True, False])
def test_bool_constants(value: bool) -> None:
    condition = compile_condition(value)
    assert condition.is_valid and condition.errors == []
    assert condition.evaluate({}) is value
    assert condition.evaluate(SLOTS, CONTEXT) is value
    assert Condition(value).source is value


def test_conditions_are_cached() -> None:
    assert compile_condition("slots.quantity > 1") is compile_condition("slots.quantity > 1")
    assert compile_condition(True) is compile_condition(True)


def test_evaluation_does_not_mutate_inputs() -> None:
    slots = {"quantity": 3}
    context = {"collect": "x"}
    compile_condition('slots.quantity = 3 and context.collect = "x"').evaluate(slots, context)
    assert slots == {"quantity": 3} and context == {"collect": "x"}


@pytest.mark.parametrize("slots", [{"quantity": None}, {"quantity": "many"}, {}])
def test_ordering_against_null_or_text_is_false_not_an_error(  # an unset slot must not crash a turn
    slots: dict[str, Any],
) -> None:
    assert compile_condition("slots.quantity > 3").evaluate(slots) is False
