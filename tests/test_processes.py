"""Two real ``kefu run`` processes on one database: they start together on an empty database,
and bursts of messages to one conversation through both are all answered, none lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.events import UserMessage
from bot.store import open_store
from bot.testing.cluster import free_port

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "tests" / "projects" / "minimal"
WEBHOOK = "/webhooks/rest/webhook"
BURSTS = 6
BURST_SIZE = 8
STARTUP_SECONDS = 240.0
pytestmark = pytest.mark.asyncio(loop_scope="module")


@contextlib.contextmanager
def _kefu_processes(database_url: str, logs: Path, count: int = 2) -> Iterator[list[str]]:
    """``count`` ``kefu run`` processes started at once on ``database_url``; their base URLs."""
    env = {**os.environ, "KEFU_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    for name in ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "OPENAI_API_KEY", "KEFU_REST_TOKEN"):
        env.pop(name, None)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(count):
            port = free_port()
            log = (logs / f"kefu-{index}.log").open("wb")
            command = [sys.executable, "-m", "bot.cli", "run", "--project", str(PROJECT)]
            processes.append(
                subprocess.Popen(
                    [*command, "--port", str(port)],
                    env=env,
                    cwd=logs,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _wait_healthy(http: aiohttp.ClientSession, url: str, logs: Path) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{url}/health") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not come up: {_read_logs(logs)}")


def _read_logs(logs: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(logs.glob("*.log")))


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(f"{url}{WEBHOOK}", json=body) as response:
        return response.status, await response.json()


async def _bursts_through(urls: list[str], database_url: str, logs: Path) -> None:
    """Bursts of ``BURST_SIZE`` concurrent messages to one conversation, spread over the
    processes; then every message must be stored exactly once and answered."""
    conversation = f"burst-{uuid.uuid4().hex[:8]}"
    sent: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for url in urls:
            await _wait_healthy(http, url, logs)
        for burst in range(BURSTS):
            texts = [f"hello {burst}-{n}" for n in range(BURST_SIZE)]
            bodies = [
                {"sender": conversation, "message": text, "message_id": f"m-{burst}-{n}"}
                for n, text in enumerate(texts)
            ]
            results = await asyncio.gather(
                *(_post(http, urls[n % len(urls)], body) for n, body in enumerate(bodies))
            )
            assert [status for status, _ in results] == [200] * BURST_SIZE, results
            assert all(replies for _, replies in results)
            sent.extend(texts)
        # A client retrying through the other process is answered, not run again.
        status, _ = await _post(
            http, urls[1], {"sender": conversation, "message": sent[0], "message_id": "m-0-0"}
        )
        assert status == 200
    store = await open_store(database_url)
    try:
        stored = await store.events(f"rest:{conversation}")
    finally:
        await store.close()
    texts = [e.event.text for e in stored if isinstance(e.event, UserMessage)]
    assert Counter(texts) == Counter(sent)
    assert "Traceback" not in _read_logs(logs)


async def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    with _kefu_processes(url, tmp_path) as urls:
        await _bursts_through(urls, url, tmp_path)


async def test_two_processes_on_one_postgres_database(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    with _kefu_processes(fresh_postgres_url, tmp_path) as urls:
        await _bursts_through(urls, fresh_postgres_url, tmp_path)


async def test_stores_opened_together_on_an_empty_database_all_come_up(
    postgres_url: str, tmp_path: Path
) -> None:
    """The table-creation race, many times over: four stores at once on a new database."""
    server = make_url(postgres_url).set(drivername="postgresql")
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        for round_ in range(5):
            name = f"kefu_race_{uuid.uuid4().hex[:12]}"
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = make_url(postgres_url).set(database=name).render_as_string(False)
                stores = await asyncio.gather(*(open_store(url) for _ in range(4)))
                for store in stores:
                    await store.close()
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            sqlite_url = f"sqlite+aiosqlite:///{tmp_path / f'race-{round_}.db'}"
            stores = await asyncio.gather(*(open_store(sqlite_url) for _ in range(4)))
            for store in stores:
                await store.close()
    finally:
        await admin.close()
