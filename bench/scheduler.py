"""The scheduler's cost: storing jobs, taking them up at start, and firing them.

    python bench/scheduler.py [--jobs 2000] [--database URL] [--handoffs 200]

On a fresh SQLite file (or the PostgreSQL ``--database`` given, in tables of its own): stores
N one-shot jobs through ``Scheduler.schedule`` from concurrent callers (each a row in
``scheduled_jobs``; that scheduler is not started, so none fires there), starts a second
scheduler on the same database as a restarted ``kefu run`` would, and fires them all (they
are due at once) with ``Scheduler.run_due``; each job reads its conversation's state, as the
session-expiry job does. Prints jobs/s per phase. Asserts nothing.

Then kefu's own handoff jobs, built as ``kefu run`` builds them (``bot.cli``) on a SQLite file,
with Telegram and Slack pointed at the doubles in ``bot.testing``: N Telegram customers ask
for a person; their SLA jobs fall due together and fire (each tells its customer through the
conversation's outbox and raises its ticket in Slack); then every ticket is claimed and
resolved, and the N satisfaction surveys fire (each starts the survey flow in its
conversation). Prints jobs/s for both.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

# bench/telegram.py would shadow python-telegram-bot: this folder leaves the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bot.app import build, scheduled_work  # noqa: E402
from bot.desk import Desk  # noqa: E402
from bot.events import UserMessage  # noqa: E402
from bot.ports import ScheduledJob  # noqa: E402
from bot.scheduling import Scheduler, handoffs, surveys  # noqa: E402
from bot.scheduling.work import ScheduledWork  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.state import ConversationState  # noqa: E402
from bot.store import SqlStore, open_store  # noqa: E402
from bot.testing.slack_double import SlackApiDouble  # noqa: E402
from bot.testing.telegram_double import TelegramBotApiDouble  # noqa: E402

REPO_ROOT = _HERE.parent
DESK, AGENT = "C0BENCHDESK", "U0BENCHAGENT"


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


async def handoff_jobs(count: int) -> None:
    """Fire N handoff SLA jobs, then N satisfaction surveys, in kefu as ``kefu run`` builds it."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    users = {AGENT: {"id": AGENT, "name": "ana", "profile": {"real_name": "Ana Bench"}}}
    with tempfile.TemporaryDirectory() as folder:
        async with (
            SlackApiDouble(members={DESK: [AGENT]}, users=users) as slack,
            TelegramBotApiDouble(token="4242:BENCH", username="bench_bot") as telegram,
        ):
            settings = Settings(
                database_url=f"sqlite+aiosqlite:///{Path(folder) / 'kefu.db'}",
                telegram_bot_token="4242:BENCH",
                telegram_webhook_url="https://bench.example",
                telegram_webhook_secret="bench",
                telegram_api_base_url=telegram.base_url,
                slack_bot_token=slack.token,
                slack_signing_secret="bench-signing-secret",
                slack_handoff_channel=DESK,
                slack_api_base_url=slack.base_url.rstrip("/"),
                handoff_sla=1.0,
                handoff_max_wait=3600.0,
                csat_delay=3600.0,
            )
            app, channels = await build(REPO_ROOT, settings)
            work = scheduled_work(app)
            desk = app.dialogue.desk
            for channel in channels:
                await channel.start()
            ids = [f"telegram:{9_000_000 + n}" for n in range(count)]
            await asyncio.gather(
                *(
                    app.turns.process(
                        UserMessage(
                            channel="telegram",
                            conversation_id=cid,
                            sender_id=cid.partition(":")[2],
                            text="human",
                            message_id=f"bench-{cid}",
                        )
                    )
                    for cid in ids
                )
            )
            threads = await _posted(work, ids)
            await asyncio.sleep(1.0)  # every SLA is up
            sla = len(await work.scheduler.jobs(kind=handoffs.SLA))
            started = time.perf_counter()
            await work.start()  # takes the overdue jobs up and fires them
            await _all_ran(work, handoffs.SLA)
            sla_time = time.perf_counter() - started
            assert isinstance(desk, Desk)
            for thread in threads:
                await desk.claim(thread=thread, user=AGENT)
                await desk.resolve(thread=thread, user=AGENT)
            due = await work.scheduler.jobs(kind=surveys.KIND)
            asked = len(due)
            started = time.perf_counter()
            now = time.time()  # the surveys fall due now (a store write each, counted)
            await asyncio.gather(
                *(work.scheduler.schedule(dataclasses.replace(j, run_at=now)) for j in due)
            )
            await _all_ran(work, surveys.KIND)
            survey_time = time.perf_counter() - started
            await work.shutdown()
            for channel in channels:
                await channel.stop()
            await app.close()
    print(
        f"handoff SLA jobs ({sla} ran, each a conversation write, a Telegram send, "
        "a Slack line queued): "
        f"{sla / sla_time:,.0f} jobs/s"
    )
    print(
        f"satisfaction surveys ({asked} ran, each starting a flow and a Telegram send): "
        f"{asked / survey_time:,.0f} jobs/s"
    )


async def _all_ran(work: ScheduledWork, kind: str) -> None:
    """Fire what is due and wait until no job of ``kind`` is left."""
    for _ in range(6000):
        await work.scheduler.run_due()
        if not await work.scheduler.jobs(kind=kind):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{kind} jobs were still stored after a minute")


async def _posted(work: ScheduledWork, ids: list[str]) -> list[str]:
    """Wait until every ticket is in Slack; their threads."""
    assert work.handoffs is not None
    desk = work.handoffs.desk
    for _ in range(6000):
        tickets = [await desk.ticket(cid) for cid in ids]
        threads = [t.thread for t in tickets if t is not None and t.thread is not None]
        if len(threads) == len(ids):
            return threads
        await asyncio.sleep(0.01)
    raise TimeoutError("the tickets were not all posted within a minute")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--database", default=None, help="a PostgreSQL URL; default SQLite")
    parser.add_argument("--handoffs", type=int, default=200, help="0: skip the handoff jobs")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.database))
    if args.handoffs:
        asyncio.run(handoff_jobs(args.handoffs))
