"""Telegram webhook against the REST channel: throughput and update→sendMessage latency.

    python bench/telegram.py [--conversations 100] [--duration 10] [--warmup 2]
                             [--project DIR] [--keep-db]

Starts ``kefu run`` (``python -m bot.cli run``) as a subprocess with a fresh SQLite file and
Telegram in webhook mode, pointed at a Telegram Bot API double (``bot.testing.telegram_double``)
that runs in this process beside the load client (aiohttp, one keep-alive session). The same
server serves both channels; the phases run one after the other:

1. REST: N conversations (distinct senders) each loop the reference shop's order-tracking
   script ("where is my order" -> "KF-10001" -> "alice@example.com" -> "thanks"), one turn at
   a time, through ``POST /webhooks/rest/webhook``; latency is the HTTP round trip.
2. Telegram: N private chats loop the same script as Telegram updates posted to
   ``POST /webhooks/telegram`` (with the secret header). A turn ends when as many
   ``sendMessage`` calls reached the double for that chat as the REST answer had messages for
   the same step; latency is from posting the update to that last ``sendMessage`` arriving.

Printed: turns/s and p50/p99 latency per channel, the ratio Telegram/REST of turns/s (goal
≥ 0.7), errors and timeouts, and how many Telegram replies differed from the REST ones. The
double shares this process's event loop with the load client, so Telegram figures include the
cost of the fake Bot API. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bot.testing.telegram_double import TelegramBotApiDouble  # noqa: E402

TOKEN = "424242:BENCH-TOKEN"
SECRET = "bench-secret-token"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REST_PATH = "/webhooks/rest/webhook"
TELEGRAM_PATH = "/webhooks/telegram"
SCRIPT = ("where is my order", "KF-10001", "alice@example.com", "thanks")
GOAL_RATIO = 0.7
TURN_TIMEOUT = 15.0
FIRST_CHAT_ID = 7_000_000


@dataclass
class Phase:
    """What one channel's run measured."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    elapsed: float = 0.0
    mismatches: int = 0
    example: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def line(self) -> str:
        p50, p99 = _percentile(self.latencies, 50), _percentile(self.latencies, 99)
        return (
            f"{self.name:<9} {len(self.latencies):>7} turns in {self.elapsed:5.1f} s = "
            f"{self.rate:8.1f} turns/s   p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
            f"errors {self.errors}  timeouts {self.timeouts}"
        )


class Arrivals:
    """Follows the double's ``sendMessage`` traffic: arrival time and text, per chat."""

    def __init__(self, api: TelegramBotApiDouble) -> None:
        self.api = api
        self.texts: defaultdict[int, list[str]] = defaultdict(list)
        self.times: defaultdict[int, list[float]] = defaultdict(list)
        self._events: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await self.api.wait_for("sendMessage", len(self.api.calls_to("sendMessage")) + 1)
            now = time.perf_counter()
            sent = self.api.sent_messages
            for message in sent[self._seen :]:
                chat = int(message["chat"]["id"])
                self.texts[chat].append(str(message.get("text", "")))
                self.times[chat].append(now)
                self._events[chat].set()
            self._seen = len(sent)

    async def until(self, chat: int, count: int) -> float:
        """Wait until ``count`` messages reached ``chat``; the arrival time of the last one."""
        while len(self.times[chat]) < count:
            event = self._events[chat]
            event.clear()
            await event.wait()
        return self.times[chat][count - 1]


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def kefu_server(
    project: Path, db_path: Path, api_base_url: str
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``kefu run`` in a subprocess, Telegram in webhook mode at the double; its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_URL": url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE_URL": api_base_url,
        "PTB_TIMEDELTA": "true",
    }
    process = _spawn(project, port, env)
    try:
        await _wait_healthy(url, process)
        yield url, process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


def _spawn(project: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bot.cli", "run", "--project", str(project)]
    return subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise SystemExit(f"kefu exited with {process.returncode}:\n{err[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise SystemExit("kefu did not become healthy in 120 s")


async def rest_phase(
    session: aiohttp.ClientSession, url: str, chats: int, duration: float, tag: str
) -> tuple[Phase, dict[int, list[str]]]:
    """N REST conversations looping the script; returns the figures and each step's texts."""
    phase = Phase("REST")
    expected: dict[int, list[str]] = {}
    deadline = time.perf_counter() + duration

    async def conversation(index: int) -> None:
        sender = f"bench-{tag}-{index}"
        for step in itertools.cycle(range(len(SCRIPT))):
            if time.perf_counter() >= deadline:
                return
            body = {"sender": sender, "message": SCRIPT[step]}
            started = time.perf_counter()
            try:
                async with session.post(url + REST_PATH, json=body) as response:
                    answer: Any = await response.json()
                    ok = response.status == 200 and isinstance(answer, list)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                ok, answer = False, None
            if not ok:
                phase.errors += 1
                continue
            phase.latencies.append(time.perf_counter() - started)
            expected.setdefault(step, [str(m.get("text", "")) for m in answer])

    began = time.perf_counter()
    await asyncio.gather(*(conversation(i) for i in range(chats)))
    phase.elapsed = time.perf_counter() - began
    return phase, expected


async def telegram_phase(
    session: aiohttp.ClientSession,
    url: str,
    arrivals: Arrivals,
    expected: dict[int, list[str]],
    chats: int,
    duration: float,
    first_chat: int,
    update_ids: itertools.count[int],
) -> Phase:
    """N Telegram chats looping the script through the webhook; see the module docstring."""
    phase = Phase("Telegram")
    deadline = time.perf_counter() + duration
    headers = {SECRET_HEADER: SECRET}

    async def chat(chat_id: int) -> None:
        user = {"id": chat_id, "is_bot": False, "first_name": "Bench", "language_code": "en"}
        private = {"id": chat_id, "type": "private", "first_name": "Bench"}
        received = len(arrivals.times[chat_id])
        for step in itertools.cycle(range(len(SCRIPT))):
            if time.perf_counter() >= deadline:
                return
            update_id = next(update_ids)
            update = {
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "date": int(time.time()),
                    "chat": private,
                    "from": user,
                    "text": SCRIPT[step],
                },
            }
            want = expected.get(step, [""])
            started = time.perf_counter()
            try:
                async with session.post(url + TELEGRAM_PATH, json=update, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                phase.errors += 1
                continue
            received += len(want)
            try:
                async with asyncio.timeout(TURN_TIMEOUT):
                    arrived = await arrivals.until(chat_id, received)
            except TimeoutError:
                phase.timeouts += 1
                received = len(arrivals.times[chat_id])
                continue
            phase.latencies.append(arrived - started)
            got = arrivals.texts[chat_id][received - len(want) : received]
            if got != want:
                phase.mismatches += 1
                phase.example = phase.example or f"step {step}: REST {want!r}, Telegram {got!r}"

    began = time.perf_counter()
    await asyncio.gather(*(chat(first_chat + i) for i in range(chats)))
    phase.elapsed = time.perf_counter() - began
    return phase


async def run(args: argparse.Namespace, project: Path, db_path: Path) -> None:
    update_ids = itertools.count(1)
    async with TelegramBotApiDouble(token=TOKEN, username="kefu_bench_bot") as api:
        arrivals = Arrivals(api)
        arrivals.start()
        async with kefu_server(project, db_path, api.base_url) as (url, process):
            hooked = api.webhook.get("secret_token") == SECRET
            print(f"kefu {url} (pid {process.pid}), project {project}, db {db_path}")
            print(f"Telegram double {api.base_url}, webhook registered with secret: {hooked}")
            print(
                f"{args.conversations} concurrent conversations, {args.duration:g} s per phase "
                f"after {args.warmup:g} s warm-up; script: {' -> '.join(SCRIPT)}"
            )
            connector = aiohttp.TCPConnector(limit=args.conversations * 2)
            timeout = aiohttp.ClientTimeout(total=TURN_TIMEOUT)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                n = args.conversations
                if args.warmup > 0:
                    _, expected = await rest_phase(session, url, n, args.warmup, "warm")
                    await telegram_phase(
                        session, url, arrivals, expected, n, args.warmup, 1, update_ids
                    )
                rest, expected = await rest_phase(session, url, n, args.duration, "run")
                telegram = await telegram_phase(
                    session, url, arrivals, expected, n, args.duration, FIRST_CHAT_ID, update_ids
                )
        await arrivals.stop()
        sends = len(api.calls_to("sendMessage"))
        typing = len(api.calls_to("sendChatAction"))
    print()
    print(rest.line())
    print(telegram.line())
    ratio = telegram.rate / rest.rate if rest.rate else float("nan")
    verdict = "meets" if ratio >= GOAL_RATIO else "below"
    print(f"ratio Telegram/REST turns/s: {ratio:.2f} ({verdict} the goal of {GOAL_RATIO})")
    replies = sum(len(v) for v in expected.values())
    print(
        f"Telegram replies differing from REST's: {telegram.mismatches} turns; "
        f"messages per script step {[len(expected.get(i, [])) for i in range(len(SCRIPT))]} "
        f"({replies} per round); sendMessage calls {sends}, sendChatAction {typing}"
    )
    if telegram.example:
        print(f"first difference: {telegram.example}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=100, help="concurrent chats")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per phase")
    parser.add_argument("--project", default=str(REPO_ROOT), help="project directory")
    parser.add_argument("--keep-db", action="store_true", help="leave the SQLite file behind")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="kefu-bench-telegram-"))
    db_path = workdir / "kefu.db"
    try:
        asyncio.run(run(args, Path(args.project).resolve(), db_path))
    finally:
        if not args.keep_db:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                workdir.rmdir()


if __name__ == "__main__":
    main()
