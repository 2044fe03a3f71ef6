"""rasa-sdk actions of the reference shop."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.shop import Order, shop

_STATUS_TEXT = {
    "en": {
        "processing": "is being prepared and should ship soon (expected {eta})",
        "shipped": "has shipped with {carrier}, tracking number {tracking}, arriving around {eta}",
        "delivered": "was delivered",
        "cancelled": "was cancelled",
    },
    "zh": {
        "processing": "正在备货，预计很快发货（预计 {eta}）",
        "shipped": "已由{carrier}发出，运单号 {tracking}，预计 {eta} 送达",
        "delivered": "已签收",
        "cancelled": "已取消",
    },
}


def describe(order: Order, language: str) -> str:
    """One sentence about an order, in the customer's language."""
    texts = _STATUS_TEXT["zh" if language == "zh" else "en"]
    status = texts.get(order.status, order.status).format(
        eta=order.eta or "-", carrier=order.carrier or "-", tracking=order.tracking_number or "-"
    )
    items = "、".join(order.items) if language == "zh" else ", ".join(order.items)
    if language == "zh":
        return f"您的订单 {order.id}（{items}）{status}。"
    return f"Your order {order.id} ({items}) {status}."


class ActionLookupOrder(Action):
    """Look the order up and check the e-mail before revealing anything about it."""

    def name(self) -> str:
        return "action_lookup_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        order = shop().find_order(str(tracker.get_slot("order_id") or ""))
        if order is None:
            return [SlotSet("order_status", "not_found")]
        email = str(tracker.get_slot("email") or "").strip().lower()
        if email != order.email.lower():
            return [SlotSet("order_status", "not_verified")]
        language = str(tracker.get_slot("language") or "en")
        return [
            SlotSet("order_status", order.status),
            SlotSet("order_summary", describe(order, language)),
        ]
