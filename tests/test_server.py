"""The HTTP server: health, lifecycle, size limits and JSON-only errors, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.channel import Channel
from bot.events import BotMessage
from bot.server import create_app, running


class Probe(Channel):
    """A channel that records its lifecycle and offers routes that echo, stream or fail."""

    name = "probe"

    def __init__(self, journal: list[str], *, fail_start: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self.fail_start = fail_start

    def routes(self) -> Sequence[BaseRoute]:
        return (
            Route("/probe/echo", self._echo, methods=["POST"]),
            Route("/probe/boom", self._boom),
        )

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("cannot start")
        self.journal.append("start")

    async def stop(self) -> None:
        self.journal.append("stop")

    async def send(self, message: BotMessage) -> None:
        self.journal.append(f"send {message.text}")

    async def _echo(self, request: Request) -> Response:
        return Response(f"{len(await request.body())} bytes")

    async def _boom(self, request: Request) -> Response:
        raise ValueError("unexpected")


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async def health() -> dict[str, object]:
        return {"version": "test"}

    async with running(create_app(channels=[Probe([])], health=health)) as url:
        yield url


async def test_health(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "test"}


async def test_health_without_extra() -> None:
    transport = httpx.ASGITransport(app=create_app(channels=[]))
    async with httpx.AsyncClient(transport=transport, base_url="http://kefu") as client:
        response = await client.get("/health")
    assert response.json() == {"status": "ok"}


async def test_lifespan_order_and_channel_lifecycle() -> None:
    journal: list[str] = []

    async def opened() -> None:
        journal.append("open store")

    async def closed() -> None:
        journal.append("close store")

    app = create_app(channels=[Probe(journal)], on_startup=[opened], on_shutdown=[closed])
    async with running(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert journal == ["open store", "start"]
        assert (await client.get("/health")).status_code == 200
    assert journal == ["open store", "start", "stop", "close store"]


async def test_failed_start_stops_the_channels_already_started() -> None:
    journal: list[str] = []

    async def closed() -> None:
        journal.append("close store")

    app = create_app(
        channels=[Probe(journal), Probe(journal, fail_start=True)], on_shutdown=[closed]
    )
    with pytest.raises(RuntimeError, match="cannot start"):
        async with app.router.lifespan_context(app):
            pass
    assert journal == ["start", "stop", "close store"]


async def test_failing_shutdown_step_does_not_skip_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []

    async def broken() -> None:
        raise RuntimeError("store already gone")

    async def closed() -> None:
        journal.append("close store")

    app = create_app(channels=[Probe(journal)], on_shutdown=[broken, closed])
    async with app.router.lifespan_context(app):
        pass
    assert journal == ["start", "stop", "close store"]
    assert "store already gone" in caplog.text


async def test_body_within_limit_passes(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/probe/echo", content=b"x" * 1000)
    assert response.text == "1000 bytes"


async def test_oversized_body_is_refused(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/probe/echo", content=b"x" * (3 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large"}


async def test_oversized_chunked_body_is_refused(base_url: str) -> None:
    chunk = b"x" * 65536

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(constants.MAX_REQUEST_BYTES // len(chunk) + 2):
            yield chunk

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/probe/echo", content=chunks())
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large"}


async def test_small_chunked_body_passes(base_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/probe/echo", content=chunks())
    assert response.text == "6 bytes"


async def test_unexpected_error_is_json_500_and_logged(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.server"):
        async with httpx.AsyncClient(base_url=base_url) as client:
            response = await client.get("/probe/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal error"}
    assert "ValueError: unexpected" in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/health", 405), ("GET", "/probe/echo", 405)],
)
async def test_routing_errors_are_json(base_url: str, method: str, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()


async def test_concurrent_requests(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        responses = await asyncio.gather(*(client.get("/health") for _ in range(50)))
    assert {r.status_code for r in responses} == {200}


def test_what_startup_built_is_left_out_of_later_collections() -> None:
    # In a process of its own: freezing this test process's heap would keep every later test's
    # garbage alive.
    code = (
        "import asyncio, gc\n"
        "from bot.server import freeze_startup_heap\n"
        "models = [[n] for n in range(50_000)]\n"
        "asyncio.run(freeze_startup_heap())\n"
        "print(gc.get_freeze_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(result.stdout) >= 50_000
