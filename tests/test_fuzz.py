"""Fuzzing every endpoint of the real server (REST, web chat, Telegram, pages): no 5xx, ever.

The whole app as ``kefu run`` builds it (the minimal project, the real agent and store, the
Telegram channel in webhook mode against the Telegram double) serves on 127.0.0.1 from a thread
of its own; hypothesis sends it requests from :mod:`bot.testing.fuzz` over real HTTP. Each
test ends by checking that the server still answers ``/health``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

from bot.app import build
from bot.server import create_app, running
from bot.settings import Settings
from bot.testing import fuzz
from bot.testing.telegram_double import TelegramBotApiDouble
from tests import telegram_updates as tg

PROJECT = Path(__file__).resolve().parent / "projects" / "minimal"
SECRET = "fuzz-secret"
FUZZ = settings(
    max_examples=180,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class ServerThread:
    """``kefu run``'s app for ``database_url``, served from a thread with its own event loop."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""
        self._ready = threading.Event()
        self._stop: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzzed-kefu", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(timeout=300)
        if not self.url:
            raise RuntimeError(f"the fuzzed server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._stop = lambda: loop.call_soon_threadsafe(stop.set)
        async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
            settings = Settings(
                database_url=self.database_url,
                telegram_bot_token=tg.TOKEN,
                telegram_webhook_url="https://shop.example",
                telegram_webhook_secret=SECRET,
                telegram_api_base_url=api.base_url,
            )
            agent, channels = await build(PROJECT, settings)
            app = create_app(channels=channels, on_shutdown=[agent.close])
            async with running(app) as url:
                self.url = url
                self._ready.set()
                await stop.wait()


def _send(http: httpx.Client, request: fuzz.FuzzRequest) -> httpx.Response:
    return http.request(request.method, request.path, content=request.body, headers=request.headers)


def _fuzz(server: str, strategy: SearchStrategy[fuzz.FuzzRequest]) -> None:
    statuses: list[int] = []
    with httpx.Client(base_url=server, timeout=60) as http:

        @FUZZ
        @given(strategy)
        def no_server_error(request: fuzz.FuzzRequest) -> None:
            response = _send(http, request)
            statuses.append(response.status_code)
            assert response.status_code < 500, (request, response.text)

        no_server_error()
        assert http.get("/health").status_code == 200
    assert any(status == 200 for status in statuses)  # the fuzzing reached the handlers too


def test_no_request_gets_a_server_error_on_sqlite(tmp_path: Path) -> None:
    with ServerThread(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}") as server:
        for endpoint in fuzz.ENDPOINTS:
            _fuzz(server.url, fuzz.requests(endpoint, telegram_secret=SECRET))


def test_no_posted_body_gets_a_server_error_on_postgresql(fresh_postgres_url: str) -> None:
    with ServerThread(fresh_postgres_url) as server:
        for endpoint in ("rest", "webchat", "telegram"):
            _fuzz(server.url, fuzz.requests(endpoint, telegram_secret=SECRET))
