"""Where the store's SQL runs: SQLite on a writer thread, PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine

from bot import constants
from bot.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long SQLite waits for another process's write lock before failing."""
_DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+asyncpg"}

_T = TypeVar("_T")


def database_url(url: str) -> URL:
    """``url`` with the driver the store runs: ``sqlite`` → sqlite3, ``postgresql`` → asyncpg.

    Any SQLite or PostgreSQL URL is accepted (``sqlite+aiosqlite://``, ``postgresql://``...);
    anything else raises ``StoreError`` naming the URL, its password hidden.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"unsupported database URL {shown!r}: use sqlite:/// or postgresql://")
    return parsed.set(drivername=_DRIVERS[backend])


@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """The PostgreSQL connection pool of a store (SQLite has no pool to size)."""

    size: int = constants.DEFAULT_DB_POOL_SIZE
    max_overflow: int = constants.DEFAULT_DB_MAX_OVERFLOW
    timeout: float = constants.DEFAULT_DB_TIMEOUT
    """Seconds to connect, or to wait for a free connection, before failing retryably."""
    start_wait: float = 0.0
    """Seconds the store's start-up waits for a server it cannot reach (one restarting)."""


class Database(Protocol):
    """Runs synchronous SQLAlchemy work in a transaction without blocking the event loop."""

    dialect: str

    async def write(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in a write transaction; commit if it returns, roll back if it raises."""
        ...

    async def read(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` outside any write transaction."""
        ...

    async def dispose(self) -> None:
        """Release the connections (and the writer thread)."""
        ...


class SqliteDatabase:
    """SQLite through the standard driver: writes on one thread, reads on the event loop.

    One writer thread serialises this process's writes, so they never wait on SQLite's lock
    for each other, and commits (fsync at checkpoints) stay off the loop. Reads run inline: in
    WAL mode a read never waits for the writer, and a lookup costs less than handing it to a
    thread. An in-memory database lives on the writer thread's connection, so it serves reads.
    """

    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        self._engine = create_engine(url)
        event.listen(self._engine, "connect", _sqlite_on_connect)
        event.listen(self._engine, "begin", _sqlite_on_begin)
        self._write_engine = self._engine.execution_options(kefu_write=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="kefu-store-writer")
        self._in_memory = url.database in (None, "", ":memory:")

    async def write(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in a write transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, _in_transaction, self._write_engine, work)

    async def read(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` on a reading connection."""
        if self._in_memory:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer, _connected, self._engine, work)
        return _connected(self._engine, work)

    async def dispose(self) -> None:
        """Release the connections and stop the writer thread."""
        await asyncio.get_running_loop().run_in_executor(self._writer, self._engine.dispose)
        self._writer.shutdown()


class PostgresDatabase:
    """PostgreSQL through asyncpg; the work runs in SQLAlchemy's greenlet bridge.

    Each connection is pinged as it leaves the pool (``pool_pre_ping``), so after a server
    restart the dead ones are replaced instead of failing a turn each.
    """

    dialect = "postgresql"

    def __init__(self, url: URL, pool: PoolOptions | None = None) -> None:
        pool = pool or PoolOptions()
        self._engine = create_async_engine(
            url,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout,
            pool_pre_ping=True,
            connect_args={"timeout": pool.timeout},
        )

    async def write(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in a transaction; commit if it returns, roll back if it raises."""
        async with self._engine.begin() as conn:
            return await conn.run_sync(work)

    async def read(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` on a connection of the pool, outside any write transaction."""
        async with self._engine.connect() as conn:
            return await conn.run_sync(work)

    async def dispose(self) -> None:
        """Release the connection pool."""
        await self._engine.dispose()


def _in_transaction(engine: Engine, work: Callable[[Connection], _T]) -> _T:
    with engine.begin() as conn:
        return work(conn)


def _connected(engine: Engine, work: Callable[[Connection], _T]) -> _T:
    with engine.connect() as conn:
        return work(conn)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets reads run while the writer commits; NORMAL sync is durable in WAL mode."""
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_on_begin
    cursor = dbapi_connection.cursor()
    # First: switching a new file to WAL takes a lock that another process may hold.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """Writers take the write lock up front; single-statement reads need no transaction."""
    if conn.get_execution_options().get("kefu_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_database(url: URL, pool: PoolOptions | None = None) -> Database:
    """The database behind ``url`` (already mapped by :func:`database_url`)."""
    if url.get_backend_name() == "sqlite":
        return SqliteDatabase(url)
    return PostgresDatabase(url, pool)
