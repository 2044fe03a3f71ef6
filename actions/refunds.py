"""Refund actions: eligibility, the request itself, and a refund's status."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import language, money, say, verified_order
from actions.shop import Refund, ShopError, shop

Events = list[dict[str, Any]]


class ActionCheckRefundEligibility(Action):
    """``refund_eligibility``: eligible, or why not (policy: 30 days from delivery)."""

    def name(self) -> str:
        return "action_check_refund_eligibility"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        order_id = verified_order(tracker)
        eligibility = shop().refund_eligibility(order_id) if order_id else "not_found"
        return [SlotSet("refund_eligibility", eligibility)]


_REASONS = {
    "en": {
        "damaged": "damaged or faulty",
        "wrong_item": "wrong item",
        "not_as_described": "not as described",
        "changed_mind": "changed my mind",
        "other": "other",
    },
    "zh": {
        "damaged": "商品损坏或故障",
        "wrong_item": "发错货",
        "not_as_described": "与描述不符",
        "changed_mind": "不想要了",
        "other": "其他原因",
    },
}


class ActionRequestRefund(Action):
    """Request the refund of the verified, eligible order."""

    def name(self) -> str:
        return "action_request_refund"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order_id = verified_order(tracker)
        reason = str(tracker.get_slot("refund_reason") or "other")
        try:
            if order_id is None:
                raise ShopError("not_verified")
            refund = shop().request_refund(order_id, reason)
        except ShopError:
            dispatcher.utter_message(
                text=say(
                    lang,
                    "Sorry, I couldn't request a refund for this order. Type 'human' and a "
                    "colleague will look into it.",
                    "抱歉，无法为这个订单申请退款。请输入“人工”，由客服为您处理。",
                )
            )
            return []
        free_return = reason in ("damaged", "wrong_item", "not_as_described")
        shipping = say(
            lang,
            "We pay for the return (prepaid label in the e-mail) and refund your shipping cost."
            if free_return
            else "Return shipping is at your cost.",
            "退货运费由我们承担（邮件中附预付运单），原运费一并退还。"
            if free_return
            else "退货运费由您承担。",
        )
        dispatcher.utter_message(
            text=say(
                lang,
                "Your refund request {id} for order {order} ({amount}, reason: {reason}) is "
                "registered. We've e-mailed you the return address: please send the item back "
                "within 7 days. {shipping} Once we've received and checked it, the refund "
                "reaches your original payment method within 3–5 working days.",
                "已为订单 {order} 提交退款申请 {id}（{amount}，原因：{reason}）。退货地址已发送到"
                "您的邮箱，请在 7 天内寄回商品。{shipping}我们收到并检查后，退款将在 3–5 个"
                "工作日内原路退回。",
                id=refund.id,
                order=refund.order_id,
                amount=money(refund.amount),
                reason=_REASONS[lang].get(reason, reason),
                shipping=shipping,
            )
        )
        return []


def refund_text(refund: Refund | None, order_id: str, lang: str) -> str:
    """A refund's status in a sentence."""
    if refund is None:
        return say(
            lang,
            "There's no refund for order {order}. If you'd like one, say 'I want a refund'.",
            "订单 {order} 没有退款记录。如需退款，请说“我要退款”。",
            order=order_id,
        )
    values = {
        "id": refund.id,
        "order": refund.order_id,
        "amount": money(refund.amount),
        "requested": refund.requested.isoformat(),
        "completed": refund.completed.isoformat() if refund.completed else "-",
    }
    if refund.status == "completed":
        return say(
            lang,
            "The refund {id} of {amount} for order {order} was completed on {completed}; the "
            "money went back to your original payment method (your bank may take a few more "
            "days to show it).",
            "订单 {order} 的退款 {id}（{amount}）已于 {completed} 完成，款项已原路退回"
            "（银行入账可能还需几天）。",
            **values,
        )
    if refund.status == "processing":
        return say(
            lang,
            "The refund {id} of {amount} for order {order} (requested on {requested}) is being "
            "processed and should reach your original payment method within 3–5 working days.",
            "订单 {order} 的退款 {id}（{amount}，{requested} 申请）正在处理中，预计 3–5 个工作日内"
            "原路退回。",
            **values,
        )
    return say(
        lang,
        "The refund request {id} of {amount} for order {order} was registered on {requested}. "
        "We'll refund you once the returned item has arrived and been checked.",
        "订单 {order} 的退款申请 {id}（{amount}）已于 {requested} 登记。我们收到并检查退货后即为"
        "您退款。",
        **values,
    )


class ActionRefundStatus(Action):
    """Say where the refund of the verified order stands."""

    def name(self) -> str:
        return "action_refund_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order_id = verified_order(tracker)
        if order_id is None:
            dispatcher.utter_message(
                text=say(lang, "I need to verify the order first.", "需要先验证订单。")
            )
            return []
        dispatcher.utter_message(text=refund_text(shop().refund_status(order_id), order_id, lang))
        return []
