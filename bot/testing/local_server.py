"""Serve a test double's ASGI app with uvicorn on 127.0.0.1, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


class LocalServer:
    """An ASGI app on a free port of 127.0.0.1, started and stopped in the running loop.

    The Telegram, Slack and OpenAI doubles each serve their app through one of these.
    """

    def __init__(self, app: ASGIApp, *, websockets: bool = False, backlog: int = 2048) -> None:
        self._app = app
        self._websockets = websockets
        self._backlog = backlog
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Start serving; return the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="websockets-sansio" if self._websockets else "none",
            http="h11",
            timeout_graceful_shutdown=1,
            backlog=self._backlog,
        )
        self._server = _InProcessServer(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
            await asyncio.sleep(0.005)
        return port

    async def stop(self) -> None:
        """Stop serving (open requests get a second to finish)."""
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving


class _InProcessServer(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
