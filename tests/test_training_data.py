"""Parsing Rasa 3.x ``nlu:`` data: annotations, synonyms, regexes, lookups and problems."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.understanding.training_data import (
    EntityAnnotation,
    Example,
    TrainingData,
    parse_annotated,
    parse_nlu,
)

FILE = "data/nlu.yml"


class Item(dict[str, Any]):
    """A mapping as the project's YAML loader returns it: with the line it starts on."""

    def __init__(self, line: int, **values: Any) -> None:
        super().__init__(values)
        self.line = line
        self.key_lines = {"examples": line + 1}


def test_intent_block_examples() -> None:
    td, problems = parse_nlu(
        [Item(2, intent="greet", examples="- hello\n- 你好\n\n-   hi there  \n")], FILE
    )
    assert problems == []
    assert [e.text for e in td.examples] == ["hello", "你好", "hi there"]
    assert td.intents == ("greet",)


def test_intent_list_examples_with_metadata() -> None:
    items = [
        Item(
            1,
            intent="greet",
            metadata={"source": "faq"},
            examples=["hey", {"text": "good morning", "metadata": {"sentiment": "positive"}}],
        )
    ]
    td, problems = parse_nlu(items, FILE)
    assert problems == []
    assert td.examples[0] == Example("hey", "greet", (), {"source": "faq"})
    assert td.examples[1].metadata == {"source": "faq", "sentiment": "positive"}


def test_plain_annotation() -> None:
    assert parse_annotated("where is [ORD-12345](order_id) now") == (
        "where is ORD-12345 now",
        (EntityAnnotation("order_id", "ORD-12345", 9, 18),),
    )


def test_old_synonym_annotation_records_value_and_synonym() -> None:
    td, problems = parse_nlu(
        [Item(1, intent="buy", examples="- I want [running shoes](product:sneakers)")], FILE
    )
    assert problems == []
    (entity,) = td.examples[0].entities
    assert (entity.entity, entity.value) == ("product", "sneakers")
    assert td.examples[0].text[entity.start : entity.end] == "running shoes"
    assert td.synonyms == {"running shoes": "sneakers"}


def test_json_annotation_with_role_and_group_in_chinese() -> None:
    text, entities = parse_annotated(
        '从[北京]{"entity": "city", "role": "from", "group": "1"}飞到'
        '[上海]{"entity": "city", "value": "Shanghai", "role": "to"}'
    )
    assert text == "从北京飞到上海"
    assert entities == (
        EntityAnnotation("city", "北京", 1, 3, role="from", group="1"),
        EntityAnnotation("city", "Shanghai", 5, 7, role="to"),
    )


def test_several_annotations_keep_offsets_in_stripped_text() -> None:
    text, entities = parse_annotated("[2](quantity) pairs of [red](color) [Nike](brand)")
    assert text == "2 pairs of red Nike"
    assert [text[e.start : e.end] for e in entities] == ["2", "red", "Nike"]


def test_brackets_without_annotation_stay_text() -> None:
    assert parse_annotated("size [M] please") == ("size [M] please", ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("this [is](broken", "malformed entity annotation"),
        ("[x]( )", "invalid entity name"),
        ("[x](two words)", "invalid entity name"),
        ('[x]{"entity": 3}', "needs an 'entity' name"),
        ("[x]{not json}", "invalid JSON"),
        ('[x]{"entity": "a", "colour": "b"}', "unknown keys"),
        ('[x]{"entity": "a", "role": ["r"]}', "'role' must be a string"),
    ],
)
def test_malformed_annotations_are_reported(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_annotated(raw)


def test_malformed_example_is_a_problem_with_file_and_line() -> None:
    items = [Item(10, intent="buy", examples="- fine\n- [x](broken\nno dash\n- ok")]
    td, problems = parse_nlu(items, FILE)
    assert [e.text for e in td.examples] == ["fine", "ok"]
    assert [(p.file, p.line) for p in problems] == [(FILE, 13), (FILE, 14)]
    assert "malformed entity annotation" in problems[0].message
    assert "must start with '- '" in problems[1].message


def test_synonym_regex_and_lookup_items() -> None:
    items = [
        Item(1, synonym="sneakers", examples="- Trainers\n- 球鞋"),
        Item(4, regex="order_id", examples=r"- ORD-\d{5}"),
        Item(6, lookup="brand", examples="- Nike\n- 李宁\n- Nike"),
    ]
    td, problems = parse_nlu(items, FILE)
    assert problems == []
    assert td.synonyms == {"trainers": "sneakers", "球鞋": "sneakers"}
    assert td.regexes == {"order_id": (r"ORD-\d{5}",)}
    assert td.lookups == {"brand": ("Nike", "李宁")}
    assert td.examples == ()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (Item(7, intent="a", regex="b", examples="- x"), "exactly one of"),
        (Item(7, examples="- x"), "exactly one of"),
        (Item(7, intent="", examples="- x"), "non-empty string"),
        (Item(7, intent="a"), "has no examples"),
        (Item(7, intent="a", examples=42), "must be a block or a list"),
        (Item(7, intent="a", examples=[{"txt": "x"}]), "mapping with 'text'"),
        (Item(7, intent="a", examples="- x", extra=1), "unknown key 'extra'"),
        (Item(7, intent="a", examples="- x", metadata="m"), "metadata"),
        (Item(7, regex="r", examples="- (unclosed"), "invalid regex"),
    ],
)
def test_malformed_items_are_problems(item: Item, message: str) -> None:
    _, problems = parse_nlu([item], FILE)
    assert any(message in p.message for p in problems), problems
    assert all(p.file == FILE and p.line in (7, 8, 9) for p in problems)


def test_non_mapping_item_and_non_list_are_problems() -> None:
    _, problems = parse_nlu(["just text"], FILE)
    assert "must be a mapping" in problems[0].message
    td, problems = parse_nlu({"intent": "x"}, FILE)
    assert td == TrainingData()
    assert problems[0].message == "'nlu' must be a list of items"


def test_conflicting_synonym_is_a_problem() -> None:
    items = [
        Item(1, synonym="sneakers", examples="- trainers"),
        Item(3, synonym="boots", examples="- trainers"),
    ]
    td, problems = parse_nlu(items, FILE)
    assert td.synonyms == {"trainers": "sneakers"}
    assert problems[0].line == 5
    assert "'sneakers' and 'boots'" in problems[0].message


def test_merge_and_content_hash() -> None:
    first, _ = parse_nlu(
        [Item(1, intent="greet", examples="- hi"), Item(3, lookup="brand", examples="- Nike")],
        FILE,
    )
    second, _ = parse_nlu(
        [Item(1, intent="bye", examples="- bye"), Item(3, lookup="brand", examples="- 李宁")],
        "other.yml",
    )
    merged = first.merge(second)
    assert merged.intents == ("greet", "bye")
    assert merged.lookups == {"brand": ("Nike", "李宁")}
    assert merged.content_hash() == first.merge(second).content_hash()
    assert merged.content_hash() != second.merge(first).content_hash()
    assert len(merged.content_hash()) == 64
