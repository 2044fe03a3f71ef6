"""A small asyncpg pool apart from the store's, for what must hold a connection of its own:
conversation locks for a turn's duration, the leader's lock, live pushes.

The store's SQLAlchemy pool serves short queries; a lock held on one of its connections for a
whole turn (actions and the LLM included) would starve it. Here the pool's size bounds the
turns a worker runs at once, and a connection that died with the server is replaced on the
next acquire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bot.errors import ConversationBusyError, DatabaseUnavailableError
from bot.store.engines import database_url

__all__ = ["PgConnections", "is_connection_error", "plain_dsn", "unavailable"]

log = logging.getLogger(__name__)

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57P: shutting down, starting up
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by a dying server
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, out of memory
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the server went away, rather than that a statement was wrong."""
    return isinstance(exc, _CONNECTION_ERRORS)


def plain_dsn(url: str) -> str:
    """``url`` (any SQLAlchemy PostgreSQL URL) as the ``postgresql://`` DSN asyncpg takes."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "postgresql":
        shown = make_url(url).render_as_string(hide_password=True)
        raise ValueError(f"{shown!r} is not a PostgreSQL URL")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _reset(connection: asyncpg.Connection) -> None:
    """What a connection sheds on its way back to the pool: the locks it held.

    asyncpg's default reset also closes cursors, unlistens and resets settings, none of which
    this pool's users leave behind; one statement is the release's only round trip.
    """
    await connection.execute("SELECT pg_advisory_unlock_all()")


class PgConnections:
    """The pool: ``size`` connections at most, opened lazily, each ``timeout`` to connect.

    ``lock_timeout`` (seconds) is the server's ``lock_timeout`` on these connections: how long
    a statement may wait for a lock another session holds.
    """

    def __init__(self, url: str, *, size: int, timeout: float, lock_timeout: float) -> None:
        self.dsn = plain_dsn(url)
        self.shown = make_url(url).render_as_string(hide_password=True)
        self.timeout = timeout
        self._size = size
        self._lock_timeout = lock_timeout
        self._lock_timeout_ms = max(1, round(lock_timeout * 1000))
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool; no connection is made until one is needed."""
        if self._pool is not None:
            return
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self._size,
            timeout=self.timeout,
            reset=_reset,
            server_settings={
                "application_name": "kefu-locks",
                "lock_timeout": str(self._lock_timeout_ms),
            },
        )

    async def close(self) -> None:
        """Close every connection; locks still held go with them."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=self.timeout)
            except Exception:  # a dead server, or a connection that would not close in time
                pool.terminate()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A live connection for the block, returned (its locks released) afterwards.

        Every connection busy means as many turns running: a free one is waited for as long
        as a lock would be (``lock_timeout``), then ``ConversationBusyError``. Failing to
        connect raises ``DatabaseUnavailableError``. Both are retryable (REST answers 503).
        """
        if self._pool is None:
            raise DatabaseUnavailableError("the lock pool is not open")
        try:
            connection = await self._pool.acquire(timeout=self._lock_timeout)
        except TimeoutError:
            raise ConversationBusyError("every lock connection stayed busy") from None
        except _CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc
        try:
            yield connection
        finally:
            await self._release(connection)

    async def _release(self, connection: asyncpg.Connection) -> None:
        """Return ``connection``; one whose reset fails is closed, so no lock outlives it."""
        assert self._pool is not None
        try:
            await asyncio.shield(self._pool.release(connection, timeout=self.timeout))
        except Exception as exc:  # the pool has terminated it: its session and locks are gone
            log.debug("a lock connection was dropped on release: %r", exc)

    async def execute(self, query: str, *args: Any) -> Any:
        """One statement's first value, on a pooled connection; connection failures raise
        ``DatabaseUnavailableError``."""
        async with self.connection() as connection:
            try:
                return await connection.fetchval(query, *args, timeout=self.timeout)
            except _CONNECTION_ERRORS as exc:
                raise unavailable(exc) from exc


def unavailable(exc: BaseException) -> DatabaseUnavailableError:
    """The retryable error for a connection failure, naming its kind (never the URL)."""
    return DatabaseUnavailableError(f"database unavailable: {type(exc).__name__}: {exc}")
