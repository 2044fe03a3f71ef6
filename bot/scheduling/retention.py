"""Retention: a daily job deletes conversations the customer left more than N days ago.

A conversation goes with its events, outbox rows, claimed message ids, scheduled jobs,
stored files and its handoff tickets (``RetentionStore.delete_conversations_before``); one
active since the cutoff is kept whole. What parts keep in memory of deleted conversations
(the desk's tickets) is dropped after each run (``forget``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from bot import constants
from bot.ports import RetentionStore, ScheduledJob
from bot.scheduling.scheduler import Scheduler

log = logging.getLogger(__name__)

KIND = "retention"
JOB_ID = "retention"


class Retention:
    """Deletes what is older than ``days``; runs daily at ``constants.RETENTION_HOUR_UTC``."""

    def __init__(
        self,
        store: RetentionStore,
        *,
        days: float,
        forget: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.store = store
        self.days = days
        self.forget = list(forget)
        """Called after each deletion: drop what is cached of conversations (they may be gone)."""

    def install(self, scheduler: Scheduler) -> None:
        """Register the daily retention job."""
        # However late (kefu was down at the hour): a missed day still deletes, once.
        scheduler.register(KIND, self.run, misfire_grace=None)

    async def start(self, scheduler: Scheduler) -> None:
        """Make sure the daily run is scheduled (an overdue one stays due)."""
        first = ScheduledJob(id=JOB_ID, kind=KIND, run_at=next_run(time.time()))
        await scheduler.ensure(first)

    async def run(self, job: ScheduledJob) -> ScheduledJob:
        """Delete what is older than the cutoff; return tomorrow's run."""
        now = time.time()
        deleted = await self.delete_expired(now)
        log.info("retention: deleted %d conversation(s) older than %g days", deleted, self.days)
        return ScheduledJob(id=JOB_ID, kind=KIND, run_at=next_run(now))

    async def delete_expired(self, now: float) -> int:
        """Delete the conversations last active more than ``days`` before ``now``."""
        deleted = await self.store.delete_conversations_before(now - self.days * 86400)
        for forget in self.forget:
            forget()
        return deleted


def next_run(now: float) -> float:
    """The first ``RETENTION_HOUR_UTC`` o'clock after ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    run = moment.replace(hour=constants.RETENTION_HOUR_UTC, minute=0, second=0, microsecond=0)
    if run <= moment:
        run += timedelta(days=1)
    return run.timestamp()
