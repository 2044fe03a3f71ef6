"""Several ``kefu run`` workers on one database behind a round-robin proxy, for tests and
benchmarks of the scaled-out shape (README, "Deployment"): start them, kill one with SIGKILL,
start it again, ask each for its ``/health``.

Each worker is a real subprocess (``python -m bot.cli run``) on a port of its own; the proxy
(:class:`~bot.testing.tcp_proxy.TcpProxy`) is the one address clients use. The workers start
together: each trains the project's models or loads them from the cache (written atomically).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from bot.testing.tcp_proxy import TcpProxy

__all__ = ["WorkerCluster"]

STARTUP_SECONDS = 240.0
"""How long a worker may take to answer ``/health`` (a cold start trains the models)."""
_CLEARED = ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "OPENAI_API_KEY", "KEFU_REST_TOKEN")


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerCluster:
    """``count`` workers of ``project`` on ``database_url``, logs under ``logs``.

    ``env`` adds to (or overrides) the environment the workers get; provider tokens of the
    calling environment are dropped, so that no worker reaches a real platform.
    """

    def __init__(
        self,
        project: Path,
        database_url: str,
        *,
        count: int,
        logs: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = env or {}
        self.project = project
        self.logs = logs
        self.ports = [free_port() for _ in range(count)]
        self.proxy = TcpProxy([("127.0.0.1", port) for port in self.ports])
        repo = str(Path(__file__).resolve().parents[2])
        self._env = {**os.environ, "PYTHONPATH": repo, "KEFU_DATABASE_URL": database_url, **env}
        for name in _CLEARED:
            if name not in env:
                self._env.pop(name, None)
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The proxy's address: where clients send."""
        return f"http://127.0.0.1:{self.proxy.port}"

    def worker_url(self, index: int) -> str:
        """One worker's own address (past the proxy)."""
        return f"http://127.0.0.1:{self.ports[index]}"

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start the proxy and every worker; return once all answer ``/health``."""
        await self.proxy.start()
        for index in range(len(self.ports)):
            self.launch(index)
        for index in range(len(self.ports)):
            await self.wait_healthy(http, index)

    def launch(self, index: int) -> None:
        """Start worker ``index`` (again, after :meth:`kill`) on its port."""
        command = [sys.executable, "-m", "bot.cli", "run", "--project", str(self.project)]
        with (self.logs / f"worker-{index}.log").open("ab") as log:
            self._processes[index] = subprocess.Popen(
                [*command, "--port", str(self.ports[index])],
                env=self._env,
                cwd=self.logs,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, index: int) -> None:
        """SIGKILL worker ``index``: no shutdown, no goodbye to the database."""
        process = self._processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def running(self, index: int) -> bool:
        """Whether worker ``index``'s process has not exited."""
        return self._processes[index].poll() is None

    def pid(self, index: int) -> int:
        """Worker ``index``'s process id."""
        return self._processes[index].pid

    async def health(self, http: aiohttp.ClientSession, index: int) -> dict[str, Any] | None:
        """Worker ``index``'s ``/health`` answer; None when it does not answer."""
        try:
            async with http.get(f"{self.worker_url(index)}/health") as response:
                if response.status != 200:
                    return None
                body: dict[str, Any] = await response.json()
                return body
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_healthy(self, http: aiohttp.ClientSession, index: int) -> None:
        """Wait until worker ``index`` answers ``/health``; fail with the logs after
        ``STARTUP_SECONDS`` or when it exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_SECONDS
        while loop.time() < deadline:
            if self._processes[index].poll() is not None:
                raise AssertionError(f"worker {index} exited:\n{self.read_logs()}")
            if await self.health(http, index) is not None:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker {index} did not come up:\n{self.read_logs()}")

    async def leaders(self, http: aiohttp.ClientSession) -> list[int]:
        """The workers that say they are the leader now."""
        found = []
        for index in range(len(self.ports)):
            health = await self.health(http, index)
            if health is not None and health.get("leader"):
                found.append(index)
        return found

    def read_logs(self) -> str:
        """Every worker's log so far."""
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.logs.glob("worker-*.log"))
        )

    async def stop(self) -> None:
        """Stop every worker (SIGINT, then SIGKILL after 30 s) and the proxy."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(Exception):
            await self.proxy.close()
