"""Actions of the payment, complaint, review, newsletter and product flows."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import language, masked, money, say
from actions.shop import normalize_order_id, shop

Events = list[dict[str, Any]]

_PAYMENT_ADVICE = {
    "charged_twice": (
        "Sometimes a second charge is only a temporary hold that your bank releases by itself "
        "within a few days. A real duplicate charge for the same order is refunded to your "
        "original payment method within 3–5 working days of our confirming it.",
        "有时第二笔扣款只是银行的临时冻结，几天内会自动解冻。如确认同一订单被重复扣款，我们会在"
        "核实后 3–5 个工作日内原路退回。",
    ),
    "declined": (
        "When a payment is declined no money is taken. Please check the card details and "
        "limit and that your bank allows online payments, or pay with Alipay, WeChat Pay, "
        "PayPal or another card.",
        "支付失败时不会扣款。请检查卡片信息、额度以及银行是否开通了网上支付，或改用支付宝、"
        "微信支付、PayPal 或其他银行卡付款。",
    ),
    "other": (
        "Our payments team will look into it and get back to you within 1 working day.",
        "支付团队会进行核查，并在 1 个工作日内回复您。",
    ),
}


class ActionRecordPaymentIssue(Action):
    """Record the payment problem (card numbers masked) and say what happens next."""

    def name(self) -> str:
        return "action_record_payment_issue"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        problem = str(tracker.get_slot("payment_problem") or "other")
        details = masked(tracker.get_slot("payment_details"))
        raw_order = tracker.get_slot("order_id")
        order_id = normalize_order_id(str(raw_order)) if raw_order else None
        reference = shop().record_payment_issue(problem, details, order_id)
        en, zh = _PAYMENT_ADVICE.get(problem, _PAYMENT_ADVICE["other"])
        text = say(
            lang,
            "Thanks. I've recorded the payment problem for order {order} under reference {ref}. "
            + en,
            "谢谢。已为订单 {order} 登记支付问题，编号 {ref}。" + zh,
            order=order_id or "-",
            ref=reference,
        )
        if "****" in details:
            text += say(
                lang,
                " For your security I've masked the card number: please never share a full "
                "card number in chat.",
                "为了您的安全，我已隐去卡号：请不要在对话中发送完整的银行卡号。",
            )
        dispatcher.utter_message(text=text)
        return [SlotSet("payment_details", details)]


class ActionRecordComplaint(Action):
    """Record the complaint and keep its reference number in ``complaint_reference``."""

    def name(self) -> str:
        return "action_record_complaint"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        raw_order = tracker.get_slot("order_id")
        reference = shop().record_complaint(
            masked(tracker.get_slot("complaint_details")), str(raw_order) if raw_order else None
        )
        return [SlotSet("complaint_reference", reference)]


class ActionRecordReview(Action):
    """Record the rating and optional comment and thank the customer."""

    def name(self) -> str:
        return "action_record_review"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        rating = float(tracker.get_slot("rating") or 0)
        comment = tracker.get_slot("review_comment")
        shop().record_review(rating, masked(comment) if comment else None)
        stars = f"{rating:g}"
        if rating >= 4:
            text = say(
                lang,
                "Thank you for the {stars}-star review! We're glad you enjoy shopping with us.",
                "感谢您的 {stars} 星好评！很高兴您喜欢在我们这里购物。",
                stars=stars,
            )
        elif rating >= 3:
            text = say(
                lang,
                "Thank you for your {stars}-star review. We'll keep working to do better.",
                "感谢您的 {stars} 星评价，我们会继续努力做得更好。",
                stars=stars,
            )
        else:
            text = say(
                lang,
                "Thank you for your honest {stars}-star review, and sorry we fell short. Our "
                "team reads every review; type 'human' if you'd like someone to follow up.",
                "感谢您的 {stars} 星真实评价，很抱歉没能让您满意。我们会认真阅读每一条评价；"
                "如需专人跟进，请输入“人工”。",
                stars=stars,
            )
        dispatcher.utter_message(text=text)
        return []


class ActionSubscribeNewsletter(Action):
    """Subscribe the e-mail address in ``email``."""

    def name(self) -> str:
        return "action_subscribe_newsletter"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        new = shop().subscribe(str(tracker.get_slot("email") or ""))
        dispatcher.utter_message(
            response="utter_newsletter_subscribed" if new else "utter_newsletter_already_subscribed"
        )
        return []


_CATEGORIES = {
    "en": {
        "electronics": "electronics",
        "home": "home",
        "clothing": "clothing",
        "beauty": "beauty",
        "sports": "sports",
    },
    "zh": {
        "electronics": "数码电子",
        "home": "家居",
        "clothing": "服装",
        "beauty": "美妆",
        "sports": "运动",
    },
}
MAX_SUGGESTIONS = 3


class ActionRecommendProducts(Action):
    """Products of the category within the budget (closest to the budget first); when none
    fits, say so and suggest the cheapest of the category."""

    def name(self) -> str:
        return "action_recommend_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Events:
        lang = language(tracker)
        category = str(tracker.get_slot("product_category") or "")
        budget = float(tracker.get_slot("budget") or 0)
        label = _CATEGORIES[lang].get(category, category)
        fitting = shop().products(category, budget)
        if fitting:
            picks = sorted(fitting, key=lambda p: -p.price)[:MAX_SUGGESTIONS]
            lines = "\n".join(f"• {p.title(lang)} – {money(p.price)}" for p in picks)
            text = say(
                lang,
                "Here's what I'd recommend in {label} within {budget}:\n{lines}",
                "在{label}类中，{budget} 以内为您推荐：\n{lines}",
                label=label,
                budget=money(budget),
                lines=lines,
            )
        else:
            cheapest = shop().products(category)
            if not cheapest:
                text = say(
                    lang,
                    "Sorry, we have no {label} products at the moment.",
                    "抱歉，目前没有{label}类商品。",
                    label=label,
                )
            else:
                first = cheapest[0]
                text = say(
                    lang,
                    "Sorry, nothing in {label} fits a budget of {budget}. The most affordable "
                    "is the {name} at {price}.",
                    "抱歉，{label}类中没有 {budget} 以内的商品。最实惠的是{name}，售价 {price}。",
                    label=label,
                    budget=money(budget),
                    name=first.title(lang),
                    price=money(first.price),
                )
        dispatcher.utter_message(text=text)
        return []
