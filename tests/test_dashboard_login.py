"""The dashboard's login throttle: wrong tokens make their address wait (429, Retry-After),
the right token still signs in from another address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from starlette.applications import Starlette

from bot.dashboard import dashboard_routes
from bot.dashboard.auth import LoginThrottle
from bot.reporting import Reporting

TOKEN = "the-right-t0ken"


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def app_and_clock(tmp_path: Path) -> AsyncIterator[tuple[Starlette, Clock]]:
    clock = Clock()
    reporting = Reporting(f"sqlite:///{tmp_path / 'kefu.db'}")
    throttle = LoginThrottle(
        free=3, base_delay=2.0, max_delay=60.0, forget_after=600.0, clock=clock
    )
    app = Starlette(routes=dashboard_routes(reporting, api_token=TOKEN, throttle=throttle))
    try:
        yield app, clock
    finally:
        await reporting.close()


def client(app: Starlette, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://kefu.test")


async def test_wrong_tokens_make_the_address_wait(app_and_clock: tuple[Starlette, Clock]) -> None:
    app, clock = app_and_clock
    async with client(app, "203.0.113.9") as guesser, client(app, "198.51.100.4") as shop:
        # Two wrong tokens are answered as wrong; the third makes the address wait 2 s.
        for _ in range(2):
            answer = await guesser.post("/dashboard/login", data={"token": "guess"})
            assert answer.status_code == 401
            assert "retry-after" not in answer.headers
        answer = await guesser.post("/dashboard/login", data={"token": "guess"})
        assert (answer.status_code, answer.headers["retry-after"]) == (429, "2")
        assert "try again in 2 s" in answer.text

        # While it waits, even the right token is refused from that address...
        clock.now += 1.5
        answer = await guesser.post("/dashboard/login", data={"token": TOKEN})
        assert (answer.status_code, answer.headers["retry-after"]) == (429, "1")
        assert "kefu_dashboard" not in guesser.cookies

        # ...but signs in from another address at once.
        answer = await shop.post("/dashboard/login", data={"token": TOKEN})
        assert answer.status_code == 303
        assert "kefu_dashboard" in shop.cookies

        # Each further wrong token doubles the wait, up to the cap.
        waits = []
        for _ in range(6):
            clock.now += 61
            answer = await guesser.post("/dashboard/login", data={"token": "guess"})
            assert answer.status_code == 429
            waits.append(answer.headers["retry-after"])
        assert waits == ["4", "8", "16", "32", "60", "60"]

        # After the wait, the right token signs in and the failures are forgotten.
        clock.now += 60
        answer = await guesser.post("/dashboard/login", data={"token": TOKEN})
        assert answer.status_code == 303
        answer = await guesser.post("/dashboard/login", data={"token": "guess"})
        assert answer.status_code == 401


async def test_failures_are_forgotten_after_a_quiet_while(
    app_and_clock: tuple[Starlette, Clock],
) -> None:
    app, clock = app_and_clock
    async with client(app, "203.0.113.10") as guesser:
        for _ in range(2):
            answer = await guesser.post("/dashboard/login", data={"token": "guess"})
            assert answer.status_code == 401
        clock.now += 601
        for _ in range(2):
            answer = await guesser.post("/dashboard/login", data={"token": "guess"})
            assert answer.status_code == 401


def test_throttle_remembers_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=1, base_delay=5.0, capacity=2, clock=clock)
    assert [throttle.failed(a) for a in ("a", "b", "c")] == [5.0, 5.0, 5.0]
    assert throttle.retry_after("a") == 0.0  # the oldest was forgotten
    assert throttle.retry_after("c") == 5.0
