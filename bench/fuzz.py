"""Fuzz a real ``kefu run``: thousands of hostile requests per endpoint, counted by status.

    python bench/fuzz.py [--examples 3000] [--database-url URL] [--project DIR]
                         [--endpoints rest,webchat,telegram,pages,anything] [--concurrency 8]

Starts the Telegram Bot API double (``bot.testing.telegram_double``) in this process and
``kefu run`` as a subprocess, with Telegram in webhook mode against the double and
``KEFU_DATABASE_URL`` set to ``--database-url`` (default: a fresh SQLite file). For each endpoint
it generates ``--examples`` requests with the strategies of ``bot.testing.fuzz`` (hypothesis,
generation only), sends them over HTTP a few at a time, and prints the count of each status,
the number of answers >= 500 and of transport errors, whether ``/health`` still answers, and
how many ERROR lines and tracebacks kefu logged. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings
from yarl import URL

from bot.testing import fuzz
from bot.testing.telegram_double import TelegramBotApiDouble

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:FUZZ-TOKEN"
SECRET = "fuzz-bench-secret"


def generate(endpoint: str, examples: int) -> list[fuzz.FuzzRequest]:
    """``examples`` requests for ``endpoint`` (hypothesis may stop a little short)."""
    found: list[fuzz.FuzzRequest] = []

    @settings(
        max_examples=examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz.requests(endpoint, telegram_secret=SECRET))
    def collect(request: fuzz.FuzzRequest) -> None:
        found.append(request)

    collect()
    return found


async def send_all(
    base: str, requests: list[fuzz.FuzzRequest], concurrency: int
) -> tuple[Counter[int], int, str]:
    """Send ``requests``; the count of each status, of transport errors, and the first error."""
    statuses: Counter[int] = Counter()
    errors = 0
    first_error = ""
    queue = iter(requests)
    timeout = aiohttp.ClientTimeout(total=120)

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors, first_error
        for request in queue:
            url = URL(base + request.path, encoded=True)
            try:
                async with http.request(
                    request.method, url, data=request.body, headers=request.headers
                ) as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

    async with aiohttp.ClientSession(timeout=timeout, skip_auto_headers={"Content-Type"}) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return statuses, errors, first_error


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_kefu(
    project: Path, port: int, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """``kefu run`` for ``project`` on ``port``, its output in ``log_path``."""
    command = [sys.executable, "-m", "bot.cli", "run", "--project", str(project)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_healthy(base: str, process: subprocess.Popen[bytes], patience: float) -> float:
    """Seconds until ``/health`` answered 200; raises if the process dies or time runs out."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - started < patience:
            if process.poll() is not None:
                raise RuntimeError(f"kefu exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(base + "/health") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            await asyncio.sleep(0.2)
    raise RuntimeError(f"kefu did not answer /health within {patience:.0f} s")


async def healthy(base: str) -> bool:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(base + "/health") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False


async def main(args: argparse.Namespace) -> None:
    endpoints = [name.strip() for name in args.endpoints.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="kefu-fuzz-") as tmp:
        database_url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'fuzz.db'}"
        async with TelegramBotApiDouble(token=TOKEN, username="kefu_fuzz_bot") as api:
            port = free_port()
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "PYTHONUNBUFFERED": "1",
                "KEFU_DATABASE_URL": database_url,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_WEBHOOK_URL": "https://shop.example",
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "TELEGRAM_API_BASE_URL": api.base_url,
            }
            for name in ("KEFU_REST_TOKEN", "SLACK_BOT_TOKEN", "OPENAI_API_KEY"):
                env.pop(name, None)
            log_path = Path(tmp) / "kefu.log"
            process = start_kefu(args.project.resolve(), port, env, log_path)
            base = f"http://127.0.0.1:{port}"
            try:
                try:
                    took = await wait_healthy(base, process, args.startup_timeout)
                except RuntimeError:
                    print(log_path.read_text(errors="replace")[-3000:])
                    raise
                shown = database_url.split("@")[-1] if "@" in database_url else database_url
                print(f"kefu run on {base} (database {shown}), healthy after {took:.1f}s")
                print(
                    f"{args.examples} generated requests per endpoint, {args.concurrency} at once"
                )
                total_5xx = 0
                for endpoint in endpoints:
                    requests = generate(endpoint, args.examples)
                    started = time.monotonic()
                    statuses, errors, first = await send_all(base, requests, args.concurrency)
                    elapsed = time.monotonic() - started
                    server_errors = sum(n for status, n in statuses.items() if status >= 500)
                    total_5xx += server_errors
                    counts = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
                    print(
                        f"  {endpoint:9} {len(requests):5} requests in {elapsed:5.1f}s  "
                        f"[{counts}]  >=500: {server_errors}  transport errors: {errors}"
                        + (f" (first: {first})" if first else "")
                    )
                alive = await healthy(base)
                print(f"responses >= 500 in all: {total_5xx}; /health after: {alive}")
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
            text = log_path.read_text(errors="replace")
            errors = [line for line in text.splitlines() if " ERROR " in line]
            print(f"kefu log: {len(errors)} ERROR lines, {text.count('Traceback')} tracebacks")
            for line in errors[:3]:
                print(f"  {line[:200]}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=3000, help="requests per endpoint")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--project", type=Path, default=REPO_ROOT, help="kefu project to serve")
    parser.add_argument("--endpoints", default=",".join(fuzz.ENDPOINTS))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
