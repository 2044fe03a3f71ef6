"""The scheduler core on real SQLite files and PostgreSQL, with the clock moved by the test.

time-machine moves the clock that apscheduler and the store read (``datetime.now``,
``time.time``) and leaves the event loop's monotonic clock alone; ``Scheduler.run_due`` fires
what is due and waits for it, so no test sleeps to wait for a job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.errors import StoreError
from bot.ports import ConversationStore, ScheduledJob
from bot.scheduling import Scheduler
from bot.store import open_store
from bot.testing.memory_store import MemoryDatabase, MemoryStore

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T0 = START.timestamp()


class Db:
    """A database with a table prefix of its own (or one in memory); each :meth:`open` is a new
    kefu process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"s{uuid.uuid4().hex[:10]}_"
        self.memory = MemoryDatabase() if url == "memory" else None

    async def open(self) -> ConversationStore:
        if self.memory is not None:
            return MemoryStore(self.memory)
        return await open_store(self.url, table_prefix=self.prefix)

    async def drop(self) -> None:
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                for name in ("conversations", "events", "processed_messages", "outbox", "kv"):
                    await conn.execute(text(f"DROP TABLE IF EXISTS {self.prefix}{name}"))
                await conn.execute(text(f"DROP TABLE IF EXISTS {self.prefix}scheduled_jobs"))
        finally:
            await engine.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Db]:
    if request.param == "memory":
        yield Db("memory")
        return
    if request.param == "sqlite":
        yield Db(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
        return
    database = Db(request.getfixturevalue("postgres_url"))
    yield database
    await database.drop()


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


class Process:
    """One kefu process's scheduler with a recording handler per kind."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.scheduler = Scheduler(store)
        self.fired: list[tuple[str, float]] = []
        self.scheduler.register("ping", self.record, misfire_grace=None)
        self.scheduler.register("fresh", self.record, misfire_grace=60)
        self.scheduler.register("again", self.twice, misfire_grace=None)
        self.scheduler.register("broken", self.broken, misfire_grace=None)

    async def record(self, job: ScheduledJob) -> None:
        self.fired.append((job.id, job.run_at))

    async def twice(self, job: ScheduledJob) -> ScheduledJob | None:
        self.fired.append((job.id, job.run_at))
        if job.data.get("left", 0) <= 0:
            return None
        return ScheduledJob(
            id=job.id, kind=job.kind, run_at=job.run_at + 100, data={"left": job.data["left"] - 1}
        )

    async def broken(self, job: ScheduledJob) -> None:
        raise RuntimeError("a bug in a job")

    async def stop(self) -> None:
        await self.scheduler.shutdown()
        await self.store.close()


@pytest.fixture
async def process(db: Db) -> AsyncIterator[Process]:
    running = Process(await db.open())
    await running.scheduler.start()
    yield running
    await running.stop()


def job(job_id: str, at: float, kind: str = "ping", **data: Any) -> ScheduledJob:
    return ScheduledJob(id=job_id, kind=kind, run_at=at, data=data)


async def test_a_job_fires_on_time_not_early_and_once(
    process: Process, clock: time_machine.Coordinates
) -> None:
    await process.scheduler.schedule(job("j1", T0 + 100))
    clock.shift(99)
    assert await process.scheduler.run_due() == 0
    assert process.fired == []
    clock.shift(1)
    assert await process.scheduler.run_due() == 1
    assert process.fired == [("j1", T0 + 100)]
    clock.shift(3600)
    assert await process.scheduler.run_due() == 0
    assert process.fired == [("j1", T0 + 100)]
    assert await process.scheduler.jobs() == []


async def test_a_job_survives_a_restart_and_fires_once(
    db: Db, clock: time_machine.Coordinates
) -> None:
    first = Process(await db.open())
    await first.scheduler.start()
    await first.scheduler.schedule(job("j1", T0 + 300, order="KF-1"))
    await first.stop()

    clock.shift(200)
    second = Process(await db.open())
    await second.scheduler.start()
    assert await second.scheduler.run_due() == 0
    clock.shift(100)
    assert await second.scheduler.run_due() == 1
    assert second.fired == [("j1", T0 + 300)]
    await second.stop()

    third = Process(await db.open())
    await third.scheduler.start()
    clock.shift(86400)
    assert await third.scheduler.run_due() == 0
    assert third.fired == []
    await third.stop()


async def test_a_job_due_while_kefu_was_down_runs_at_start(
    db: Db, clock: time_machine.Coordinates
) -> None:
    first = Process(await db.open())
    await first.scheduler.start()
    await first.scheduler.schedule(job("late", T0 + 10))
    await first.scheduler.schedule(job("stale", T0 + 10.1234567, kind="fresh"))
    await first.stop()

    clock.shift(7200)
    second = Process(await db.open())
    await second.scheduler.start()
    await second.scheduler.run_due()
    # "ping" runs however late; "fresh" has a 60 s grace: two hours late it is dropped
    assert second.fired == [("late", T0 + 10)]
    assert await second.scheduler.jobs() == []
    await second.stop()


async def test_a_job_another_process_stored_is_taken_up_while_running(
    db: Db, clock: time_machine.Coordinates
) -> None:
    staying = Process(await db.open())
    await staying.scheduler.start()
    leaving = Process(await db.open())
    await leaving.scheduler.start()
    await leaving.scheduler.schedule(job("theirs", T0 + 100))
    await leaving.stop()  # scaled in before the job fell due
    clock.shift(100)
    assert await staying.scheduler.run_due() == 1  # the periodic sync found it, then it ran
    assert staying.fired == [("theirs", T0 + 100)]
    clock.shift(600)
    assert await staying.scheduler.run_due() == 0
    assert staying.fired == [("theirs", T0 + 100)]
    await staying.stop()


async def test_the_same_id_replaces_the_job(
    process: Process, clock: time_machine.Coordinates
) -> None:
    await process.scheduler.schedule(job("j1", T0 + 10))
    await process.scheduler.schedule(job("j1", T0 + 50))
    assert [j.run_at for j in await process.scheduler.jobs()] == [T0 + 50]
    clock.shift(20)
    assert await process.scheduler.run_due() == 0
    clock.shift(40)
    await process.scheduler.run_due()
    assert process.fired == [("j1", T0 + 50)]


async def test_a_handler_reschedules_its_job(
    process: Process, clock: time_machine.Coordinates
) -> None:
    await process.scheduler.schedule(job("loop", T0 + 100, kind="again", left=1))
    clock.shift(100)
    await process.scheduler.run_due()
    assert [j.run_at for j in await process.scheduler.jobs()] == [T0 + 200]
    clock.shift(100)
    await process.scheduler.run_due()
    assert process.fired == [("loop", T0 + 100), ("loop", T0 + 200)]
    assert await process.scheduler.jobs() == []


async def test_cancel_and_a_failing_job(process: Process, clock: time_machine.Coordinates) -> None:
    await process.scheduler.schedule(job("gone", T0 + 10))
    await process.scheduler.schedule(job("bug", T0 + 10, kind="broken"))
    assert await process.scheduler.cancel("gone") is True
    assert await process.scheduler.cancel("gone") is False
    clock.shift(10)
    assert await process.scheduler.run_due() == 1  # the broken one ran, failed, was dropped
    assert process.fired == []
    assert await process.scheduler.jobs() == []


async def test_shutdown_lets_a_running_job_finish(db: Db, clock: time_machine.Coordinates) -> None:
    running = Process(await db.open())
    started, gate, finished = asyncio.Event(), asyncio.Event(), []

    async def slow(job: ScheduledJob) -> None:
        started.set()
        await gate.wait()
        finished.append(job.id)

    running.scheduler.register("slow", slow, misfire_grace=None)
    await running.scheduler.start()
    await running.scheduler.schedule(job("long", T0, kind="slow"))
    firing = asyncio.create_task(running.scheduler.run_due())
    await started.wait()
    stopping = asyncio.create_task(running.scheduler.shutdown())
    gate.set()
    await asyncio.gather(firing, stopping)
    assert finished == ["long"]
    assert await running.store.jobs() == []  # done, so not run again after a restart
    await running.store.close()


async def test_bad_jobs_are_refused(process: Process) -> None:
    with pytest.raises(ValueError, match="nope"):
        await process.scheduler.schedule(job("x", T0, kind="nope"))
    with pytest.raises(StoreError, match="not JSON"):
        await process.scheduler.schedule(job("x", T0, when=object()))
