"""rasa-sdk actions of the reference shop: order verification and the order flows.

Refund actions live in ``actions/refunds.py``; payments, complaints, reviews, the newsletter
and product recommendations in ``actions/feedback.py``. Every action talks to the shop through
``actions.shop.shop()`` (the ``ShopService`` interface) and writes in the ``language`` slot's
language.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import (
    describe,
    language,
    masked,
    money,
    remember_verified,
    say,
    verified_order,
    verified_order_record,
)
from actions.shop import ShopError, shop

MAX_ORDER_ATTEMPTS = 2
"""Unknown order numbers before a human is offered (the customer may retry once)."""
MAX_CONTACT_ATTEMPTS = 2

Events = list[dict[str, Any]]


class ActionStartOrderTask(Action):
    """First step of every order flow: fresh attempt counters, and the order handed over by
    a flow that linked here (cancel → refund)."""

    def name(self) -> str:
        return "action_start_order_task"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        events = [
            SlotSet("order_attempts", 0.0),
            SlotSet("contact_attempts", 0.0),
            SlotSet("order_check", None),
        ]
        carried = tracker.get_slot("carry_order") or _order_referred_to(tracker)
        if carried:
            events += [SlotSet("order_id", carried), SlotSet("carry_order", None)]
        return events


_BACK_REFERENCE = re.compile(
    r"\b(it|this|that|this one|that one|the same)\b|它|这个订单|这个|这单|那个订单|那单|刚才",
    re.IGNORECASE,
)


def _order_referred_to(tracker: Tracker) -> str | None:
    """The order this conversation last verified, when the message points back at it
    ("cancel it", "退掉这个订单", a button) without naming an order of its own."""
    message = tracker.latest_message or {}
    if tracker.get_slot("order_id") or any(
        e.get("entity") == "order_id" for e in message.get("entities") or ()
    ):
        return None
    verified = [o for o in str(tracker.get_slot("verified_order") or "").split(",") if o]
    text = str(message.get("text") or "")
    if not verified or _OTHER_ORDER.search(text):
        return None
    # A suggestion button under an order's status ("Cancel it") is about that order too, and
    # so is the message right after the bot showed it ("but it never came, I want a refund").
    if _BACK_REFERENCE.search(text) or text.startswith("/") or _just_verified(tracker):
        return verified[-1]
    return None


_OTHER_ORDER = re.compile(
    r"\b(?:another|other|different|second|new) (?:order|parcel|package|one)\b|"
    r"另一个|另外一个|别的|其他订单|另一单",
    re.IGNORECASE,
)


def _just_verified(tracker: Tracker) -> bool:
    """Whether the bot's last turn verified an order: the customer is still on that order."""
    users = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            users += 1
            if users == 2:
                return False
        elif users == 1 and event.get("event") == "slot" and event.get("name") == "verified_order":
            return event.get("value") is not None
    return False


class ActionCarryOrder(Action):
    """Hand the current order over to the flow linked next."""

    def name(self) -> str:
        return "action_carry_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        return [SlotSet("carry_order", tracker.get_slot("order_id"))]


def _verified_events(tracker: Tracker, order: Any, contact: str | None) -> Events:
    lang = language(tracker)
    return [
        SlotSet("order_check", "verified"),
        SlotSet("order_status", order.status),
        SlotSet("order_summary", describe(order, lang)),
        *remember_verified(tracker, order, contact),
    ]


class ActionCheckOrder(Action):
    """Find the order; it is verified at once when this conversation already proved the order
    or a contact that owns it, or when the customer gave a matching contact up front."""

    def name(self) -> str:
        return "action_check_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        order = shop().find_order(str(tracker.get_slot("order_id") or ""))
        hidden = [SlotSet("order_status", None), SlotSet("order_summary", None)]
        if order is None:
            attempts = float(tracker.get_slot("order_attempts") or 0) + 1
            check = "retry" if attempts < MAX_ORDER_ATTEMPTS else "not_found"
            return [SlotSet("order_attempts", attempts), SlotSet("order_check", check), *hidden]
        events: Events = [SlotSet("order_id", order.id), SlotSet("order_attempts", 0.0)]
        if verified_order_matches(tracker, order.id):
            return events + _verified_events(tracker, order, None)
        known_contact = tracker.get_slot("verified_contact")
        if known_contact and order.belongs_to(str(known_contact)):
            return events + _verified_events(tracker, order, None)
        contact = tracker.get_slot("contact")
        if contact and order.belongs_to(str(contact)):
            return events + _verified_events(tracker, order, str(contact))
        return [
            *events,
            SlotSet("order_check", "needs_contact"),
            SlotSet("contact", None),
            SlotSet("contact_attempts", 0.0),
            *hidden,
        ]


def verified_order_matches(tracker: Tracker, order_id: str) -> bool:
    """True when the customer proved they own ``order_id`` this conversation."""
    known = str(tracker.get_slot("verified_order") or "").split(",")
    return order_id in known


class ActionVerifyContact(Action):
    """Check the e-mail address or phone number the customer gave against the order."""

    def name(self) -> str:
        return "action_verify_contact"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        order = shop().find_order(str(tracker.get_slot("order_id") or ""))
        contact = str(tracker.get_slot("contact") or "")
        if order is not None and contact and order.belongs_to(contact):
            return _verified_events(tracker, order, contact)
        attempts = float(tracker.get_slot("contact_attempts") or 0) + 1
        check = "contact_retry" if attempts < MAX_CONTACT_ATTEMPTS else "not_verified"
        return [
            SlotSet("contact_attempts", attempts),
            SlotSet("order_check", check),
            SlotSet("contact", None),
        ]


def _refused(dispatcher: CollectingDispatcher, lang: str, order_id: str, reason: str) -> None:
    """Tell the customer the shop refused a change, in their language."""
    if reason == "not_verified":
        dispatcher.utter_message(
            text=say(
                lang,
                "I need to verify order {id} before I can change it.",
                "需要先验证订单 {id}，才能进行修改。",
                id=order_id,
            )
        )
        return
    dispatcher.utter_message(
        text=say(
            lang,
            "Sorry, order {id} can no longer be changed: it is {status}.",
            "抱歉，订单 {id} 已无法修改：订单状态为{status}。",
            id=order_id,
            status=_STATUS_WORDS[lang].get(reason, reason),
        )
    )


_STATUS_WORDS = {
    "en": {
        "shipped": "already shipped",
        "delivered": "already delivered",
        "cancelled": "cancelled",
    },
    "zh": {
        "shipped": "已发货",
        "delivered": "已签收",
        "cancelled": "已取消",
        "not_found": "未找到",
    },
}


class OrderChangeAction(Action, ABC):
    """An action that changes the verified order: refuses politely when the order is not
    verified or the shop says the change is no longer possible."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order_id = verified_order(tracker)
        if order_id is None:
            _refused(dispatcher, lang, str(tracker.get_slot("order_id")), "not_verified")
            return []
        try:
            return self.change(dispatcher, tracker, lang, order_id)
        except ShopError as err:
            _refused(dispatcher, lang, order_id, err.reason)
            return []

    @abstractmethod
    def change(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, order_id: str
    ) -> Events:
        """Make the change through the shop (raising ``ShopError`` when it refuses)."""


class ActionCancelOrder(OrderChangeAction):
    """Cancel the verified order; the full amount is refunded."""

    def name(self) -> str:
        return "action_cancel_order"

    def change(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, order_id: str
    ) -> Events:
        order = shop().cancel_order(order_id)
        dispatcher.utter_message(
            text=say(
                lang,
                "Done: order {id} is cancelled. The full amount of {total} goes back to your "
                "original payment method within 3–5 working days.",
                "已为您取消订单 {id}。全额 {total} 将在 3–5 个工作日内原路退回。",
                id=order.id,
                total=money(order.total),
            )
        )
        return [SlotSet("order_status", order.status)]


class ActionChangeOrder(OrderChangeAction):
    """Record the change of items or quantities of the verified order."""

    def name(self) -> str:
        return "action_change_order"

    def change(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, order_id: str
    ) -> Events:
        shop().change_order(order_id, masked(tracker.get_slot("order_change")))
        dispatcher.utter_message(response="utter_order_changed")
        return []


class ActionChangeAddress(OrderChangeAction):
    """Change the delivery address of the verified order."""

    def name(self) -> str:
        return "action_change_address"

    def change(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, order_id: str
    ) -> Events:
        shop().change_address(order_id, masked(tracker.get_slot("new_address")))
        dispatcher.utter_message(response="utter_address_changed")
        return []


class ActionGetInvoice(Action):
    """The invoice link of the verified order (issued once it has shipped)."""

    def name(self) -> str:
        return "action_get_invoice"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order = verified_order_record(tracker)
        if order is None:
            _refused(dispatcher, lang, str(tracker.get_slot("order_id")), "not_verified")
            return []
        if order.status == "cancelled":
            text = say(
                lang,
                "Order {id} was cancelled, so no invoice was issued for it.",
                "订单 {id} 已取消，因此没有开具发票。",
                id=order.id,
            )
        elif order.status == "processing":
            text = say(
                lang,
                "The invoice for order {id} is issued when the order ships (expected soon); "
                "you'll get it by e-mail, or ask me again then.",
                "订单 {id} 的发票将在发货时开具，届时会发送到您的邮箱，您也可以到时再来问我。",
                id=order.id,
            )
        else:
            text = say(
                lang,
                "Here's the invoice for order {id} ({total}): {url}",
                "这是订单 {id}（{total}）的电子发票：{url}",
                id=order.id,
                total=money(order.total),
                url=f"https://kefu-shop.example/invoices/{order.id}.pdf",
            )
        dispatcher.utter_message(text=text)
        return []


class _MaskingValidation:
    """Keep free text the customer typed, with any card number masked (``**** 1234``)."""

    slot = ""

    def name(self) -> str:
        return f"validate_{self.slot}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        value = tracker.get_slot(self.slot)
        if value is None:
            return []
        clean = masked(value)
        return [SlotSet(self.slot, clean)] if clean != value else []


class ValidateOrderChange(_MaskingValidation, Action):
    """Masks card numbers in the ``order_change`` slot before it is kept."""

    slot = "order_change"


class ValidateNewAddress(_MaskingValidation, Action):
    """Masks card numbers in the ``new_address`` slot before it is kept."""

    slot = "new_address"


class ValidatePaymentDetails(_MaskingValidation, Action):
    """Masks card numbers in the ``payment_details`` slot before it is kept."""

    slot = "payment_details"


class ValidateComplaintDetails(_MaskingValidation, Action):
    """Masks card numbers in the ``complaint_details`` slot before it is kept."""

    slot = "complaint_details"


class ValidateReviewComment(_MaskingValidation, Action):
    """Masks card numbers in the ``review_comment`` slot before it is kept."""

    slot = "review_comment"
