"""PostgreSQL advisory locks for several ``kefu run`` workers on one database.

:class:`PostgresLocks` serialises the turns of one conversation across workers: a turn holds
the conversation's advisory lock on a connection of its own (``PgConnections``) from before
it loads the state until after its write committed, so no other worker's turn of that
conversation runs in between; no turn conflicts, none runs twice, no custom action runs
twice. Within a worker an asyncio lock comes first, so a worker's turns of one conversation
queue in memory and hold one connection between them, not one each. Once the lock is taken, one
query on its connection tells the store whether its cached state is current (``StateCheck``).

:class:`Leadership` makes one worker the leader, by a session advisory lock, for the work that
must run once: the scheduler and Telegram long polling. Followers try again every
``retry`` seconds; a leader that dies takes its session, and so its lock, with it.

Both locks live in the server's session of a connection, never in a table: a worker killed
with SIGKILL holds nothing once the kernel has closed its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg

from bot import constants
from bot.errors import ConversationBusyError
from bot.locks import LocalLocks
from bot.store.kept_connection import KeptConnection
from bot.store.pg_connections import PgConnections, is_connection_error, unavailable

__all__ = ["Leadership", "PostgresLocks", "StateCheck", "lock_key"]

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


def lock_key(conversation_id: str) -> int:
    """The conversation's advisory lock key: a stable signed 64-bit hash of its id (the same in
    every worker and every Python run, unlike ``hash``)."""
    digest = hashlib.blake2b(conversation_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class StateCheck(Protocol):
    """A store whose cached conversation states are checked under their lock (``SqlStore``
    with ``shared``): once the lock is taken, one query on the lock's connection."""

    def check_query(self, conversation_id: str) -> tuple[str, list[Any]]:
        """The query and its arguments."""
        ...

    def checked(self, conversation_id: str, row: Mapping[str, Any] | None) -> None:
        """What the query found (its row; None when it found none)."""
        ...

    def released(self, conversation_id: str) -> None:
        """The lock is about to be released."""
        ...


class PostgresLocks:
    """``ConversationLocks`` across workers: this worker's lock, then PostgreSQL's.

    A hold waits at most the pool's ``lock_timeout`` for another worker's turn, then raises
    ``ConversationBusyError``; a database that cannot be reached raises
    ``DatabaseUnavailableError``; both are retryable (REST answers 503).

    ``states``: the store whose cached states each hold checks once the lock is taken, so that
    a turn runs on what another worker saved, not on this worker's older copy.
    """

    def __init__(
        self,
        connections: PgConnections,
        *,
        local: LocalLocks | None = None,
        states: StateCheck | None = None,
    ) -> None:
        self._connections = connections
        self._local = local or LocalLocks()
        self.states = states

    @contextlib.asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold ``conversation_id`` in this worker and in the database for the block."""
        async with self._local.hold(conversation_id):
            key = lock_key(conversation_id)
            states = self.states
            for attempt in (1, 2):  # a pooled connection may have died with a restarted server
                async with self._connections.connection() as connection:
                    try:
                        await connection.execute("SELECT pg_advisory_lock($1)", key)
                        if states is not None:
                            query, args = states.check_query(conversation_id)
                            row = await connection.fetchrow(
                                query, *args, timeout=self._connections.timeout
                            )
                    except asyncpg.exceptions.LockNotAvailableError:
                        raise ConversationBusyError(
                            f"conversation {conversation_id!r} is busy in another worker"
                        ) from None
                    except Exception as exc:
                        if not is_connection_error(exc):
                            raise
                        if attempt == 2:
                            raise unavailable(exc) from exc
                        continue  # the dead connection is dropped on release: take another
                    if states is None:
                        yield
                        return  # the release's reset unlocks (bot.store.pg_connections)
                    states.checked(conversation_id, row)
                    try:
                        yield
                    finally:
                        states.released(conversation_id)
                    return


class Leadership:
    """One leader among the workers: ``on_elected`` runs when this worker becomes it,
    ``on_deposed`` when it stops being it (its connection failed, or :meth:`stop`).

    The lock is held on a connection of its own with TCP keepalives, so the server frees it
    within about half a minute even when the leader's machine vanishes without closing it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        retry: float = constants.DEFAULT_LEADER_RETRY,
        timeout: float = constants.DEFAULT_DB_TIMEOUT,
        on_elected: Sequence[Hook] = (),
        on_deposed: Sequence[Hook] = (),
    ) -> None:
        self._dsn = dsn
        self._retry = retry
        self._timeout = timeout
        self._on_elected = list(on_elected)
        self._on_deposed = list(on_deposed)
        self._kept = KeptConnection(
            "leadership", connect=self._connect, use=self._lead, lost=self._step_down, retry=retry
        )
        self._holding = False
        self.is_leader = False
        """Whether this worker is the leader now (its duties started)."""
        self.elections = 0
        """How many times this worker became the leader."""

    def add_duty(self, start: Hook, stop: Hook) -> None:
        """Run ``start`` when this worker becomes the leader, ``stop`` when it stops being it."""
        self._on_elected.append(start)
        self._on_deposed.insert(0, stop)

    async def start(self) -> None:
        """Begin trying to become the leader, in the background."""
        await self._kept.start()

    async def stop(self) -> None:
        """Stop the duties if leading, then let the lock go (another worker takes over)."""
        await self._kept.stop()

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            server_settings={
                "application_name": "kefu-leader",
                "tcp_keepalives_idle": "10",
                "tcp_keepalives_interval": "5",
                "tcp_keepalives_count": "3",
            },
        )

    async def _lead(self, connection: asyncpg.Connection) -> None:
        """Wait for the lock, run the duties, and keep checking the session while leading."""
        namespace, key = constants.LEADER_LOCK_KEY
        query = "SELECT pg_try_advisory_lock($1, $2)"
        while True:
            if await connection.fetchval(query, namespace, key, timeout=self._timeout):
                break
            await asyncio.sleep(self._retry)  # the leader's session ends without a signal here
        self._holding = True
        for hook in self._on_elected:
            await hook()
        self.is_leader = True
        self.elections += 1
        log.info("this worker is now the leader")
        while True:
            await asyncio.sleep(self._retry)
            await connection.fetchval("SELECT 1", timeout=self._timeout)

    async def _step_down(self) -> None:
        if not self._holding:
            return
        self._holding = self.is_leader = False
        log.warning("this worker is no longer the leader")
        for hook in self._on_deposed:
            try:
                await hook()
            except Exception:
                log.exception("stopping a leader's duty failed")
