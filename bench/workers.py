"""Scaling out: turns per second and latency with 1, 2 and 4 workers on PostgreSQL, beside one
worker on SQLite, in the same run; and a soak that prints each worker's memory every minute.

    python bench/workers.py --postgres postgresql://postgres@127.0.0.1:5432/kefu_scale
                            [--workers 1,2,4] [--conversations 64] [--turns 1500]
                            [--project tests/projects/workers]
    python bench/workers.py --postgres URL --soak 30 [--rate 20] [--workers 4]

Each configuration gets a fresh database (created on the server of ``--postgres`` and dropped
afterwards; a fresh SQLite file), its workers (``kefu run`` subprocesses, the real thing) behind
the round-robin proxy of ``bot.testing.tcp_proxy``, a warm-up, then ``--turns`` turns from
``--conversations`` concurrent conversations (each sends its next message when answered: a
closed loop, so the figure is the saturation throughput). The project's turn runs one custom
action (the workers test project's ``action_count``). Printed per configuration: turns/s, p50
and p99 latency, the workers' CPU time per turn (steadier than throughput on a busy machine),
errors; then each PostgreSQL configuration's throughput as a ratio of one
PostgreSQL worker's. On a machine with two cores, more workers cannot add throughput: the
point is that nothing collapses, and what a worker costs.

``--soak MINUTES`` drives N workers on PostgreSQL at ``--rate`` turns/s (open loop) for that
long, printing every minute the turns answered, the errors and each worker's resident memory
(``/proc/<pid>/status``), and at the end how much each grew since minute 1 (minute 0 is
before any load): flat memory means no leak. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.testing.cluster import WorkerCluster  # noqa: E402

WARM_UP_TURNS = 100
WORKER_ENV = {
    "KEFU_DB_POOL_SIZE": "4",
    "KEFU_DB_MAX_OVERFLOW": "4",
    "KEFU_DB_LOCK_POOL_SIZE": "8",
}


@dataclass
class Tally:
    """Latencies of answered turns and the errors met."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_seconds: float = 0.0
    """CPU time the workers spent meanwhile (user and system)."""

    def line(self, name: str, seconds: float) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        cpu = self.cpu_seconds * 1000 / max(1, len(self.latencies))
        return (
            f"{name:<22} {len(self.latencies) / seconds:8.1f} turns/s   "
            f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
            f"worker CPU {cpu:5.1f} ms/turn   errors {self.errors}"
        )


async def _turn(http: aiohttp.ClientSession, url: str, sender: str, n: int, tally: Tally) -> None:
    body = {"sender": sender, "message": f"count {sender}-{n}", "message_id": f"m{n}"}
    started = time.perf_counter()
    try:
        async with http.post(f"{url}/webhooks/rest/webhook", json=body) as response:
            await response.read()
            if response.status != 200:
                tally.errors += 1
                return
    except (aiohttp.ClientError, TimeoutError):
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - started)


async def _closed_loop(url: str, conversations: int, turns: int) -> tuple[Tally, float]:
    """``turns`` turns from ``conversations`` senders, each waiting for its answer."""
    tally = Tally()
    numbers = itertools.count()
    run = uuid.uuid4().hex[:6]
    connector = aiohttp.TCPConnector(limit=conversations * 2)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def conversation(index: int) -> None:
            sender = f"{run}-{index}"
            for n in range(turns):
                if next(numbers) >= turns:
                    return
                await _turn(http, url, sender, n, tally)

        started = time.perf_counter()
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
        return tally, time.perf_counter() - started


@contextlib.asynccontextmanager
async def _postgres_database(server: str) -> AsyncIterator[str]:
    """A fresh database on ``server``'s PostgreSQL, dropped afterwards; its URL."""
    url = make_url(server)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    name = f"kefu_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql", database=name).render_as_string(False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def _cluster(
    project: Path, database_url: str, count: int, logs: Path
) -> AsyncIterator[WorkerCluster]:
    cluster = WorkerCluster(
        project,
        database_url,
        count=count,
        logs=logs,
        env={**WORKER_ENV, "KEFU_TEST_ACTION_LOG": str(logs / "actions.log")},
    )
    try:
        async with aiohttp.ClientSession() as http:
            await cluster.start(http)
        yield cluster
    finally:
        await cluster.stop()


async def _measure(args: argparse.Namespace, logs: Path) -> None:
    counts = [int(part) for part in args.workers.split(",")]
    configurations = [("sqlite, 1 worker", None, 1)] + [
        (f"postgres, {n} worker{'s' if n > 1 else ''}", args.postgres, n) for n in counts
    ]
    throughput: dict[int, float] = {}
    print(f"{args.conversations} concurrent conversations, {args.turns} turns per configuration")
    for name, server, count in configurations:
        directory = Path(tempfile.mkdtemp(dir=logs))
        async with contextlib.AsyncExitStack() as stack:
            if server is None:
                url = f"sqlite:///{directory / 'bench.db'}"
            else:
                url = await stack.enter_async_context(_postgres_database(server))
            cluster = await stack.enter_async_context(_cluster(args.project, url, count, directory))
            await _closed_loop(cluster.url, args.conversations, WARM_UP_TURNS)
            cpu_before = _cpu_seconds(cluster, count)
            tally, seconds = await _closed_loop(cluster.url, args.conversations, args.turns)
            tally.cpu_seconds = _cpu_seconds(cluster, count) - cpu_before
        print(tally.line(name, seconds), flush=True)
        if server is not None:
            throughput[count] = len(tally.latencies) / seconds
    if 1 in throughput:
        ratios = ", ".join(
            f"{n} workers {rate / throughput[1]:.2f}x" for n, rate in throughput.items() if n > 1
        )
        print(f"throughput against one PostgreSQL worker: {ratios}")


def _cpu_seconds(cluster: WorkerCluster, count: int) -> float:
    """User and system CPU seconds the workers used so far (``/proc/<pid>/stat``): less
    distorted by other processes on the machine than throughput."""
    ticks = 0
    for index in range(count):
        fields = Path(f"/proc/{cluster.pid(index)}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _soak(args: argparse.Namespace, logs: Path) -> None:
    count = int(args.workers.split(",")[-1])
    async with (
        _postgres_database(args.postgres) as url,
        _cluster(args.project, url, count, logs) as cluster,
    ):
        tally = Tally()
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http:
            pending: set[asyncio.Task[None]] = set()
            cpu_before = _cpu_seconds(cluster, count)
            started = time.monotonic()
            turn = 0
            next_report = started
            readings: list[list[float]] = []
            print(f"soak: {count} workers, {args.rate} turns/s for {args.soak} min")
            while time.monotonic() - started < args.soak * 60:
                now = time.monotonic()
                if now >= next_report:
                    readings.append([_rss_mib(cluster.pid(i)) for i in range(count)])
                    rss = "  ".join(f"w{i} {mib:6.1f} MiB" for i, mib in enumerate(readings[-1]))
                    minute = round((now - started) / 60)
                    print(
                        f"min {minute:3d}  answered {len(tally.latencies):7d}  "
                        f"errors {tally.errors:4d}  {rss}",
                        flush=True,
                    )
                    next_report += 60
                sender = f"soak-{turn % 500}"
                task = asyncio.create_task(_turn(http, cluster.url, sender, turn, tally))
                pending.add(task)
                task.add_done_callback(pending.discard)
                turn += 1
                await asyncio.sleep(max(0.0, started + turn / args.rate - time.monotonic()))
            await asyncio.gather(*pending)
            readings.append([_rss_mib(cluster.pid(i)) for i in range(count)])
            tally.cpu_seconds = _cpu_seconds(cluster, count) - cpu_before
        print(tally.line(f"soak, {count} workers", time.monotonic() - started))
        if len(readings) > 2:  # minute 0 is before any load: growth counts from minute 1
            growth = "  ".join(
                f"w{i} {end - begin:+6.1f} MiB"
                for i, (begin, end) in enumerate(zip(readings[1], readings[-1], strict=True))
            )
            print(f"memory from minute 1 to the end: {growth}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server URL")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--turns", type=int, default=1500)
    parser.add_argument("--project", type=Path, default=REPO / "tests" / "projects" / "workers")
    parser.add_argument("--soak", type=float, default=None, help="minutes of steady load")
    parser.add_argument("--rate", type=float, default=20.0, help="soak turns per second")
    args = parser.parse_args()
    args.project = args.project.resolve()
    with tempfile.TemporaryDirectory(prefix="kefu-workers-") as logs:
        asyncio.run((_soak if args.soak else _measure)(args, Path(logs)))


if __name__ == "__main__":
    main()
