"""The vectors of the last few messages embedded: in one turn the classifier, the flow router,
sentiment and knowledge retrieval read the same message, and should embed it once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["RecentVectors"]

Value = TypeVar("Value")


class RecentVectors(Generic[Value]):
    """A thread-safe least-recently-used map from a message (its text, or its tokens) to what
    an encoder made of it; arrays put in are made read-only, as every reader shares them."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        """The value kept for ``key``, None when it is not (or no longer) kept."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Value) -> Value:
        """Keep ``value`` for ``key`` (dropping the least recently used beyond the size)."""
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        with self._lock:
            self._values[key] = value
            if len(self._values) > self._size:
                self._values.popitem(last=False)
        return value
