"""PostgreSQL restarted under load: two ``kefu run`` workers behind the round-robin proxy, on a
server of the test's own (``bot.testing.private_postgres``: the shared one is never restarted).

Mid-load the server is stopped (``pg_ctl stop -m fast``: every session ended), kept down for a
moment, and started again. The workers are not restarted: they reconnect by themselves. While
the server is down, REST messages are answered 503 with ``Retry-After`` and the clients send them
again (same id); each worker's ``/health`` says the database is unavailable, then ok again; one
worker leads again. Every message is answered once with its own answer, stored exactly once,
in order, and its custom action had its effect once (a retried turn replays the journaled
result; one cut off before its record is called again with the same idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from bot.testing.cluster import WorkerCluster
from bot.testing.private_postgres import PrivatePostgres
from tests.rest_load import Load, check_action_runs, check_stored, converse, until

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "tests" / "projects" / "workers"
WORKERS = 2
CONVERSATIONS = 40
TURNS = 5
CONCURRENT = 24
DOWN_SECONDS = 2.0
"""How long the server stays stopped."""


async def _watch_health(
    http: aiohttp.ClientSession, cluster: WorkerCluster, seen: list[list[str]]
) -> None:
    """Record each worker's ``/health`` database status as it changes, until cancelled."""
    while True:
        for index in range(WORKERS):
            health = await cluster.health(http, index)
            status = "no answer" if health is None else str(health.get("database"))
            if not seen[index] or seen[index][-1] != status:
                seen[index].append(status)
        await asyncio.sleep(0.05)


def _in_order(seen: list[str], wanted: list[str]) -> bool:
    """Whether ``wanted`` occurs in ``seen`` in that order (not necessarily adjacent)."""
    remaining = iter(seen)
    return all(status in remaining for status in wanted)


async def test_workers_ride_out_a_postgres_restart(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    action_log = tmp_path / "actions.log"
    cluster = WorkerCluster(
        PROJECT,
        private_postgres.url,
        count=WORKERS,
        logs=tmp_path,
        env={
            "KEFU_TEST_ACTION_LOG": str(action_log),
            "KEFU_DB_POOL_SIZE": "3",
            "KEFU_DB_MAX_OVERFLOW": "3",
            "KEFU_DB_LOCK_POOL_SIZE": "6",
            "KEFU_DB_TIMEOUT": "3",
            "KEFU_DB_LOCK_TIMEOUT": "5",
            "KEFU_LEADER_RETRY": "0.3",
        },
    )
    connector = aiohttp.TCPConnector(force_close=True, limit=CONCURRENT * 2)
    load = Load()
    seen: list[list[str]] = [[] for _ in range(WORKERS)]
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            await cluster.start(http)

            async def one_leader() -> bool:
                return len(await cluster.leaders(http)) == 1

            await until(one_leader, "one leader among the workers")
            pids = [cluster.pid(index) for index in range(WORKERS)]
            watch = asyncio.create_task(_watch_health(http, cluster, seen))
            gate = asyncio.Semaphore(CONCURRENT)
            senders = [f"r{n:03d}" for n in range(CONVERSATIONS)]
            traffic = asyncio.gather(
                *(converse(http, cluster.url, s, load, gate, turns=TURNS) for s in senders)
            )
            total = CONVERSATIONS * TURNS

            async def a_third_answered() -> bool:
                return load.answered >= total / 3 or traffic.done()

            await until(a_third_answered, "a third of the load answered")
            assert not traffic.done(), "the load ended before the restart: make it longer"
            await private_postgres.stop(mode="fast")
            stopped_at = time.monotonic()
            await asyncio.sleep(DOWN_SECONDS)
            await private_postgres.start()
            await asyncio.wait_for(traffic, timeout=120)
            finished_after = time.monotonic() - stopped_at

            async def every_worker_ok() -> bool:
                return all(statuses[-1:] == ["ok"] for statuses in seen)

            await until(every_worker_ok, "every worker's /health says the database is ok")
            await until(one_leader, "one leader again after the restart")
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            # Reconnected by themselves: the same processes, none restarted.
            assert [cluster.pid(index) for index in range(WORKERS)] == pids
            assert all(cluster.running(index) for index in range(WORKERS))
    finally:
        await cluster.stop()
    print(
        f"\n{WORKERS} workers, {total} turns, PostgreSQL down {DOWN_SECONDS} s mid-load; "
        f"load done {finished_after:.1f} s after the stop; retried messages: "
        f"{len(load.retried)}; failed attempts: {dict(load.failures)}; /health: {seen}"
    )

    assert load.failures["503"] > 0, "no message met the restart: the server was down for none"
    assert load.waits["missing"] == 0, f"503 answers without Retry-After: {load.waits}"
    for index, statuses in enumerate(seen):
        assert _in_order(statuses, ["ok", "unavailable", "ok"]), (index, statuses)
    await check_stored(private_postgres.url, load, in_order=set(load.sent))
    called_again = check_action_runs(action_log, load)
    print(
        f"retried messages whose action was called again with its idempotency key: {called_again}"
    )
