"""Untrusted JSON bodies into plain values, once, at the edge, within limits.

Every HTTP body from outside goes through :func:`parse_json` before anything else reads it:
msgspec decodes it (strict UTF-8, no lone surrogates, no NaN, a bounded recursion in C), then
one iterative walk refuses what a store or a log cannot hold — nesting deeper than
``MAX_JSON_DEPTH``, integers outside 64 bits (PostgreSQL's ``BIGINT``, orjson's limit), NUL
characters (PostgreSQL text). :func:`to_record` then checks the value against a msgspec type.
Each failure is a :class:`~bot.errors.BadRequestError` whose message names what is wrong and
where, never the offending content.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from bot import constants
from bot.errors import BadRequestError

__all__ = ["check_json", "decode_json", "json_size", "parse_json", "to_record"]

_T = TypeVar("_T")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SCALARS = (str, bool, float, type(None))


def parse_json(body: bytes, *, max_depth: int = constants.MAX_JSON_DEPTH) -> Any:
    """Decode ``body`` as UTF-8 JSON and check it with :func:`check_json`."""
    value = decode_json(body)
    check_json(value, max_depth=max_depth)
    return value


def decode_json(body: bytes) -> Any:
    """Decode ``body`` as UTF-8 JSON, unchecked: for a caller that checks it itself."""
    try:
        return msgspec.json.decode(body)
    except RecursionError:
        raise BadRequestError("body is nested too deeply") from None
    except UnicodeDecodeError:
        raise BadRequestError("body is not valid UTF-8") from None
    except msgspec.MsgspecError as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from None


def check_json(
    value: Any, *, max_depth: int = constants.MAX_JSON_DEPTH, where: str = "body"
) -> None:
    """Refuse nesting deeper than ``max_depth``, integers outside 64 bits and NUL characters.

    Iterative, so a deep value cannot exhaust the stack; it visits each item once.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise BadRequestError(f"{where} must not contain NUL characters")
        elif isinstance(item, _SCALARS):
            continue
        elif isinstance(item, int):
            if not _INT64_MIN <= item <= _INT64_MAX:
                raise BadRequestError(f"{where} has an integer outside 64 bits")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise BadRequestError(f"{where} is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str) or "\x00" in key:
                        raise BadRequestError(f"{where} has a key that is not plain text")
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            raise BadRequestError(f"{where} holds a {type(item).__name__}, not JSON")


def to_record(value: Any, record: type[_T]) -> _T:
    """``value`` (from :func:`parse_json`) as an instance of the msgspec type ``record``."""
    try:
        return msgspec.convert(value, type=record)
    except msgspec.ValidationError as exc:
        raise BadRequestError(str(exc)) from None


def json_size(value: Any) -> int:
    """The length in bytes of ``value`` encoded as compact JSON."""
    return len(msgspec.json.encode(value))
