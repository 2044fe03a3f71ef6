"""End-to-end load on the REST channel: throughput, latency under a steady rate, growth per turn.

    python bench/load.py [--url URL] [--conversations 100] [--duration 10] [--rate 200]
                         [--project DIR] [--growth-turns 1000] [--message-ids]

Without ``--url`` it starts kefu (``kefu run --project <repo root> --port <free port>``, with
``KEFU_DATABASE_URL`` pointing at a fresh SQLite file) and the baseline (``bench/baseline_app.py``:
Starlette + uvicorn + one aiosqlite INSERT/commit per message) as two subprocesses; this script
is the load client, a third process (aiohttp, one keep-alive session). With ``--url`` it drives
that kefu server only and has no baseline to compare with.

Each conversation (a distinct sender id) loops through the reference shop's order-tracking
flow, one turn at a time: "where is my order" -> "KF-10001" -> "alice@example.com" (the order's
status and "anything else?") -> "thanks". With ``--distinct`` (phases 1 and 2) the free-text
turns are signed with a name that changes every turn ("where is my order? Sam Okafor writing",
"thanks, Sam Okafor"), so that no message is served from the caches of recent messages. Printed:

1. saturation: completed turns/s with N concurrent conversations, for kefu and the baseline,
   and their ratio; with the CPU time each server spent per turn (all its threads, from
   ``/proc``; a steadier figure than turns/s on a shared host);
2. latency at a steady offered rate (open loop, spread over the N conversations), measured
   from each turn's scheduled send time so that a stall is not hidden (no coordinated omission);
3. growth: one conversation driven for 1,000 sequential turns ("where is my order" /
   "KF-10001" / "cancel"), the median latency of the first 20 turns against the last 20.

Non-200 answers and transport errors are counted and printed. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/webhooks/rest/webhook"
PURCHASE_TURNS = ("where is my order", "KF-10001", "alice@example.com", "thanks")
GROWTH_TURNS = ("where is my order", "KF-10001", "cancel")
SIGNED = {"where is my order": "where is my order? {name} writing", "thanks": "thanks, {name}"}
"""With ``--distinct``, the free-text turns signed by a name no recent message had."""
FIRST_NAMES = [
    "Sam",
    "Maria",
    "Li",
    "Ana",
    "Tom",
    "Mei",
    "Omar",
    "Eva",
    "Raj",
    "Ines",
    "Ken",
    "Zoe",
    "Ali",
    "Nora",
    "Ivan",
    "Lea",
    "Hugo",
    "Aya",
    "Ben",
    "Rosa",
    "Yuki",
    "Tariq",
    "Elif",
    "Noah",
    "Sara",
    "Jon",
    "Lina",
    "Marco",
    "Hana",
    "Paul",
]
LAST_NAMES = [
    "Okafor",
    "Silva",
    "Chen",
    "Novak",
    "Berg",
    "Haddad",
    "Costa",
    "Meyer",
    "Ito",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Khan",
    "Larsen",
    "Moreau",
    "Tanaka",
    "Ortiz",
    "Fischer",
    "Nguyen",
    "Bauer",
    "Petrov",
    "Santos",
    "Wong",
    "Keller",
    "Jensen",
    "Murphy",
    "Alves",
    "Weber",
    "Sato",
    "Brown",
]
GROWTH_WINDOW = 20

_LETTERS = str.maketrans("0123456789", "ghijklmnop")
"""Message ids of letters only: a run of digits may read as a card number, which is refused."""

GOAL_TURNS_PER_S = 1000.0
GOAL_RATIO = 0.5
GOAL_P99_MS = 25.0
GOAL_GROWTH = 1.2

# --- measurement -----------------------------------------------------------------------------


@dataclass
class Tally:
    """What one phase against one server saw: latencies (seconds) and everything that failed."""

    latencies: list[float] = field(default_factory=list)
    non_200: int = 0
    errors: int = 0
    empty: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""

    @property
    def completed(self) -> int:
        """Turns answered with 200 (empty answers included; they are counted apart)."""
        return len(self.latencies)

    def problems(self) -> str:
        """One line: non-200 answers (by status), errors, empty reply lists."""
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        text = (
            f"non-200: {self.non_200}{f' ({by_status})' if by_status else ''}, "
            f"errors: {self.errors}, empty replies: {self.empty}"
        )
        return text + (f"  first error: {self.first_error}" if self.first_error else "")


async def _turn(
    session: aiohttp.ClientSession,
    url: str,
    sender: str,
    text: str,
    tally: Tally,
    since: float,
    *,
    ids: bool,
) -> None:
    """Send one message and wait for its answer; record latency from ``since`` (perf_counter).

    With ``ids`` the message carries a fresh ``message_id``, as a REST client that retries
    (README) sends it: kefu then claims the id and journals the turn's custom actions.
    """
    message = {"sender": sender, "message": text}
    if ids:
        message["message_id"] = uuid.uuid4().hex.translate(_LETTERS)
    try:
        async with session.post(url, json=message) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.errors += 1
        tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
        return
    elapsed = time.perf_counter() - since
    if status != 200:
        tally.non_200 += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        tally.first_error = tally.first_error or f"HTTP {status}: {body[:200]!r}"
        return
    tally.latencies.append(elapsed)
    try:
        replies = json.loads(body)
    except ValueError:
        replies = None
    if not isinstance(replies, list) or not replies:
        tally.empty += 1


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    conversations: int,
    duration: float,
    prefix: str,
    *,
    distinct: bool = False,
    ids: bool = False,
) -> tuple[float, Tally]:
    """Each conversation sends its next turn as soon as the previous one is answered.

    Returns completed turns per second over the phase (in-flight turns finish after the
    deadline and are counted, with the time they took) and the tally.
    """
    tally = Tally()
    started = time.perf_counter()
    deadline = started + duration
    serials = itertools.count()

    async def conversation(index: int) -> None:
        sender = f"{prefix}-{index}"
        turn = 0
        while time.perf_counter() < deadline:
            text = purchase_turn(turn, next(serials), distinct=distinct)
            await _turn(session, url, sender, text, tally, time.perf_counter(), ids=ids)
            turn += 1

    await asyncio.gather(*(conversation(i) for i in range(conversations)))
    return tally.completed / (time.perf_counter() - started), tally


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    conversations: int,
    rate: float,
    duration: float,
    prefix: str,
    *,
    distinct: bool = False,
    ids: bool = False,
) -> tuple[float, Tally]:
    """Offer ``rate`` turns/s in total, each conversation on its own fixed schedule.

    Conversation ``i`` sends every ``conversations / rate`` seconds, offset by ``i / rate``, so
    the sends are evenly spread. A turn still waits for the previous answer of its conversation;
    its latency runs from its scheduled time, so falling behind shows in the figures.
    Returns the achieved rate and the tally.
    """
    tally = Tally()
    period = conversations / rate
    started = time.perf_counter() + 0.05
    deadline = started + duration
    serials = itertools.count()

    async def conversation(index: int) -> None:
        sender = f"{prefix}-{index}"
        due = started + index / rate
        turn = 0
        while due < deadline:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            text = purchase_turn(turn, next(serials), distinct=distinct)
            await _turn(session, url, sender, text, tally, due, ids=ids)
            turn += 1
            due += period

    await asyncio.gather(*(conversation(i) for i in range(conversations)))
    return tally.completed / (time.perf_counter() - started), tally


async def growth(
    session: aiohttp.ClientSession, url: str, turns: int, prefix: str, *, ids: bool
) -> tuple[float, float, float, Tally]:
    """One conversation, ``turns`` sequential turns.

    Returns the median latency of the first 20 turns, of turns 101-120 (the state has
    reached its steady size by then, so first-vs-last growth that already shows here is a
    ramp-up, not per-turn growth), of the last 20, and the tally.
    """
    tally = Tally()
    sender = f"{prefix}-0"
    for turn in range(turns):
        text = GROWTH_TURNS[turn % len(GROWTH_TURNS)]
        await _turn(session, url, sender, text, tally, time.perf_counter(), ids=ids)
    window = min(GROWTH_WINDOW, max(1, len(tally.latencies) // 2))
    first = statistics.median(tally.latencies[:window]) if tally.latencies else float("nan")
    last = statistics.median(tally.latencies[-window:]) if tally.latencies else float("nan")
    middle = tally.latencies[100 : 100 + window]
    return first, statistics.median(middle) if middle else float("nan"), last, tally


def purchase_turn(turn: int, serial: int, *, distinct: bool) -> str:
    """The purchase flow's ``turn``-th message; with ``distinct``, its free-text turns signed
    with the ``serial``-th name (900 names, so recent messages never repeat)."""
    text = PURCHASE_TURNS[turn % len(PURCHASE_TURNS)]
    if not distinct or text not in SIGNED:
        return text
    first = FIRST_NAMES[serial % len(FIRST_NAMES)]
    last = LAST_NAMES[serial // len(FIRST_NAMES) % len(LAST_NAMES)]
    return SIGNED[text].format(name=f"{first} {last}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test; ``process`` is None when it was started by someone else."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def webhook(self) -> str:
        """The REST webhook URL."""
        return self.base_url.rstrip("/") + WEBHOOK

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output, for a failure report."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kefu_command(port: int, project: Path) -> list[str]:
    """The command line that starts kefu: `kefu run` from this interpreter's environment."""
    script = Path(sys.executable).with_name("kefu")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return [*prefix, "run", "--project", str(project), "--host", "127.0.0.1", "--port", str(port)]


def _spawn(
    name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path, port: int
) -> Server:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, f"http://127.0.0.1:{port}", process, log_path)


def start_kefu(tmp: Path, project: Path) -> Server:
    """Start kefu for ``project`` on a free port with a fresh SQLite database in ``tmp``."""
    port = free_port()
    command = _kefu_command(port, project)
    env = {
        **os.environ,
        "KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    return _spawn("kefu", command, env, tmp, tmp / "kefu.log", port)


def start_baseline(tmp: Path) -> Server:
    """Start ``bench/baseline_app.py`` on a free port with its own SQLite file in ``tmp``."""
    port = free_port()
    script = Path(__file__).resolve().with_name("baseline_app.py")
    command = [sys.executable, str(script), "--port", str(port), "--db", str(tmp / "base.db")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return _spawn("baseline", command, env, tmp, tmp / "baseline.log", port)


async def wait_healthy(session: aiohttp.ClientSession, server: Server, patience: float) -> None:
    """Poll ``GET /health`` until it answers 200; raise if the process dies or time runs out."""
    deadline = time.monotonic() + patience
    url = server.base_url.rstrip("/") + "/health"
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} not healthy after {patience:.0f}s:\n{server.log_tail()}")


def process_cpu_seconds(server: Server) -> float | None:
    """CPU time (user + system) of every thread of a server this script started, from
    ``/proc``; None elsewhere. On a shared host the CPU a turn costs is a steadier figure than
    turns per second, which depend on the cores the other processes leave."""
    if server.process is None:
        return None
    try:
        with open(f"/proc/{server.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5): the process's threads, all of them.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(server: Server) -> None:
    """Stop a server this script started: SIGTERM (graceful), then SIGKILL after 10 s."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def servers(
    args: argparse.Namespace, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Server, Server | None]]:
    """The kefu server under test and the baseline (None with ``--url``), healthy, then stopped."""
    if args.url:
        kefu = Server("kefu", args.url)
        await wait_healthy(session, kefu, patience=10)
        print(f"kefu:     {args.url} (given)")
        yield kefu, None
        return
    with tempfile.TemporaryDirectory(prefix="kefu-load-") as name:
        tmp = Path(name)
        kefu = start_kefu(tmp, args.project)
        baseline = start_baseline(tmp)
        try:
            started = time.perf_counter()
            await wait_healthy(session, kefu, patience=args.startup_timeout)
            ready = time.perf_counter() - started
            await wait_healthy(session, baseline, patience=30)
            print(f"kefu:     {kefu.base_url} via kefu run, healthy after {ready:.1f}s")
            print(f"baseline: {baseline.base_url} (bench/baseline_app.py)")
            yield kefu, baseline
            for server in (kefu, baseline):
                if server.process is not None and server.process.poll() is not None:
                    print(f"warning: {server.name} exited during the run:\n{server.log_tail()}")
        finally:
            stop(kefu)
            stop(baseline)


# --- the run ---------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    run_id = uuid.uuid4().hex[:6]
    n, duration, ids = args.conversations, args.duration, args.message_ids
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        servers(args, session) as (kefu, baseline),
    ):
        targets = [s for s in (kefu, baseline) if s is not None]
        print(
            f"client: aiohttp {aiohttp.__version__}, pid {os.getpid()}; "
            f"{n} conversations, {duration:g}s per phase, {os.cpu_count()} CPUs"
            f"{'; every message with a message_id' if ids else ''}\n"
        )

        print(f"1. saturation: {n} concurrent conversations, closed loop, {duration:g}s")
        rates: dict[str, float] = {}
        for server in targets:
            # Warm-up: open the connections, fill caches; not counted.
            await closed_loop(
                session,
                server.webhook,
                n,
                args.warmup,
                f"w{run_id}",
                distinct=args.distinct,
                ids=ids,
            )
            cpu_before = process_cpu_seconds(server)
            rate, tally = await closed_loop(
                session, server.webhook, n, duration, f"s{run_id}", distinct=args.distinct, ids=ids
            )
            cpu_after = process_cpu_seconds(server)
            rates[server.name] = rate
            cpu = ""
            if cpu_before is not None and cpu_after is not None and tally.completed:
                per_turn = (cpu_after - cpu_before) / tally.completed * 1000
                cpu = f"; CPU {per_turn:.2f} ms/turn"
            print(
                f"   {server.name:<9}{rate:8.0f} turns/s  ({tally.completed} turns; "
                f"p50 {_ms(percentile(tally.latencies, 0.5)).strip()}, "
                f"p99 {_ms(percentile(tally.latencies, 0.99)).strip()}{cpu})  {tally.problems()}"
            )
        kefu_rate = rates["kefu"]
        print(
            f"   goal: >= {GOAL_TURNS_PER_S:.0f} turns/s -> {kefu_rate:.0f}, "
            f"{_verdict(kefu_rate >= GOAL_TURNS_PER_S)}"
        )
        if baseline is not None:
            ratio = kefu_rate / rates["baseline"]
            print(
                f"   kefu/baseline ratio: {ratio:.2f}x  (goal >= {GOAL_RATIO}x, "
                f"{_verdict(ratio >= GOAL_RATIO)})"
            )

        print(
            f"\n2. latency at {args.rate:g} turns/s offered (open loop over {n} conversations, "
            f"{duration:g}s; from scheduled send)"
        )
        p99s: dict[str, float] = {}
        for server in targets:
            achieved, tally = await open_loop(
                session,
                server.webhook,
                n,
                args.rate,
                duration,
                f"l{run_id}",
                distinct=args.distinct,
                ids=ids,
            )
            p99s[server.name] = percentile(tally.latencies, 0.99)
            print(
                f"   {server.name:<9}p50 {_ms(percentile(tally.latencies, 0.5))}  "
                f"p90 {_ms(percentile(tally.latencies, 0.9))}  "
                f"p99 {_ms(p99s[server.name])}  max {_ms(max(tally.latencies, default=0.0))}  "
                f"achieved {achieved:.0f} turns/s  {tally.problems()}"
            )
        print(
            f"   goal: kefu p99 < {GOAL_P99_MS:g} ms at 200 turns/s -> "
            f"{p99s['kefu'] * 1000:.1f} ms, {_verdict(p99s['kefu'] * 1000 < GOAL_P99_MS)}"
        )

        print(f"\n3. growth: one kefu conversation, {args.growth_turns} sequential turns")
        first, middle, last, tally = await growth(
            session, kefu.webhook, args.growth_turns, f"g{run_id}", ids=ids
        )
        ratio = last / first
        print(
            f"   first {GROWTH_WINDOW} turns median {_ms(first).strip()}, turns 101-120 median "
            f"{_ms(middle).strip()}, last {GROWTH_WINDOW} median {_ms(last).strip()}, "
            f"last/first {ratio:.2f}x, last/101-120 {last / middle:.2f}x  {tally.problems()}"
        )
        print(
            f"   goal: turn {args.growth_turns} within 20% of turn 1 (ratio <= {GOAL_GROWTH}) -> "
            f"{_verdict(ratio <= GOAL_GROWTH)}"
        )


def main() -> None:
    """Parse the command line and run the three phases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running kefu server (default: start one and a baseline)")
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed phase")
    parser.add_argument("--rate", type=float, default=200.0, help="offered turns/s in phase 2")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before phase 1")
    parser.add_argument("--growth-turns", type=int, default=1000)
    parser.add_argument("--project", default=str(REPO_ROOT), help="kefu project to serve")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="sign the free-text turns with a different name each time (as real customers "
        "write): no recent message repeats, so the encoders' caches do not answer for them",
    )
    parser.add_argument(
        "--message-ids",
        action="store_true",
        help="send a message_id with every message (dedupe and the action journal at work)",
    )
    args = parser.parse_args()
    args.project = Path(args.project).resolve()
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
