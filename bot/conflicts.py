"""Waiting out write conflicts: a turn whose save lost the race for its conversation runs again.

Several processes may serve one conversation (a webhook lands on any worker); when another one
saved first, the store raises ``ConcurrentUpdateError`` and the turn is run again on the fresh
state. Waits grow from ``CONFLICT_RETRY_DELAYS[0]`` to ``[1]`` with full jitter, so that racing
processes fall out of step instead of colliding again, until ``CONFLICT_RETRY_DEADLINE``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from bot import constants

__all__ = ["ConflictBackoff"]


class ConflictBackoff:
    """The waits between the attempts of one turn; :meth:`wait` says when to give up."""

    def __init__(
        self,
        *,
        deadline: float = constants.CONFLICT_RETRY_DEADLINE,
        delays: tuple[float, float] = constants.CONFLICT_RETRY_DELAYS,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._jitter = jitter
        self._give_up_at = clock() + deadline
        self._next, self._largest = delays
        self.attempts = 1
        """Attempts so far: 1 before the first wait."""

    async def wait(self) -> bool:
        """Sleep before the next attempt and return True; False once the deadline is reached."""
        remaining = self._give_up_at - self._clock()
        if remaining <= 0:
            return False
        delay = min(self._jitter() * self._next, remaining)
        self._next = min(self._next * 2, self._largest)
        self.attempts += 1
        await asyncio.sleep(delay)
        return True
