"""Response rendering: variation choice, translations, templating, and the parser's records."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bot.domain import Domain, SlotDefinition
from bot.events import Button
from bot.responses import ResponseRenderer, parse_responses
from bot.yamlio import parse_yaml

DOMAIN_YAML = """
utter_hello:
  - text: "Hello!"
    translation:
      zh: "您好！"
    buttons:
      - title: "Track order"
        payload: "/track_order"
        translation:
          zh: "查询订单"
      - title: "Returns"
        payload: "/returns"
  - channel: telegram
    text: "Hello from Telegram!"
utter_status:
  - condition:
      - type: slot
        name: order_status
        value: shipped
    text: "Order {order_id} has shipped to {city}."
  - condition:
      - type: slot
        name: is_gift
        value: true
    text: "Your gift {order_id} is on its way."
  - text: "Order {order_id} is {order_status}."
utter_only_conditional:
  - condition:
      - type: slot
        name: is_gift
        value: true
    text: "A gift!"
utter_json:
  - text: 'Send {"order": "{order_id}"} or {unknown} or {} — cancelled {context.canceled_name}.'
utter_pick:
  - text: "one"
  - text: "two"
  - text: "three"
utter_jinja:
  - text: >-
      {% if is_gift %}Gift {{ slots.order_id }}{% else %}Order {{ order_id }}{% endif %},
      {{ context.step }} {{ value }}
    metadata:
      template: jinja
      rephrase: false
utter_bad_jinja_runtime:
  - text: "{{ order_id.__class__.__mro__ }}"
    metadata:
      template: jinja
utter_card:
  - image: "https://shop.example/{order_id}.png"
    custom:
      card:
        title: "Order {order_id}"
        count: 2
    buttons:
      - title: "Open {order_id}"
        payload: '/SetSlots(order_id={order_id})'
utter_rasa_pro_translation:
  - text: "Yes or no?"
    translation:
      zh:
        text: "是还是否？"
    buttons:
      - title: "Yes"
        payload: "/affirm"
        translation:
          zh:
            title: "是"
"""

SLOTS = ("order_id", "order_status", "is_gift", "city")


@pytest.fixture(scope="module")
def renderer() -> ResponseRenderer:
    data, problems = parse_yaml(DOMAIN_YAML, "domain.yml")
    responses, parse_problems = parse_responses(data, "domain.yml")
    assert problems == parse_problems == []
    slots = {name: SlotDefinition(name) for name in SLOTS}
    return ResponseRenderer(Domain(slots=slots, responses=responses, default_language="en"))


def say(renderer: ResponseRenderer, name: str, **options: Any) -> Any:
    options.setdefault("slots", {})
    options.setdefault("language", None)
    options.setdefault("channel", None)
    return renderer.render(name, conversation_id="rest:alice", **options)


def test_missing_response_is_none(renderer: ResponseRenderer) -> None:
    assert say(renderer, "utter_nothing") is None


def test_message_fields(renderer: ResponseRenderer) -> None:
    message = say(renderer, "utter_hello", channel="rest")
    assert message.conversation_id == "rest:alice"
    assert message.response == "utter_hello"
    assert message.text == "Hello!"
    assert message.buttons == (Button("Track order", "/track_order"), Button("Returns", "/returns"))


def test_channel_specific_variation_wins_on_its_channel(renderer: ResponseRenderer) -> None:
    assert say(renderer, "utter_hello", channel="telegram").text == "Hello from Telegram!"
    assert say(renderer, "utter_hello", channel="webchat").text == "Hello!"


def test_conditions_choose_and_exclude(renderer: ResponseRenderer) -> None:
    shipped = {"order_id": "A1", "order_status": "shipped", "city": "Shanghai"}
    assert say(renderer, "utter_status", slots=shipped).text == "Order A1 has shipped to Shanghai."
    gift = {"order_id": "A1", "order_status": "pending", "is_gift": True}
    assert say(renderer, "utter_status", slots=gift).text == "Your gift A1 is on its way."
    plain = {"order_id": "A1", "order_status": "pending", "is_gift": False}
    assert say(renderer, "utter_status", slots=plain).text == "Order A1 is pending."
    assert say(renderer, "utter_only_conditional", slots=plain) is None


def test_translation_of_text_and_buttons(renderer: ResponseRenderer) -> None:
    zh = say(renderer, "utter_hello", language="zh")
    assert zh.text == "您好！"
    assert [b.title for b in zh.buttons] == ["查询订单", "Returns"]
    assert [b.payload for b in zh.buttons] == ["/track_order", "/returns"]
    assert say(renderer, "utter_hello", language="zh-CN").text == "您好！"
    assert say(renderer, "utter_hello", language="en").text == "Hello!"
    assert say(renderer, "utter_hello", language="fr").text == "Hello!"
    pro = say(renderer, "utter_rasa_pro_translation", language="zh")
    assert (pro.text, pro.buttons[0].title) == ("是还是否？", "是")


def test_default_language_of_the_domain_uses_the_main_text() -> None:
    responses, _ = parse_responses(parse_yaml(DOMAIN_YAML, "d.yml")[0], "d.yml")
    chinese = ResponseRenderer(Domain(responses=responses, default_language="zh"))
    message = chinese.render(
        "utter_hello", conversation_id="c", slots={}, language="zh", channel=None
    )
    assert message is not None and message.text == "Hello!"


def test_literal_braces_unknown_placeholders_and_context(renderer: ResponseRenderer) -> None:
    message = say(
        renderer, "utter_json", slots={"order_id": "A1"}, context={"canceled_name": "returns"}
    )
    assert message.text == 'Send {"order": "A1"} or {unknown} or {} — cancelled returns.'
    without_context = say(renderer, "utter_json", slots={})
    assert (
        without_context.text
        == 'Send {"order": ""} or {unknown} or {} — cancelled {context.canceled_name}.'
    )


def test_none_is_empty_and_values_use_str(renderer: ResponseRenderer) -> None:
    slots = {"order_id": 42, "order_status": None}
    assert say(renderer, "utter_status", slots=slots).text == "Order 42 is ."


def test_rng_chooses_among_variations(renderer: ResponseRenderer) -> None:
    assert say(renderer, "utter_pick").text == "one"
    seen = {say(renderer, "utter_pick", rng=random.Random(seed)).text for seed in range(30)}
    assert seen == {"one", "two", "three"}


def test_jinja_variation(renderer: ResponseRenderer) -> None:
    gift = say(
        renderer,
        "utter_jinja",
        slots={"order_id": "A1", "is_gift": True},
        context={"step": "ask", "value": 3},
    )
    assert gift.text == "Gift A1, ask 3"
    assert gift.metadata == {"template": "jinja", "rephrase": False}
    assert say(renderer, "utter_jinja", slots={"order_id": "B2"}).text == "Order B2,  "


def test_sandbox_refuses_unsafe_templates(renderer: ResponseRenderer) -> None:
    message = say(renderer, "utter_bad_jinja_runtime", slots={"order_id": "A1"})
    assert message.text == "{{ order_id.__class__.__mro__ }}"


def test_image_custom_and_buttons_are_templated(renderer: ResponseRenderer) -> None:
    message = say(renderer, "utter_card", slots={"order_id": "A1"})
    assert message.text is None
    assert message.image == "https://shop.example/A1.png"
    assert message.custom == {"card": {"title": "Order A1", "count": 2}}
    assert message.buttons == (Button("Open A1", "/SetSlots(order_id=A1)"),)


def test_parser_reports_bad_variations() -> None:
    text = """
utter_a:
  - text: hi
    buttons: nope
    translation: [zh]
    condition:
      - type: intent
utter_b: {}
utter_c:
  - 3
"""
    responses, problems = parse_responses(parse_yaml(text, "d.yml")[0], "d.yml")
    assert [(p.line, p.message) for p in problems] == [
        (3, "response 'utter_a': 'buttons' must be a list of {title, payload}"),
        (3, "response 'utter_a': 'translation' must map language codes to text"),
        (3, "response 'utter_a': a condition must be a list of {type: slot, name, value}"),
        (8, "response 'utter_b' has no variations"),
        (
            10,
            "response 'utter_c': a variation must be a mapping with text, image, custom or buttons",
        ),
    ]
    assert responses["utter_a"][0].text == "hi"
    assert "utter_b" not in responses
    assert responses["utter_c"] == ()
