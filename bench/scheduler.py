"""The scheduler's cost: storing jobs, taking them up at start, and firing them.

    python bench/scheduler.py [--jobs 2000] [--database URL]

On a fresh SQLite file (or the PostgreSQL ``--database`` given, in tables of its own): stores
N one-shot jobs through ``Scheduler.schedule`` from concurrent callers (each a row in
``scheduled_jobs``; that scheduler is not started, so none fires there), starts a second
scheduler on the same database as a restarted ``kefu run`` would, and fires them all (they
are due at once) with ``Scheduler.run_due``; each job reads its conversation's state, as the
session-expiry job does. Prints jobs/s per phase. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bot.ports import ScheduledJob
from bot.scheduling import Scheduler
from bot.state import ConversationState
from bot.store import SqlStore, open_store


async def main(jobs: int, database: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        prefix = f"b{uuid.uuid4().hex[:8]}_"
        first = await open_store(url, table_prefix=prefix)
        for n in range(jobs):
            state = ConversationState(conversation_id=f"rest:{n}", channel="rest", sender_id=str(n))
            await first.save(state, [])
        fired = 0

        def scheduler_on(store: SqlStore) -> Scheduler:
            async def touch(job: ScheduledJob) -> None:
                nonlocal fired
                assert job.conversation_id is not None
                await store.load(job.conversation_id)
                fired += 1

            scheduler = Scheduler(store)
            scheduler.register("bench", touch, misfire_grace=None)
            return scheduler

        scheduler = scheduler_on(first)  # not started: the jobs are only stored and queued
        due = time.time()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                scheduler.schedule(
                    ScheduledJob(id=f"j{n}", kind="bench", run_at=due, conversation_id=f"rest:{n}")
                )
                for n in range(jobs)
            )
        )
        stored = time.perf_counter() - started
        await first.close()

        second = await open_store(url, table_prefix=prefix)
        scheduler = scheduler_on(second)
        started = time.perf_counter()
        await scheduler.start()
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        await scheduler.run_due()
        ran = time.perf_counter() - started
        await scheduler.shutdown()
        await second.close()

    print(f"database: {url.split('://')[0]}; {jobs} jobs")
    print(f"schedule (stored, concurrent callers): {jobs / stored:,.0f} jobs/s")
    print(f"start (take every stored job up):      {jobs / loaded:,.0f} jobs/s")
    print(f"fire (run_due, {fired} ran):          {jobs / ran:,.0f} jobs/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--database", default=None, help="a PostgreSQL URL; default SQLite")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.database))
