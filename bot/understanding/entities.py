"""Rule-based entity extraction from regexes, lookup tables and annotated training values.

No model is trained: an online shop's entities are mostly closed lists (products, colours,
sizes) or fixed shapes (order numbers, e-mails, phones), and rules stay fast and explainable.
Each source is compiled once into a single regex; lists become a character trie so a message
is scanned once however long the list is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.understanding.training_data import TrainingData

REGEX_EXTRACTOR = "RegexEntityExtractor"
"""Rasa's name for the extractor of regex and lookup-table entities, kept for compatibility."""
GAZETTEER_EXTRACTOR = "GazetteerEntityExtractor"
"""Entities found because their text was annotated in a training example."""
SYNONYM_PROCESSOR = "EntitySynonymMapper"
"""Listed in an entity's ``processors`` when a synonym changed its value, as Rasa does."""

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31bf\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD_CHAR = re.compile(f"[^\\W{_CJK}]")
"""A letter, digit or underscore of a spaced script: only these need word boundaries."""
_NOT_AFTER_WORD = f"(?<![^\\W{_CJK}])"
_NOT_BEFORE_WORD = f"(?![^\\W{_CJK}])"
_REGEX_FLAGS = re.IGNORECASE | re.ASCII
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


@dataclass(frozen=True)
class _Entry:
    entity: str
    value: str
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class _Source:
    pattern: re.Pattern[str]
    extractor: str
    entity: str | None = None
    """Set for a regex source; list sources look the match up in ``entries``."""
    entries: Mapping[str, _Entry] | None = None


class EntityExtractor:
    """Finds the domain's entities in a message; build it once per project."""

    def __init__(self, sources: Iterable[_Source], synonyms: Mapping[str, str]) -> None:
        self._sources = tuple(sources)
        self._synonyms = dict(synonyms)

    @classmethod
    def from_training_data(cls, td: TrainingData, entity_names: Iterable[str]) -> EntityExtractor:
        """Compile regexes and lookups named after an entity, and annotated values, of ``td``."""
        names = tuple(dict.fromkeys(entity_names))
        sources: list[_Source] = []
        for name in names:
            sources += _regex_sources(name, td.regexes.get(name, ()))
        lookup = [(v, _Entry(name, v)) for name in names for v in td.lookups.get(name, ())]
        gazetteer = _annotated_entries(td, set(names))
        for extractor, pairs in ((REGEX_EXTRACTOR, lookup), (GAZETTEER_EXTRACTOR, gazetteer)):
            entries = _surface_forms(pairs, td.synonyms)
            if entries:
                pattern = re.compile(_trie_pattern(entries), re.IGNORECASE)
                sources.append(_Source(pattern, extractor, entries=entries))
        return cls(sources, td.synonyms)

    def extract(self, text: str) -> list[dict[str, Any]]:
        """Rasa-shaped entities in ``text``; the longest match wins where matches overlap."""
        candidates: list[tuple[int, int, int, dict[str, Any]]] = []
        for priority, source in enumerate(self._sources):
            for match in source.pattern.finditer(text):
                start, end = match.span()
                if start == end:
                    continue
                entity = self._entity(source, match.group(), start, end)
                if entity is not None:
                    candidates.append((start, end, priority, entity))
        candidates.sort(key=lambda c: (c[0] - c[1], c[2], c[0]))
        taken: list[tuple[int, int]] = []
        found: list[dict[str, Any]] = []
        for start, end, _, entity in candidates:
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                found.append(entity)
        found.sort(key=lambda e: e["start"])
        return found

    def _entity(self, source: _Source, matched: str, start: int, end: int) -> dict[str, Any] | None:
        if source.entries is None:
            entry = _Entry(source.entity or "", matched)
        else:
            found = source.entries.get(matched.lower())
            if found is None:
                return None
            entry = found
        value = self._synonyms.get(entry.value.lower(), entry.value)
        entity: dict[str, Any] = {
            "entity": entry.entity,
            "value": value,
            "start": start,
            "end": end,
            "extractor": source.extractor,
            "text": matched,
        }
        if entry.role is not None:
            entity["role"] = entry.role
        if entry.group is not None:
            entity["group"] = entry.group
        if value.lower() != matched.lower():
            entity["processors"] = [SYNONYM_PROCESSOR]
        return entity


def _regex_sources(name: str, patterns: Iterable[str]) -> list[_Source]:
    """One alternation for the entity's plain patterns; patterns with groups or global
    flags stay apart, so group numbers, back-references and flags keep their meaning.

    Patterns run with ASCII ``\\w``, ``\\b`` and ``\\d``: Chinese text has no spaces, and in
    Unicode mode ``\\bKF-\\d{5}\\b`` never matches in ``订单KF-10023在哪`` while ``[\\w.]+@...``
    swallows the Chinese words around an e-mail address.
    """
    plain: list[str] = []
    sources: list[_Source] = []
    for pattern in patterns:
        flags = _GLOBAL_FLAGS.match(pattern)
        # An explicit (?u) asks for Unicode classes, which re.ASCII would refuse.
        compiled = re.compile(pattern, re.IGNORECASE if flags and "u" in flags[0] else _REGEX_FLAGS)
        if compiled.groups or flags:
            sources.append(_Source(compiled, REGEX_EXTRACTOR, entity=name))
        else:
            plain.append(f"(?:{pattern})")
    if plain:
        combined = re.compile("|".join(plain), _REGEX_FLAGS)
        sources.insert(0, _Source(combined, REGEX_EXTRACTOR, entity=name))
    return sources


def _annotated_entries(td: TrainingData, names: set[str]) -> list[tuple[str, _Entry]]:
    """Annotated texts and values of the domain's entities; a text seen with two roles or
    groups keeps neither, since the text alone cannot tell them apart."""
    by_surface: dict[str, _Entry] = {}
    for example in td.examples:
        for annotation in example.entities:
            if annotation.entity not in names:
                continue
            surface = example.text[annotation.start : annotation.end]
            entry = _Entry(annotation.entity, annotation.value, annotation.role, annotation.group)
            for form in (surface, annotation.value):
                known = by_surface.setdefault(form.lower(), entry)
                if known != entry and known.entity == entry.entity:
                    by_surface[form.lower()] = _Entry(entry.entity, known.value)
    return list(by_surface.items())


def _surface_forms(
    pairs: Iterable[tuple[str, _Entry]], synonyms: Mapping[str, str]
) -> dict[str, _Entry]:
    """Lower-cased text -> entry, including every synonym variant of an entry's value."""
    variants: dict[str, list[str]] = {}
    for variant, canonical in synonyms.items():
        variants.setdefault(canonical.lower(), []).append(variant)
    entries: dict[str, _Entry] = {}
    for surface, entry in pairs:
        for form in (surface, *variants.get(entry.value.lower(), ())):
            if form.strip():
                entries.setdefault(form.strip().lower(), entry)
    return entries


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first, as a trie: one pass per message.

    Words of spaced scripts get word boundaries at their spaced-script edges; Chinese has
    no spaces, so a Chinese edge matches anywhere.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _node_pattern(trie, None)


def _node_pattern(node: dict[str, Any], edge: str | None) -> str:
    branches = []
    for char in sorted(key for key in node if key):
        prefix = re.escape(char)
        if edge is None and _WORD_CHAR.match(char):
            prefix = _NOT_AFTER_WORD + prefix
        branches.append(prefix + _node_pattern(node[char], char))
    if "" in node:
        branches.append(_NOT_BEFORE_WORD if edge and _WORD_CHAR.match(edge) else "")
    if len(branches) == 1:
        return branches[0]
    return "(?:" + "|".join(branches) + ")"
