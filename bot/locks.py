"""Per-conversation exclusion: one turn or change of a conversation at a time.

The turn runner holds a conversation's lock while it loads, runs and saves a turn, so that two
messages of one conversation never run on the same state. :class:`LocalLocks` serves one
process; several processes sharing a PostgreSQL store need a database-wide lock with the same
:class:`ConversationLocks` shape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

__all__ = ["ConversationLocks", "LocalLocks"]


class ConversationLocks(Protocol):
    """Exclusive holds on conversations, by id."""

    def hold(self, conversation_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Exclusive hold on one conversation for the duration of a turn/change."""
        ...


class LocalLocks:
    """One ``asyncio.Lock`` per conversation in use, dropped when its last holder leaves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[None]:
        """Wait for the conversation's lock and hold it for the ``async with`` block."""
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)

    def __len__(self) -> int:
        """How many conversations are held or waited for."""
        return len(self._locks)
