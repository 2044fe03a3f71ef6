"""Entity extraction, slot values from free text, and language detection, in English and Chinese."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain import SlotDefinition, SlotMapping
from bot.understanding import (
    EntityExtractor,
    SlotValue,
    detect_language,
    parse_bool,
    parse_nlu,
    parse_number,
    parse_slot_value,
)

NLU = [
    {
        "intent": "buy",
        "examples": (
            "- I want [running shoes](product:sneakers) in [red](color)\n"
            '- 我想买[红色]{"entity": "color", "value": "red"}的[运动鞋](product)\n'
            '- from [Berlin]{"entity": "city", "role": "from"} to '
            '[Paris]{"entity": "city", "role": "to"}\n'
            "- a [balance](topic) question\n"
        ),
    },
    {"synonym": "sneakers", "examples": "- trainers\n- 球鞋"},
    {"regex": "order_id", "examples": r"- ORD-\d{5}"},
    {"regex": "email", "examples": r"- [\w.+-]+@[\w-]+\.[\w.-]+"},
    {"regex": "phone", "examples": r"- \+?\d[\d -]{7,}\d"},
    {"lookup": "brand", "examples": "- Nike\n- New Balance\n- 李宁\n- 安踏"},
]
ENTITY_NAMES = ("order_id", "email", "phone", "brand", "product", "color", "city", "topic")


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    td, problems = parse_nlu(NLU, "nlu.yml")
    assert problems == []
    return EntityExtractor.from_training_data(td, ENTITY_NAMES)


def found(extractor: EntityExtractor, text: str) -> list[tuple[str, str, str]]:
    return [(e["entity"], e["value"], e["text"]) for e in extractor.extract(text)]


def test_regex_entities_with_offsets(extractor: EntityExtractor) -> None:
    text = "where is ord-12345? mail bob.li@shop.cn"
    entities = extractor.extract(text)
    assert [(e["entity"], e["value"]) for e in entities] == [
        ("order_id", "ord-12345"),
        ("email", "bob.li@shop.cn"),
    ]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    assert entities[0]["extractor"] == "RegexEntityExtractor"


def test_regex_entities_in_chinese(extractor: EntityExtractor) -> None:
    assert found(extractor, "我的订单ORD-55555到哪了，电话 138 0013 8000") == [
        ("order_id", "ORD-55555", "ORD-55555"),
        ("phone", "138 0013 8000", "138 0013 8000"),
    ]


def test_word_boundaries_in_regexes_work_inside_chinese() -> None:
    items = [
        {"regex": "order_id", "examples": [r"\b[Kk][Ff]-?\d{5}\b"]},
        {"regex": "email", "examples": [r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"]},
    ]
    td, _ = parse_nlu(items, "nlu.yml")
    extractor = EntityExtractor.from_training_data(td, ["order_id", "email"])
    assert found(extractor, "订单KF10023的发票请发到bob@shop.cn谢谢") == [
        ("order_id", "KF10023", "KF10023"),
        ("email", "bob@shop.cn", "bob@shop.cn"),
    ]
    assert found(extractor, "KF100234") == []
    td, _ = parse_nlu([{"regex": "city", "examples": [r"(?u)\w+市"]}], "nlu.yml")
    unicode_words = EntityExtractor.from_training_data(td, ["city"])
    assert found(unicode_words, "上海市") == [("city", "上海市", "上海市")]


def test_lookup_is_case_insensitive_with_word_boundaries(extractor: EntityExtractor) -> None:
    assert found(extractor, "do you have NEW BALANCE or nike?") == [
        ("brand", "New Balance", "NEW BALANCE"),
        ("brand", "Nike", "nike"),
    ]
    assert found(extractor, "Nikes and subalance") == []


def test_lookup_in_chinese_needs_no_spaces(extractor: EntityExtractor) -> None:
    assert found(extractor, "有没有李宁或者安踏的球鞋") == [
        ("brand", "李宁", "李宁"),
        ("brand", "安踏", "安踏"),
        ("product", "sneakers", "球鞋"),
    ]
    assert found(extractor, "我要买Nike的鞋") == [("brand", "Nike", "Nike")]


def test_gazetteer_and_synonyms(extractor: EntityExtractor) -> None:
    entities = extractor.extract("red trainers please")
    assert [(e["entity"], e["value"]) for e in entities] == [
        ("color", "red"),
        ("product", "sneakers"),
    ]
    assert entities[1]["extractor"] == "GazetteerEntityExtractor"
    assert entities[1]["processors"] == ["EntitySynonymMapper"]
    assert found(extractor, "红色运动鞋") == [
        ("color", "red", "红色"),
        ("product", "运动鞋", "运动鞋"),
    ]


def test_roles_from_annotations(extractor: EntityExtractor) -> None:
    entities = extractor.extract("from Paris to Berlin")
    assert [(e["value"], e["role"]) for e in entities] == [("Paris", "to"), ("Berlin", "from")]


def test_longest_match_wins_on_overlap(extractor: EntityExtractor) -> None:
    assert found(extractor, "new balance running shoes") == [
        ("brand", "New Balance", "new balance"),
        ("product", "sneakers", "running shoes"),
    ]


def test_entities_outside_the_domain_are_ignored() -> None:
    td, _ = parse_nlu(NLU, "nlu.yml")
    only_brand = EntityExtractor.from_training_data(td, ["brand"])
    assert found(only_brand, "ORD-12345 red Nike") == [("brand", "Nike", "Nike")]
    assert EntityExtractor.from_training_data(td, []).extract("ORD-12345 Nike") == []


def test_regexes_with_groups_or_flags_keep_their_meaning() -> None:
    items = [
        {"regex": "code", "examples": [r"(?x) A B \d{2}", r"(\w)\1-\d{3}", r"C-\d"]},
    ]
    td, problems = parse_nlu(items, "nlu.yml")
    assert problems == []
    extractor = EntityExtractor.from_training_data(td, ["code"])
    assert [e["value"] for e in extractor.extract("AB12 xx-123 ab-123 c-7")] == [
        "AB12",
        "xx-123",
        "c-7",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yeah!", True),
        ("sure, go ahead", True),
        ("That's correct.", True),
        ("no", False),
        ("Nope", False),
        ("not really", False),
        ("of course not", False),
        ("maybe", None),
        ("I'm not sure", None),
        ("yes and no", None),
        ("I know", None),
        ("", None),
    ],
)
def test_parse_bool_english(text: str, expected: bool | None) -> None:
    assert parse_bool(text, "en") is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("是", True),
        ("是的", True),
        ("对", True),
        ("好的！", True),
        ("可以", True),
        ("嗯", True),
        ("没问题", True),
        ("不", False),
        ("不是", False),
        ("不要", False),
        ("没有", False),
        ("算了", False),
        ("不用了，谢谢", False),
        ("不知道", None),
        ("是不是", None),
        ("好的，不用了", False),  # "OK, no need": the last word answers
        ("ok", True),
    ],
)
def test_parse_bool_chinese(text: str, expected: bool | None) -> None:
    assert parse_bool(text, "zh") is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3.0),
        ("3.5", 3.5),
        ("1,200", 1200.0),
        ("-5", -5.0),
        ("twelve", 12.0),
        ("two hundred", 200.0),
        ("one hundred and twenty-five", 125.0),
        ("a thousand", 1000.0),
        ("about 40 bucks", 40.0),
        ("三", 3.0),
        ("十二", 12.0),
        ("两百五十", 250.0),
        ("两百五", 250.0),
        ("一千零一", 1001.0),
        ("一万二", 12000.0),
        ("三点五", 3.5),
        ("3.5元", 3.5),
        ("1.5万", 15000.0),
        ("我要３个", 3.0),
        ("2 or 3", None),
        ("two or three", None),
        ("两三个", None),
        ("十几个", None),
        ("none", None),
        ("", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def slot(type_: str, **values: Any) -> SlotDefinition:
    return SlotDefinition(name="s", type=type_, **values)


def entity(name: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"entity": name, "value": value, "start": 0, "end": len(value), **extra}


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [("yes please", "en", True), ("不要了", "zh", False), ("maybe", "en", None)],
)
def test_bool_slot(text: str, language: str, expected: bool | None) -> None:
    result = parse_slot_value(slot("bool"), text, [], language=language)
    assert result == (None if expected is None else SlotValue(expected, "parsed"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2", 2.0), ("five", 5.0), ("十", 10.0), ("0", None), ("11", None), ("十二", None)],
)
def test_float_slot_respects_range(text: str, expected: float | None) -> None:
    result = parse_slot_value(slot("float", min_value=1, max_value=10), text, [], language="en")
    assert (result.value if result else None) == expected


def test_categorical_slot() -> None:
    size = slot("categorical", values=("S", "M", "L", "XL"))
    synonyms = {"medium": "M", "大号": "L"}
    cases = {
        "xl": "XL",
        "size M please": "M",
        "Medium": "M",
        "我要大号的": "L",
        "S or M": None,
        "small-ish": None,
        "whatever": None,
    }
    for text, expected in cases.items():
        result = parse_slot_value(size, text, [], language="en", synonyms=synonyms)
        assert (result.value if result else None) == expected, text


def test_list_slot_from_entities_or_separators() -> None:
    colours = slot("list", mappings=(SlotMapping(type="from_entity", entity="color"),))
    entities = [entity("color", "red"), entity("brand", "Nike"), entity("color", "blue")]
    assert parse_slot_value(colours, "red and blue", entities, language="en") == SlotValue(
        ["red", "blue"], "entity"
    )
    assert parse_slot_value(colours, "red, blue and green.", [], language="en") == SlotValue(
        ["red", "blue", "green"], "parsed"
    )
    assert parse_slot_value(colours, "红色、蓝色和绿色", [], language="zh") == SlotValue(
        ["红色", "蓝色", "绿色"], "parsed"
    )
    assert parse_slot_value(colours, " , ", [], language="en") is None


def test_text_slot_prefers_mapped_entity() -> None:
    order = slot("text", mappings=(SlotMapping(type="from_entity", entity="order_id"),))
    assert parse_slot_value(
        order, "it is ORD-12345", [entity("order_id", "ORD-12345")], language="en"
    ) == SlotValue("ORD-12345", "entity")
    assert parse_slot_value(order, "  我忘了  ", [], language="zh") == SlotValue("我忘了", "text")
    assert parse_slot_value(slot("any"), "   ", [], language="en") is None


def test_mapped_entity_wins_for_every_type() -> None:
    mapping = (SlotMapping(type="from_entity", entity="amount"),)
    amount = slot("float", mappings=mapping, max_value=100)
    assert parse_slot_value(
        amount, "2 of them for 30", [entity("amount", "30")], language="en"
    ) == SlotValue(30.0, "entity")
    colour = slot(
        "categorical", values=("red", "blue"), mappings=(SlotMapping("from_entity", "c"),)
    )
    assert parse_slot_value(colour, "红色", [entity("c", "RED")], language="zh") == SlotValue(
        "red", "entity"
    )
    flag = slot("bool", mappings=(SlotMapping("from_entity", "ok"),))
    assert parse_slot_value(flag, "hmm", [entity("ok", "yes")], language="en") == SlotValue(
        True, "entity"
    )


def test_entity_mapping_respects_role() -> None:
    destination = slot("text", mappings=(SlotMapping("from_entity", "city", role="to"),))
    entities = [entity("city", "Berlin", role="from"), entity("city", "Paris", role="to")]
    result = parse_slot_value(destination, "Berlin to Paris", entities, language="en")
    assert result == SlotValue("Paris", "entity")


def test_unusable_entity_falls_back_to_text() -> None:
    amount = slot("float", mappings=(SlotMapping("from_entity", "amount"),), max_value=10)
    result = parse_slot_value(amount, "5", [entity("amount", "500")], language="en")
    assert result == SlotValue(5.0, "parsed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("where is my order?", "en"),
        ("我的订单到哪了", "zh"),
        ("我要退货 iPhone 15 Pro", "zh"),
        ("I ordered the 龙井 tea, where is it?", "en"),
        ("我想 return 这个 smart watch, order KF-10011", "zh"),  # borrowed shop words
        ("3.5元", "zh"),
        ("ORD-12345", "default"),
        ("12345", "default"),
        ("bob@shop.cn", "default"),
        ("👍🎉", "default"),
        ("", "default"),
        ("\x00\x07\u200b", "default"),
        ("注文はどこですか", "default"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text, default="default") == expected


def test_detect_language_defaults_to_english() -> None:
    assert detect_language("ORD-12345") == "en"


@pytest.mark.parametrize(
    "text", ["a" * 1_000_000, "中" * 1_000_000, "a@" * 500_000, "x " * 500_000]
)
def test_detect_language_reads_a_huge_text(text: str) -> None:
    assert detect_language(text) == ("zh" if text.startswith("中") else "en")


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("hmm no, on second thought keep it", "en", False),
        ("yes... actually no, leave it", "en", False),
        ("no wait, yes please", "en", True),
        ("想了想还是留着吧，不取消了", "zh", False),
        ("不对，是的", "zh", True),
        ("maybe", "en", None),
    ],
)
def test_the_last_clause_that_answers_decides(
    text: str, language: str, expected: bool | None
) -> None:
    assert parse_bool(text, language) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("嗯，不要了，取消吧", True),  # repeats the question's verb last: yes
        ("取消", True),
        ("别取消", False),
        ("不取消了", False),
        ("no, don't cancel it", False),
        ("ok cancel it", True),
        ("算了，还是留着吧", False),
    ],
)
def test_repeating_the_question_s_verb_answers_yes(text: str, expected: bool) -> None:
    assert parse_bool(text, "zh", echo=("cancel", "取消")) is expected
