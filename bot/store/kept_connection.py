"""A PostgreSQL connection kept in the background: opened, used until it fails, then opened
again after a pause, until stopped. Leadership holds its lock on one, live pushes listen on
another; both must come back by themselves after the server restarted or the network failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

__all__ = ["KeptConnection"]

log = logging.getLogger(__name__)


class KeptConnection:
    """Runs ``use`` on a connection from ``connect`` in a background task named ``name``.

    When ``use`` returns or fails (the connection failed), ``lost`` runs, the connection is
    dropped and, ``retry`` seconds later, a new one is opened.
    """

    def __init__(
        self,
        name: str,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        use: Callable[[asyncpg.Connection], Awaitable[None]],
        lost: Callable[[], Awaitable[None]],
        retry: float,
    ) -> None:
        self._name = name
        self._connect = connect
        self._use = use
        self._lost = lost
        self._retry = retry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin in the background (again after :meth:`stop`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name=f"kefu-{self._name}")

    async def stop(self) -> None:
        """Stop using the connection (``lost`` runs) and close it."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self) -> None:
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect()
                await self._use(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: %s: %s; reconnecting", self._name, type(exc).__name__, exc)
            finally:
                await self._lost()
                if connection is not None:
                    connection.terminate()  # what the session held goes with it
            await asyncio.sleep(self._retry)
