"""YAML loading that remembers line numbers, so every project problem can say where it is.

Mappings load as :class:`YamlMap` and sequences as :class:`YamlList`: ordinary ``dict`` and
``list`` subclasses with a ``line`` (1-based) and, for mappings, ``key_lines``. Invalid YAML
never raises: it comes back as a :class:`~bot.errors.Problem`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from bot.errors import Problem


class YamlMap(dict[str, Any]):
    """A YAML mapping with the line it starts on and the line of each key."""

    line: int | None = None
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        """Line of ``key`` in its file, else the mapping's own line."""
        return getattr(self, "key_lines", {}).get(key, self.line)


class YamlList(list[Any]):
    """A YAML sequence with the line it starts on and the line of each item."""

    line: int | None = None
    item_lines: list[int]


def line_of(node: Any, key: str | None = None) -> int | None:
    """Line of a loaded node (or of one of its keys); None for scalars and plain containers."""
    if key is not None and isinstance(node, YamlMap):
        return node.line_of(key)
    return getattr(node, "line", None)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader building YamlMap/YamlList with line numbers, with YAML 1.2 booleans."""


# YAML 1.1 reads yes/no/on/off as booleans; Rasa (YAML 1.2) keeps them as text, and so must we
# ("Yes" as a button title, "no" as a categorical value).
_BOOL_TAG = "tag:yaml.org,2002:bool"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _LineLoader, node: MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    result = YamlMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            )
        key_text = str(key) if not isinstance(key, str) else key
        result[key_text] = loader.construct_object(value_node, deep=True)
        result.key_lines[key_text] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: SequenceNode) -> YamlList:
    result = YamlList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse_yaml(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Parse YAML text; return ``(data, [])`` or ``(None, [problem])`` on a syntax error."""
    try:
        loader = _LineLoader(text)
        try:
            node: Node | None = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = err.problem or err.context or "invalid YAML"
        return None, [Problem(file, line, f"invalid YAML: {reason}")]
    except yaml.YAMLError as err:
        return None, [Problem(file, None, f"invalid YAML: {err}")]
    return data, []


def load_yaml_file(path: Path) -> tuple[Any, list[Problem]]:
    """Read and parse one YAML file; unreadable or non-UTF-8 files become problems too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, [Problem(str(path), None, f"cannot read file: {err}")]
    return parse_yaml(text, str(path))
