"""Helpers shared by the reference shop's actions: language, money, order sentences, masking."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.shop import Order, normalize_order_id, shop
from bot.privacy import mask_card_numbers

_STATUS_TEXT = {
    "en": {
        "processing": "is being prepared and should ship soon (expected delivery {eta})",
        "shipped": "has shipped with {carrier}, tracking number {tracking}, arriving around {eta}",
        "delivered": "was delivered on {delivered}",
        "cancelled": "was cancelled",
    },
    "zh": {
        "processing": "正在备货，即将发货（预计 {eta} 送达）",
        "shipped": "已由{carrier}发出，运单号 {tracking}，预计 {eta} 送达",
        "delivered": "已于 {delivered} 签收",
        "cancelled": "已取消",
    },
}


_CARRIERS_ZH = {
    "SF Express": "顺丰速运",
    "JD Logistics": "京东物流",
    "YTO Express": "圆通速递",
    "China Post": "中国邮政",
    "ZTO Express": "中通快递",
    "STO Express": "申通快递",
    "Yunda Express": "韵达快递",
    "EMS": "EMS",
}
"""Carriers as Chinese customers know them; a carrier missing here keeps its own name."""


def carrier_name(carrier: str | None, lang: str) -> str:
    """The carrier's name in ``lang`` ("-" when the order has none yet)."""
    if not carrier:
        return "-"
    return _CARRIERS_ZH.get(carrier, carrier) if lang == "zh" else carrier


def language(tracker: Tracker) -> str:
    """The conversation's language, ``en`` or ``zh``."""
    return "zh" if str(tracker.get_slot("language") or "en").startswith("zh") else "en"


def money(amount: float) -> str:
    """An amount in yuan: no decimals when it is whole (``¥1,299``, ``¥12.50``)."""
    return f"¥{amount:,.0f}" if float(amount).is_integer() else f"¥{amount:,.2f}"


def describe(order: Order, lang: str) -> str:
    """One sentence about an order, in the customer's language."""
    texts = _STATUS_TEXT[lang]
    status = texts.get(order.status, order.status).format(
        eta=order.eta or "-",
        carrier=carrier_name(order.carrier, lang),
        tracking=order.tracking_number or "-",
        delivered=order.delivered_date.isoformat() if order.delivered_date else "-",
    )
    if lang == "zh":
        return f"您的订单 {order.id}（{'、'.join(order.item_names(lang))}）{status}。"
    return f"Your order {order.id} ({', '.join(order.item_names(lang))}) {status}."


def verified_order(tracker: Tracker) -> str | None:
    """The order in ``order_id`` if this conversation verified it, else None."""
    order_id = tracker.get_slot("order_id")
    verified = tracker.get_slot("verified_order")
    if not order_id or not verified:
        return None
    wanted = normalize_order_id(str(order_id))
    return wanted if wanted in str(verified).split(",") else None


def verified_order_record(tracker: Tracker) -> Order | None:
    """The shop's record of the order this conversation verified, or None."""
    order_id = verified_order(tracker)
    return shop().find_order(order_id) if order_id else None


def remember_verified(tracker: Tracker, order: Order, contact: str | None) -> list[dict[str, Any]]:
    """Events that mark ``order`` (and the contact that proved it) verified for the session."""
    known = [o for o in str(tracker.get_slot("verified_order") or "").split(",") if o]
    if order.id not in known:
        known.append(order.id)
    events = [SlotSet("verified_order", ",".join(known))]
    if contact:
        events.append(SlotSet("verified_contact", contact))
    return events


def masked(text: Any) -> str:
    """``text`` (anything, None as empty) with card numbers masked."""
    return mask_card_numbers(str(text or ""))


def say(lang: str, en: str, zh: str, **values: Any) -> str:
    """The English or Chinese wording for ``lang``, filled with ``values``."""
    return (zh if lang == "zh" else en).format(**values)
