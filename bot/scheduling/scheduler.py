"""``Scheduler``: apscheduler 3's ``AsyncIOScheduler`` over jobs kept in kefu's own database.

Jobs are one-shot and live as rows of the store's ``scheduled_jobs`` table (id, kind, due
time, JSON data); apscheduler holds them in memory and fires them on time. On start every
stored row is handed to apscheduler again under its stable id, so a restart neither loses
nor duplicates a job. Recurring work (retention) schedules its next run when it runs.

Why not apscheduler's ``SQLAlchemyJobStore``: it is synchronous (every wakeup would block the
event loop on the database, and PostgreSQL would need a second, synchronous driver beside
asyncpg), it pickles callables into the database (a row written by someone else becomes code
that runs), and two processes sharing it fire a job twice. Here writes go through the store's
async writer, rows are plain JSON that name a kind registered in code, and a job that touches
a conversation applies its change once through the store's once-only key.

Every ``SCHEDULER_SYNC_SECONDS`` the table is read again, so that a job another process
stored is fired here too when that process went away before it fell due. Jobs run at least
once; conversation jobs apply their change once (the store's once-only key), others are
idempotent (retention, session expiry).

Each kind is registered with its misfire grace: how late it may still run after a pause or a
restart. Coalescing is always on (a due job runs once, however many times it was missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import constants
from bot.errors import TransientError
from bot.ports import JobStore, ScheduledJob

__all__ = ["Handler", "Scheduler"]

log = logging.getLogger(__name__)

Handler = Callable[[ScheduledJob], Awaitable[ScheduledJob | None]]
"""Runs a due job; may return the job's next run (same id, later ``run_at``) to reschedule."""

_DONE = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
_SYNC_ID = "kefu:sync"


@dataclass(frozen=True)
class _Kind:
    handler: Handler
    misfire_grace: int | None


class Scheduler:
    """Durable one-shot jobs on apscheduler; register kinds, then :meth:`start`."""

    def __init__(
        self, store: JobStore, *, sync_every: float | None = constants.SCHEDULER_SYNC_SECONDS
    ) -> None:
        self._store = store
        self._sync_every = sync_every
        self._running_jobs: set[str] = set()
        self._syncs = 0
        self._kinds: dict[str, _Kind] = {}
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._aps.add_listener(self._on_event, EVENT_JOB_SUBMITTED | _DONE)
        self._in_flight = 0
        self._submitted = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, kind: str, handler: Handler, *, misfire_grace: int | None) -> None:
        """Run ``handler`` for jobs of ``kind``; a job later than ``misfire_grace`` seconds
        (after a pause or while kefu was down) is dropped and logged; None: runs however late."""
        self._kinds[kind] = _Kind(handler, misfire_grace)

    @property
    def running(self) -> bool:
        """Whether jobs are being fired."""
        return bool(self._aps.running)

    async def start(self) -> None:
        """Start firing; every stored job is taken up again (overdue ones run now)."""
        if self.running:
            return
        self._aps.start()
        for job in await self._store.jobs():
            self._add(job)
        if self._sync_every:
            self._aps.add_job(
                self._sync,
                trigger=IntervalTrigger(seconds=self._sync_every),
                id=_SYNC_ID,
                replace_existing=True,
                misfire_grace_time=None,
                coalesce=True,
            )

    async def shutdown(self) -> None:
        """Stop firing and wait for running jobs; stored jobs stay for the next start."""
        if not self.running:
            return
        self._aps.pause()  # nothing new starts; what runs finishes (shutdown would cancel it)
        await self._wait_idle()
        self._aps.shutdown(wait=False)
        await asyncio.sleep(0)  # apscheduler shuts down on the loop's next step

    async def schedule(self, job: ScheduledJob) -> None:
        """Store ``job`` (replacing one with its id) and fire it at ``job.run_at``.

        While not running (a worker that is not the leader) the job is only stored: the
        scheduler that runs takes it up at its next sync, this one at its start.
        """
        if job.kind not in self._kinds:
            raise ValueError(f"no handler for scheduled jobs of kind {job.kind!r}")
        await self._store.save_job(job)
        if self.running:
            self._add(job)

    async def ensure(self, job: ScheduledJob) -> None:
        """Schedule ``job`` unless a job with its id is stored (keeps an overdue run due)."""
        stored = await self._store.jobs(kind=job.kind)
        if not any(existing.id == job.id for existing in stored):
            await self.schedule(job)

    async def cancel(self, job_id: str) -> bool:
        """Forget a job; True when it was stored."""
        with contextlib.suppress(JobLookupError):
            self._aps.remove_job(job_id)
        return await self._store.delete_job(job_id)

    async def jobs(
        self, *, kind: str | None = None, conversation_id: str | None = None
    ) -> list[ScheduledJob]:
        """The stored jobs, soonest first."""
        return await self._store.jobs(kind=kind, conversation_id=conversation_id)

    async def run_due(self) -> int:
        """Fire every job due now and wait until they finish (and the due jobs they left);
        return how many ran. For tests that move the clock, and for operators' tools."""
        ran = 0
        for _ in range(constants.SCHEDULER_MAX_ROUNDS):
            before, syncs = self._submitted, self._syncs
            self._aps.wakeup()
            await asyncio.sleep(0)  # the wakeup runs on the loop's next step
            await self._wait_idle()
            if self._submitted == before:
                break
            ran += self._submitted - before - (self._syncs - syncs)
        return ran

    # --- firing -------------------------------------------------------------------------

    def _add(self, job: ScheduledJob) -> None:
        kind = self._kinds.get(job.kind)
        if kind is None:
            log.warning("scheduled job %s has unknown kind %r; left in the store", job.id, job.kind)
            return
        self._aps.add_job(
            self._fire,
            trigger=DateTrigger(run_date=datetime.fromtimestamp(job.run_at, UTC)),
            args=[job],
            id=job.id,
            name=f"{job.kind} {job.id}",
            replace_existing=True,
            misfire_grace_time=kind.misfire_grace,
            coalesce=True,
        )

    async def _sync(self) -> None:
        """Take up the jobs other processes stored since (one scaled in before they fell due,
        say), and those they rescheduled; jobs running here are left alone."""
        horizon = _now() + 2 * (self._sync_every or 0)  # later ones: a later sync
        for job in await self._store.jobs(due_before=horizon):
            if job.id in self._running_jobs or job.kind not in self._kinds:
                continue
            held = self._aps.get_job(job.id)
            due = datetime.fromtimestamp(job.run_at, UTC)
            if held is None or held.next_run_time != due:
                self._add(job)

    async def _fire(self, job: ScheduledJob) -> None:
        self._running_jobs.add(job.id)
        try:
            await self._run(job)
        finally:
            self._running_jobs.discard(job.id)

    async def _run(self, job: ScheduledJob) -> None:
        try:
            follow_up = await self._kinds[job.kind].handler(job)
        except TransientError as err:
            retry_at = job.run_at + constants.SCHEDULER_RETRY_DELAY
            log.warning("scheduled job %s failed (%s); retry at %s", job.id, err, retry_at)
            follow_up = replace(job, run_at=max(retry_at, _now() + constants.SCHEDULER_RETRY_DELAY))
        except Exception:
            log.exception("scheduled job %s failed; dropped", job.id)
            follow_up = None
        if follow_up is not None:
            await self.schedule(follow_up)
        if follow_up is None or follow_up.id != job.id:
            await self._store.delete_job(job.id, run_at=job.run_at)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            self._submitted += 1
            self._syncs += event.job_id == _SYNC_ID
            self._in_flight += 1
            self._idle.clear()
            return
        if event.code == EVENT_JOB_MISSED:
            log.warning("scheduled job %s missed its time; dropped", event.job_id)
            task = asyncio.get_running_loop().create_task(self._drop(event.job_id, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._in_flight = 0
            self._idle.set()

    async def _drop(self, job_id: str, event: JobEvent) -> None:
        run_time = getattr(event, "scheduled_run_time", None)
        # apscheduler keeps microseconds: allow for the rounding of the stored float
        run_at = run_time.timestamp() + 0.001 if isinstance(run_time, datetime) else None
        await self._store.delete_job(job_id, run_at=run_at)

    async def _wait_idle(self) -> None:
        await self._idle.wait()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _now() -> float:
    return datetime.now(UTC).timestamp()
