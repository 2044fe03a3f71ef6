"""The reference shop's demo service and custom actions, without the dialogue engine."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions.actions as order_actions
import actions.feedback as feedback_actions
import actions.parcels as parcel_actions
import actions.refunds as refund_actions
import actions.shop as shop_module
from actions.actions import (
    ActionCancelOrder,
    ActionCheckOrder,
    ActionVerifyContact,
    ValidatePaymentDetails,
)
from actions.feedback import ActionRecommendProducts, ActionRecordPaymentIssue
from actions.parcels import ActionCheckParcel, ActionOpenParcelClaim, parcel_state
from actions.refunds import ActionRefundStatus
from actions.shop import DemoShop, ShopError, normalize_order_id


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> DemoShop:
    """A fresh demo shop that the actions use for this test only."""
    fresh = DemoShop()
    # module objects, not dotted names: other tests load other projects' ``actions`` packages
    for module in (shop_module, order_actions, refund_actions, feedback_actions, parcel_actions):
        monkeypatch.setattr(module, "shop", lambda: fresh)
    return fresh


def run(action: Any, **slots: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tracker = Tracker("test", slots, {}, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return events, dispatcher.messages


def slots_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


# --- the service -------------------------------------------------------------------------------


def test_order_numbers_are_normalized() -> None:
    assert normalize_order_id("kf10001") == normalize_order_id(" KF-10001 ") == "KF-10001"
    assert normalize_order_id("KF 10001") == "KF-10001"


def test_catalogue_has_enough_products_in_categories() -> None:
    products = DemoShop().products()
    assert 15 <= len(products) <= 20
    assert len({p.category for p in products}) in (4, 5)
    assert [p.price for p in products] == sorted(p.price for p in products)


def test_contacts_match_by_email_or_phone() -> None:
    order = DemoShop().find_order("KF-10007")
    assert order is not None
    assert order.belongs_to("GRACE@example.com")
    assert order.belongs_to("138 0013 8000")
    assert order.belongs_to("+86 13800138000")
    assert not order.belongs_to("bob@example.com")
    assert not order.belongs_to("8000")


def test_cancel_only_before_shipping_and_in_memory(tmp_path: Path) -> None:
    data = tmp_path / "shop.json"
    data.write_text(shop_module.DATA_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    before = data.read_text(encoding="utf-8")
    shop = DemoShop(data)
    assert shop.cancel_order("KF-10002").status == "cancelled"
    assert shop.refund_status("KF-10002") is not None
    with pytest.raises(ShopError) as shipped:
        shop.cancel_order("KF-10001")
    assert shipped.value.reason == "shipped"
    with pytest.raises(ShopError):
        shop.cancel_order("KF-10002")
    assert data.read_text(encoding="utf-8") == before
    assert DemoShop(data).find_order("KF-10002").status == "processing"  # type: ignore[union-attr]


def test_address_and_items_change_only_before_shipping() -> None:
    shop = DemoShop()
    assert shop.change_address("KF-10009", " 1 New Road ").address == "1 New Road"
    assert shop.change_order("KF-10009", "2 hoodies").notes == ("2 hoodies",)
    for change in (shop.change_address, shop.change_order):
        with pytest.raises(ShopError):
            change("KF-10003", "x")


def test_refund_eligibility_follows_the_return_window() -> None:
    shop = DemoShop()
    assert shop.refund_eligibility("KF-10003") == "eligible"
    assert shop.refund_eligibility("KF-10005") == "outside_window"
    assert shop.refund_eligibility("KF-10006") == "already_refunded"
    assert shop.refund_eligibility("KF-10001") == "not_delivered"
    assert shop.refund_eligibility("KF-10002") == "processing"
    assert shop.refund_eligibility("KF-00000") == "not_found"
    refund = shop.request_refund("KF-10003", "damaged")
    assert refund.amount == 239.0 and refund.status == "requested"
    assert shop.refund_eligibility("KF-10003") == "already_refunded"
    with pytest.raises(ShopError):
        shop.request_refund("KF-10005", "changed_mind")


def test_products_by_category_and_budget() -> None:
    shop = DemoShop()
    assert [p.name for p in shop.products("electronics", 300)] == [
        "Power bank 10000 mAh",
        "Wireless earbuds",
    ]
    assert shop.products("beauty", 10) == []


def test_records_and_subscriptions() -> None:
    shop = DemoShop()
    assert shop.record_complaint("late").startswith("CP-")
    assert shop.record_payment_issue("declined", "x", None).startswith("PY-")
    assert shop.subscribe("A@example.com") is True
    assert shop.subscribe("a@example.com") is False


def test_data_file_is_valid_json() -> None:
    data = json.loads(shop_module.DATA_FILE.read_text(encoding="utf-8"))
    statuses = {o["status"] for o in data["orders"]}
    assert statuses == {"processing", "shipped", "delivered", "cancelled"}


# --- the actions --------------------------------------------------------------------------------


def test_check_order_asks_for_contact_and_hides_details(demo: DemoShop) -> None:
    events, messages = run(ActionCheckOrder(), order_id="kf10002")
    slots = slots_of(events)
    assert slots["order_id"] == "KF-10002"
    assert slots["order_check"] == "needs_contact"
    assert slots["order_summary"] is None
    assert messages == []


def test_unknown_order_may_be_retried_once(demo: DemoShop) -> None:
    first = slots_of(run(ActionCheckOrder(), order_id="KF-99999")[0])
    assert first["order_check"] == "retry"
    second = slots_of(run(ActionCheckOrder(), order_id="KF-99998", order_attempts=1.0)[0])
    assert second["order_check"] == "not_found"


def test_verified_contact_verifies_other_orders_of_the_same_customer(demo: DemoShop) -> None:
    events, _ = run(ActionCheckOrder(), order_id="KF-10002", verified_contact="bob@example.com")
    assert slots_of(events)["order_check"] == "verified"


def test_verify_contact_in_chinese(demo: DemoShop) -> None:
    events, _ = run(
        ActionVerifyContact(), order_id="KF-10008", contact="13900000008", language="zh"
    )
    slots = slots_of(events)
    assert slots["order_check"] == "verified"
    assert slots["verified_order"] == "KF-10008"
    assert "电热水壶" in slots["order_summary"]
    wrong = slots_of(run(ActionVerifyContact(), order_id="KF-10008", contact="x@example.com")[0])
    assert wrong["order_check"] == "contact_retry"
    assert wrong["contact"] is None


def test_cancel_requires_verification(demo: DemoShop) -> None:
    _, messages = run(ActionCancelOrder(), order_id="KF-10002", verified_order="KF-10001")
    assert "verify" in messages[0]["text"]
    assert demo.find_order("KF-10002").status == "processing"  # type: ignore[union-attr]
    _, messages = run(ActionCancelOrder(), order_id="KF-10002", verified_order="KF-10002")
    assert "¥217" in messages[0]["text"]
    assert demo.find_order("KF-10002").status == "cancelled"  # type: ignore[union-attr]


def test_refund_status_in_both_languages(demo: DemoShop) -> None:
    _, en = run(ActionRefundStatus(), order_id="KF-10004", verified_order="KF-10004")
    _, zh = run(ActionRefundStatus(), order_id="KF-10004", verified_order="KF-10004", language="zh")
    assert "completed on 2026-11-04" in en[0]["text"]
    assert "已于 2026-11-04 完成" in zh[0]["text"]


def test_payment_details_never_keep_a_card_number(demo: DemoShop) -> None:
    text = "charged with 5500 0000 0000 0004 twice"
    events, _ = run(ValidatePaymentDetails(), payment_details=text)
    assert slots_of(events)["payment_details"] == "charged with **** 0004 twice"
    events, messages = run(
        ActionRecordPaymentIssue(), payment_problem="charged_twice", payment_details=text
    )
    assert "5500" not in messages[0]["text"]
    assert "5500" not in str(slots_of(events)["payment_details"])


def test_recommendations_fall_back_to_the_cheapest(demo: DemoShop) -> None:
    _, messages = run(ActionRecommendProducts(), product_category="home", budget=200.0)
    assert "Electric kettle" in messages[0]["text"]
    assert "Tea set" not in messages[0]["text"]
    _, messages = run(
        ActionRecommendProducts(), product_category="sports", budget=50.0, language="zh"
    )
    assert "瑜伽垫" in messages[0]["text"]


# --- parcels that never came ---------------------------------------------------------------------


def test_parcel_state_by_status_and_expected_date() -> None:
    shop = DemoShop()
    states = {
        order_id: parcel_state(order, shop.today())
        for order_id in ("KF-10003", "KF-10001", "KF-10002", "KF-10004")
        if (order := shop.find_order(order_id)) is not None
    }
    assert states == {
        "KF-10003": "delivered",
        "KF-10001": "on_the_way",
        "KF-10002": "not_shipped",
        "KF-10004": "cancelled",
    }
    shipped = shop.find_order("KF-10001")
    assert shipped is not None and shipped.eta is not None
    later = date.fromisoformat(shipped.eta) + timedelta(days=1)
    assert parcel_state(shipped, later) == "late"


def test_a_delivered_parcel_shows_its_tracking_in_chinese(demo: DemoShop) -> None:
    events, messages = run(
        ActionCheckParcel(), order_id="KF-10013", verified_order="KF-10013", language="zh"
    )
    assert slots_of(events) == {"parcel_state": "delivered"}
    assert "顺丰速运" in messages[0]["text"] and "SF2223334445" in messages[0]["text"]


def test_a_parcel_claim_is_opened_once_per_order(demo: DemoShop) -> None:
    first, said = run(ActionOpenParcelClaim(), order_id="KF-10003", verified_order="KF-10003")
    again, _ = run(ActionOpenParcelClaim(), order_id="KF-10003", verified_order="KF-10003")
    reference = slots_of(first)["parcel_claim_reference"]
    assert reference.startswith("LP-") and slots_of(again)["parcel_claim_reference"] == reference
    assert "China Post" in said[0]["text"] and "refund you in full" in said[0]["text"]


def test_no_claim_for_an_order_not_verified(demo: DemoShop) -> None:
    events, said = run(ActionOpenParcelClaim(), order_id="KF-10003")
    assert events == [] and "human" in said[0]["text"]
