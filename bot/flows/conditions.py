"""The flow condition language (Rasa CALM's, which is pypred's predicate syntax).

``slots.order_status = "shipped" and not slots.is_gift``, ``context.collect is not null``,
``slots.items contains "shoes"``, ``slots.email matches "^.+@.+$"``. Conditions are parsed once
and cached; evaluation sees every domain slot (unset ones as ``null``) and the current frame
as ``context``.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pypred import Predicate

_PARSE_LOCK = threading.Lock()


class Condition:
    """A parsed condition. ``errors`` is empty when it parsed."""

    def __init__(self, source: str | bool) -> None:
        self.source = source
        self.errors: list[str] = []
        self._constant: bool | None = None
        self._predicate: Any = None
        if isinstance(source, bool):
            self._constant = source
            return
        text = source.strip()
        if not text:
            self.errors.append("the condition is empty")
            return
        # ply prints parser-table warnings on stderr while building; keep them out of the logs.
        with _PARSE_LOCK, contextlib.redirect_stderr(io.StringIO()):
            predicate = Predicate(text)
            valid = predicate.is_valid()
        if not valid:
            self.errors.extend(_describe(predicate))
        else:
            self._predicate = predicate

    @property
    def is_valid(self) -> bool:
        """False when the condition did not parse (``errors`` says why)."""
        return not self.errors

    def evaluate(self, slots: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> bool:
        """True when the condition holds; an invalid condition never holds."""
        if self._constant is not None:
            return self._constant
        if self._predicate is None:
            return False
        document = {"slots": dict(slots), "context": dict(context or {})}
        try:
            return bool(self._predicate.evaluate(document))
        except TypeError:  # an ordering comparison with null or a value of another type
            return False


def _describe(predicate: Any) -> list[str]:
    report = predicate.errors()
    messages = [str(e) for e in report.get("errors", [])] if isinstance(report, dict) else []
    return messages or ["the condition does not parse"]


@lru_cache(maxsize=4096)
def compile_condition(source: str | bool) -> Condition:
    """Parse ``source`` once; later calls with the same text reuse the result."""
    return Condition(source)
