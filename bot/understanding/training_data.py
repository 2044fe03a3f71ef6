"""Rasa 3.x ``nlu:`` training data: intent examples, entity annotations, synonyms, regexes, lookups.

The parser never raises on bad data: every malformed item or annotation becomes a
:class:`~bot.errors.Problem` with file and line, so ``kefu validate`` can list them all at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import Problem

_KINDS = ("intent", "synonym", "regex", "lookup")
_ALLOWED_KEYS = frozenset({*_KINDS, "examples", "metadata"})
_ANNOTATION = re.compile(
    r"\[(?P<text>[^\[\]]+)\]"
    r"(?:\((?P<spec>[^()]*)\)|(?P<json>\{[^{}]*\}))"
)
_LEFTOVER_ANNOTATION = re.compile(r"\][({]")
_ENTITY_NAME = re.compile(r"^[^\s:(){}\[\]]+$")


@dataclass(frozen=True)
class EntityAnnotation:
    """One annotated entity in an example; ``start``/``end`` index the stripped text."""

    entity: str
    value: str
    start: int
    end: int
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Example:
    """One training utterance with its intent and the entities annotated in it."""

    text: str
    intent: str
    entities: tuple[EntityAnnotation, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingData:
    """Everything the ``nlu:`` sections of a project declare, merged across files."""

    examples: tuple[Example, ...] = ()
    synonyms: dict[str, str] = field(default_factory=dict)
    """Lower-cased variant -> canonical value."""
    regexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lookups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def intents(self) -> tuple[str, ...]:
        """Intents that have examples, in order of first appearance."""
        return tuple(dict.fromkeys(example.intent for example in self.examples))

    def merge(self, other: TrainingData) -> TrainingData:
        """Combine two files' data; ``other`` wins where a synonym variant is redefined."""
        return TrainingData(
            examples=self.examples + other.examples,
            synonyms={**self.synonyms, **other.synonyms},
            regexes=_merge_tables(self.regexes, other.regexes),
            lookups=_merge_tables(self.lookups, other.lookups),
        )

    def content_hash(self) -> str:
        """A stable sha256 of the whole data: a trained model is reused while it matches."""
        payload = {
            "examples": [
                [e.text, e.intent, [list(vars(a).values()) for a in e.entities], e.metadata]
                for e in self.examples
            ],
            "synonyms": self.synonyms,
            "regexes": self.regexes,
            "lookups": self.lookups,
        }
        encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _merge_tables(
    first: dict[str, tuple[str, ...]], second: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    merged = dict(first)
    for name, values in second.items():
        merged[name] = tuple(dict.fromkeys(merged.get(name, ()) + values))
    return merged


@dataclass
class _Builder:
    file: str
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def add_synonym(self, variant: str, canonical: str, line: int | None) -> None:
        key = variant.strip().lower()
        known = self.synonyms.get(key)
        if known is not None and known != canonical:
            self.problem(line, f"synonym {variant!r} maps to both {known!r} and {canonical!r}")
            return
        if key != canonical.lower():
            self.synonyms[key] = canonical

    def build(self) -> TrainingData:
        return TrainingData(
            examples=tuple(self.examples),
            synonyms=self.synonyms,
            regexes={name: tuple(dict.fromkeys(p)) for name, p in self.regexes.items()},
            lookups={name: tuple(dict.fromkeys(v)) for name, v in self.lookups.items()},
        )


def parse_nlu(items: object, file: str) -> tuple[TrainingData, list[Problem]]:
    """Parse the loaded ``nlu:`` list of one file into training data and its problems."""
    builder = _Builder(file)
    if not isinstance(items, list):
        builder.problem(getattr(items, "line", None), "'nlu' must be a list of items")
        return builder.build(), builder.problems
    for item in items:
        _parse_item(builder, item)
    return builder.build(), builder.problems


def _parse_item(builder: _Builder, item: object) -> None:
    line: int | None = getattr(item, "line", None)
    if not isinstance(item, dict):
        builder.problem(line, "an nlu item must be a mapping with intent, synonym, regex or lookup")
        return
    kinds = [kind for kind in _KINDS if kind in item]
    if len(kinds) != 1:
        builder.problem(line, "an nlu item needs exactly one of: " + ", ".join(_KINDS))
        return
    kind = kinds[0]
    for key in item:
        if key not in _ALLOWED_KEYS:
            builder.problem(line, f"unknown key {key!r} in {kind} item")
    name = item[kind]
    if not isinstance(name, str) or not name.strip():
        builder.problem(line, f"{kind} name must be a non-empty string")
        return
    name = name.strip()
    metadata = item.get("metadata", {})
    if not isinstance(metadata, dict):
        builder.problem(line, f"metadata of {kind} {name!r} must be a mapping")
        metadata = {}
    has_examples = False
    for text, example_metadata, example_line in _raw_examples(builder, item, kind, name, line):
        has_examples = True
        if kind == "intent":
            _add_example(builder, name, text, {**metadata, **example_metadata}, example_line)
        elif kind == "synonym":
            builder.add_synonym(text, name, example_line)
        elif kind == "regex":
            _add_regex(builder, name, text, example_line)
        else:
            builder.lookups.setdefault(name, []).append(text)
    if not has_examples:
        builder.problem(line, f"{kind} {name!r} has no examples")


def _raw_examples(
    builder: _Builder, item: dict[str, Any], kind: str, name: str, line: int | None
) -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """Yield ``(text, metadata, line)`` of each example, from a block or a list."""
    examples = item.get("examples")
    key_line = getattr(item, "key_lines", {}).get("examples", line)
    if isinstance(examples, str):
        for offset, raw in enumerate(examples.splitlines(), start=1):
            example_line = key_line + offset if key_line is not None else None
            stripped = raw.strip()
            if not stripped:
                continue
            if not stripped.startswith("-"):
                builder.problem(example_line, f"example in {kind} {name!r} must start with '- '")
                continue
            text = stripped[1:].strip()
            if not text:
                builder.problem(example_line, f"empty example in {kind} {name!r}")
                continue
            yield text, {}, example_line
    elif isinstance(examples, list):
        item_lines = getattr(examples, "item_lines", [])
        for index, entry in enumerate(examples):
            entry_line = item_lines[index] if index < len(item_lines) else key_line
            is_map = isinstance(entry, dict)
            value = entry.get("text") if is_map else entry
            metadata = (entry.get("metadata") or {}) if is_map else {}
            if not isinstance(value, str) or not value.strip() or not isinstance(metadata, dict):
                builder.problem(
                    entry_line,
                    f"example in {kind} {name!r} must be a string or a mapping with 'text'",
                )
                continue
            yield value.strip(), metadata, entry_line
    elif examples is not None:
        builder.problem(key_line, f"examples of {kind} {name!r} must be a block or a list")


def _add_regex(builder: _Builder, name: str, pattern: str, line: int | None) -> None:
    try:
        re.compile(pattern)
    except re.error as err:
        builder.problem(line, f"invalid regex {pattern!r} in regex {name!r}: {err}")
        return
    builder.regexes.setdefault(name, []).append(pattern)


def _add_example(
    builder: _Builder, intent: str, raw: str, metadata: dict[str, Any], line: int | None
) -> None:
    try:
        text, entities = parse_annotated(raw)
    except ValueError as err:
        builder.problem(line, f"{err} in example {raw!r}")
        return
    for annotation in entities:
        surface = text[annotation.start : annotation.end]
        if annotation.value != surface:
            builder.add_synonym(surface, annotation.value, line)
    builder.examples.append(Example(text, intent, entities, metadata))


def parse_annotated(raw: str) -> tuple[str, tuple[EntityAnnotation, ...]]:
    """Strip entity annotations from one example; ``ValueError`` says what is malformed.

    Supports ``[text](entity)``, ``[text](entity:value)`` and
    ``[text]{"entity": ..., "value": ..., "role": ..., "group": ...}``.
    """
    parts: list[str] = []
    entities: list[EntityAnnotation] = []
    length = 0
    cursor = 0
    for match in _ANNOTATION.finditer(raw):
        before = raw[cursor : match.start()]
        if _LEFTOVER_ANNOTATION.search(before):
            raise ValueError("malformed entity annotation")
        surface = match["text"]
        fields = _annotation_fields(match["spec"], match["json"], surface)
        start = length + len(before)
        entities.append(EntityAnnotation(start=start, end=start + len(surface), **fields))
        parts += [before, surface]
        length = start + len(surface)
        cursor = match.end()
    rest = raw[cursor:]
    if _LEFTOVER_ANNOTATION.search(rest):
        raise ValueError("malformed entity annotation")
    return "".join([*parts, rest]), tuple(entities)


def _annotation_fields(spec: str | None, encoded: str | None, surface: str) -> dict[str, Any]:
    if spec is not None:
        entity, _, value = spec.partition(":")
        entity, value = entity.strip(), value.strip()
        if not _ENTITY_NAME.match(entity):
            raise ValueError(f"invalid entity name {entity!r}")
        return {"entity": entity, "value": value or surface}
    try:
        data = json.loads(encoded or "")
    except json.JSONDecodeError:
        raise ValueError("invalid JSON in entity annotation") from None
    name = data.get("entity") if isinstance(data, dict) else None
    if not isinstance(name, str) or not _ENTITY_NAME.match(name):
        raise ValueError("entity annotation needs an 'entity' name")
    fields: dict[str, Any] = {"entity": name, "value": surface}
    for key in ("value", "role", "group"):
        if data.get(key) is not None:
            if not isinstance(data[key], str | int | float):
                raise ValueError(f"entity annotation {key!r} must be a string")
            fields[key] = str(data[key])
    unknown = set(data) - {"entity", "value", "role", "group"}
    if unknown:
        raise ValueError(f"unknown keys in entity annotation: {', '.join(sorted(unknown))}")
    return fields
