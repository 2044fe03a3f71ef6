"""Several ``kefu run`` workers on one PostgreSQL: what the composition root wires for them.

:class:`Workers` bundles the three things workers share through the database: conversation
locks (:class:`~bot.store.advisory.PostgresLocks`), leadership for the work that must run once
(:class:`~bot.store.advisory.Leadership`), and live pushes (:class:`~bot.store.live.PostgresLive`).
On SQLite there is one process and :func:`open_workers` returns None: the composition root
keeps ``LocalLocks`` and runs every duty itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from bot import constants
from bot.settings import Settings
from bot.store.advisory import Leadership, PostgresLocks, StateCheck
from bot.store.engines import PoolOptions, database_url
from bot.store.live import PostgresLive
from bot.store.pg_connections import PgConnections

__all__ = ["Workers", "open_workers", "store_options"]

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class Duty(Protocol):
    """Work the leader alone runs (the scheduled work): started on election, stopped after."""

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


@runtime_checkable
class Relayed(Protocol):
    """A channel whose live pushes go through every worker (the web chat)."""

    def relay_through(self, live: PostgresLive) -> None: ...


@runtime_checkable
class Poller(Protocol):
    """A channel that may fetch its updates by polling (Telegram without a webhook)."""

    polls: bool
    poll_on_start: bool

    async def start_polling(self) -> None: ...

    async def stop_polling(self) -> None: ...


def is_shared(settings: Settings) -> bool:
    """Whether the store is PostgreSQL, which several workers may share."""
    return database_url(settings.database_url).get_backend_name() == "postgresql"


def store_options(settings: Settings) -> dict[str, Any]:
    """``open_store`` keywords: on PostgreSQL the pool's size and timeout from the settings,
    and a state cache shared with other workers (a cached state serves a turn once the
    conversation's lock found it current: :meth:`Workers.check_states`)."""
    if not is_shared(settings):
        return {}
    pool = PoolOptions(
        size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout,
        start_wait=constants.DB_START_WAIT,
    )
    return {"pool": pool, "shared": True}


class Workers:
    """Locks, leadership and live pushes of one worker among several on PostgreSQL."""

    def __init__(self, settings: Settings) -> None:
        self.connections = PgConnections(
            settings.database_url,
            size=settings.db_lock_pool_size,
            timeout=settings.db_timeout,
            lock_timeout=settings.db_lock_timeout,
        )
        self.locks = PostgresLocks(self.connections)
        self.leadership = Leadership(
            self.connections.dsn, retry=settings.leader_retry, timeout=settings.db_timeout
        )
        self.live = PostgresLive(self.connections, retry=settings.leader_retry)

    def check_states(self, store: StateCheck) -> None:
        """Check ``store``'s cached states under each conversation's lock: a turn after
        another worker's runs on that worker's state."""
        self.locks.states = store

    def lead(self, start: Hook, stop: Hook) -> None:
        """A duty for the leader only: ``start`` on election, ``stop`` on losing it."""
        self.leadership.add_duty(start, stop)

    def wire(self, *, channels: Iterable[object], duties: Iterable[Duty]) -> None:
        """Wire a worker's parts for several workers: ``duties`` run on the leader only, so
        do channels' long polling; live pushes go through every worker."""
        channels = list(channels)
        for duty in duties:
            self.lead(duty.start, duty.shutdown)
        self.lead_polling(channels)
        for channel in channels:
            if isinstance(channel, Relayed):
                channel.relay_through(self.live)

    def lead_polling(self, channels: Iterable[object]) -> None:
        """Channels that poll for updates poll on the leader only (one poller per bot)."""
        for channel in channels:
            if isinstance(channel, Poller) and channel.polls:
                channel.poll_on_start = False
                self.lead(channel.start_polling, channel.stop_polling)

    async def start(self) -> None:
        """Open the lock pool; listen for live pushes; begin campaigning for leadership."""
        await self.connections.open()
        await self.live.start()
        await self.leadership.start()

    async def close(self) -> None:
        """Stop the leader's duties (another worker takes over), listening, and the pool."""
        await self.leadership.stop()
        await self.live.stop()
        await self.connections.close()

    async def health(self) -> dict[str, Any]:
        """``/health``'s part: whether this worker is connected to the database (its live
        pushes' connection, pinged every ``KEFU_LEADER_RETRY`` seconds: a health check costs
        the database nothing) and whether it is the leader."""
        database = "ok" if self.live.listening.is_set() else "unavailable"
        return {
            "status": "ok" if database == "ok" else "degraded",
            "database": database,
            "leader": self.leadership.is_leader,
        }


def open_workers(settings: Settings) -> Workers | None:
    """The workers' shared machinery when the store is PostgreSQL; None on SQLite."""
    return Workers(settings) if is_shared(settings) else None
