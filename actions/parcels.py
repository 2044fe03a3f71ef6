"""Actions of the missing-parcel flow: where the parcel is by the shop's records, and a
lost-parcel claim with the carrier when it shows as delivered (or is late) but never came."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import carrier_name, language, say, verified_order_record
from actions.shop import Order, shop

Events = list[dict[str, Any]]


def parcel_state(order: Order, today: date) -> str:
    """``delivered``, ``late`` (shipped, its expected date passed), ``on_the_way``,
    ``not_shipped`` or ``cancelled``."""
    if order.status == "delivered":
        return "delivered"
    if order.status == "shipped":
        late = order.eta is not None and date.fromisoformat(order.eta) < today
        return "late" if late else "on_the_way"
    return "cancelled" if order.status == "cancelled" else "not_shipped"


_STATE_TEXT = {
    "delivered": (
        "By {carrier}'s tracking ({tracking}), order {order} was delivered on {delivered}. "
        "Parcels marked delivered are sometimes handed to a neighbour, left at reception or in "
        "a parcel locker, so please have a look there first.",
        "根据{carrier}的物流信息（运单号 {tracking}），订单 {order} 已于 {delivered} 签收。"
        "显示签收的包裹有时会放在邻居、前台、门卫或快递柜处，请先在这些地方找一找。",
    ),
    "late": (
        "Order {order} shipped with {carrier} (tracking number {tracking}) and was due around "
        "{eta}, so it is late.",
        "订单 {order} 已由{carrier}发出（运单号 {tracking}），原预计 {eta} 送达，现已延误。",
    ),
    "on_the_way": (
        "Order {order} is on its way with {carrier} (tracking number {tracking}) and should "
        "arrive around {eta}. If it hasn't come by then, tell me and I'll open a claim with the "
        "carrier.",
        "订单 {order} 正在由{carrier}配送（运单号 {tracking}），预计 {eta} 送达。如果到时还没"
        "收到，请告诉我，我会为您向快递公司发起查件。",
    ),
    "not_shipped": (
        "Order {order} hasn't shipped yet: it is being prepared and should arrive around {eta}.",
        "订单 {order} 还没有发货，正在备货中，预计 {eta} 送达。",
    ),
    "cancelled": (
        "Order {order} was cancelled, so nothing is on its way.",
        "订单 {order} 已取消，不会再发货。",
    ),
}


class ActionCheckParcel(Action):
    """Say where the verified order's parcel is and set ``parcel_state``."""

    def name(self) -> str:
        return "action_check_parcel"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order = verified_order_record(tracker)
        if order is None:
            return [SlotSet("parcel_state", None)]
        state = parcel_state(order, shop().today())
        en, zh = _STATE_TEXT[state]
        dispatcher.utter_message(
            text=say(
                lang,
                en,
                zh,
                order=order.id,
                carrier=carrier_name(order.carrier, lang),
                tracking=order.tracking_number or "-",
                delivered=order.delivered_date.isoformat() if order.delivered_date else "-",
                eta=order.eta or "-",
            )
        )
        return [SlotSet("parcel_state", state)]


class ActionOpenParcelClaim(Action):
    """Open a lost-parcel claim for the verified order and say what happens next."""

    def name(self) -> str:
        return "action_open_parcel_claim"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        order = verified_order_record(tracker)
        if order is None:
            dispatcher.utter_message(
                text=say(
                    lang,
                    "Sorry, I couldn't open a claim for this order. Type 'human' and a colleague "
                    "will look into it.",
                    "抱歉，无法为这个订单发起查件。请输入“人工”，由客服为您处理。",
                )
            )
            return []
        reference = shop().record_parcel_claim(order.id)
        dispatcher.utter_message(
            text=say(
                lang,
                "I've opened lost-parcel claim {ref} for order {order}. We'll trace the parcel "
                "with {carrier} and e-mail you within 2 working days. If it can't be found, we "
                "send you a replacement or refund you in full, as you prefer; you don't need to "
                "start a return.",
                "已为订单 {order} 发起丢件查询，编号 {ref}。我们会联系{carrier}核查，"
                "并在 2 个工作日内通过邮件回复您。如果包裹确实丢失，我们将为您补发或全额退款，"
                "由您选择，无需申请退货。",
                ref=reference,
                order=order.id,
                carrier=carrier_name(order.carrier, lang),
            )
        )
        return [SlotSet("parcel_claim_reference", reference)]
