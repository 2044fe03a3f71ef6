"""Pacing of the posts kefu makes to one Slack channel.

Slack lets an app post about one message a second to a channel (a short burst over that is
tolerated, a longer one is answered HTTP 429 with ``Retry-After``). Every ticket and every
relayed message goes to the one handoff channel, so a customer who sends ten messages at once,
or ten customers writing together, would burst. Posts to a channel therefore take turns, in
the order they were asked for, each starting at least ``interval`` seconds after the
previous one finished; nothing is dropped. A 429 that slack-sdk's retries could not outlast
holds the channel's later posts back for its ``Retry-After`` too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bot import constants
from bot.errors import TransientDeliveryError

__all__ = ["ChannelPacer"]


class ChannelPacer:
    """Spaces posts to each channel ``interval`` seconds apart, first come first served."""

    def __init__(
        self,
        interval: float = constants.SLACK_POST_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._turns: dict[str, asyncio.Lock] = {}
        self._free_at: dict[str, float] = {}

    def delay(self, channel: str) -> float:
        """Seconds until ``channel`` may be posted to again (0 when it may now), not counting
        posts already waiting for their turn."""
        return max(0.0, self._free_at.get(channel, 0.0) - self._clock())

    @asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        """Wait for ``channel``'s turn (asyncio's lock wakes waiters in order), hold it for
        the post, and keep the channel quiet for ``interval`` after it."""
        lock = self._turns.setdefault(channel, asyncio.Lock())
        async with lock:
            wait = self.delay(channel)
            if wait > 0:
                await asyncio.sleep(wait)
            quiet = self.interval
            try:
                yield
            except TransientDeliveryError as err:
                quiet = max(quiet, err.retry_after or 0.0)
                raise
            finally:
                self._free_at[channel] = self._clock() + quiet
