"""kefu's HTTP server: one Starlette app carrying every channel's routes, run by uvicorn.

Every answer is JSON, errors included: a webhook caller (a platform, a shop's frontend) should
never have to parse an HTML error page. Bodies over ``MAX_REQUEST_BYTES`` are refused with
413 whether or not the client announced their length.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import constants
from bot.channel import Channel
from bot.privacy import install_log_redaction

__all__ = ["Hook", "create_app", "freeze_startup_heap", "running", "serve", "server_config"]

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
"""A startup or shutdown coroutine function (open the store, start the scheduler...)."""


def create_app(
    *,
    channels: Sequence[Channel],
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """Build the app: ``GET /health``, every channel's routes, ``routes``, and their lifecycle.

    On startup the hooks run first (the channels need the store), then each channel starts;
    on shutdown the channels stop first (no new turns), then the hooks run. Log records are
    redacted from now on (``bot.privacy.install_log_redaction``).
    """
    install_log_redaction()

    async def health_endpoint(request: Request) -> Response:
        extra = await health() if health is not None else {}
        return JSONResponse({"status": "ok", **extra})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for hook in on_startup:
            await hook()
        started: list[Channel] = []
        try:
            for channel in channels:
                await channel.start()
                started.append(channel)
            yield
        finally:
            for channel in reversed(started):
                await _quietly(channel.stop, f"stopping channel {channel.name!r}")
            for hook in on_shutdown:
                await _quietly(hook, f"shutdown hook {getattr(hook, '__qualname__', hook)!r}")

    all_routes: list[BaseRoute] = [Route("/health", health_endpoint, methods=["GET"])]
    for channel in channels:
        all_routes.extend(channel.routes())
    all_routes.extend(routes)
    app = Starlette(
        routes=all_routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    # Starlette would answer "/health/" with a redirect whose Location it builds from the
    # Host header, which a caller controls; an unknown path is a plain 404 instead.
    app.router.redirect_slashes = False
    app.add_middleware(_Guard, max_body=constants.MAX_REQUEST_BYTES)
    return app


async def _quietly(step: Hook, what: str) -> None:
    """Run a shutdown step so that one failure does not keep the others from running."""
    try:
        await step()
    except Exception:
        log.exception("%s failed", what)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """Outermost ASGI layer: body-size limit and last-resort JSON 500.

    A declared ``Content-Length`` over the limit is refused before the app runs; a chunked
    body is counted as it is read. Written as plain ASGI rather than ``BaseHTTPMiddleware``
    because it sits on the hot path of every request.
    """

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _send_error(send, 413, "request body too large")
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        # A declared length is enforced by the HTTP parser; only a chunked body needs counting.
        checked = receive if length is not None else self._limit(receive)
        try:
            await self.app(scope, checked, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_error(send, 413, "request body too large")
        except ClientDisconnect:
            log.debug("client went away during %s %s", scope["method"], scope["path"])
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                await _send_error(send, 500, "internal error")

    def _limit(self, receive: Receive) -> Receive:
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise _BodyTooLarge
            return message

        return limited


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def server_config(app: Starlette, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn settings tuned for throughput: httptools, no access log, quiet logging.

    ``port=0`` picks a free port (see :func:`running`).
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


async def freeze_startup_heap() -> None:
    """The last startup hook of ``kefu run``: collect start-up's garbage once, then leave what
    start-up built (models, vocabularies, the knowledge base: hundreds of thousands of
    objects that live as long as the process) out of every later collection. A full
    collection over them takes about 150 ms on two cores and stalls every turn meanwhile."""
    gc.collect()
    gc.freeze()


async def serve(app: Starlette, *, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    await uvicorn.Server(server_config(app, host=host, port=port)).serve()


@asynccontextmanager
async def running(app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in the background for the block's duration; yield its base URL.

    For tests and embedding: lifespan hooks and channels really start and stop.
    """
    server = uvicorn.Server(server_config(app, host=host, port=port))

    async def run() -> None:
        with suppress(SystemExit):  # uvicorn exits the process when startup fails
            await server.serve()

    task = asyncio.create_task(run())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the server on {host}:{port} did not start")
        await asyncio.sleep(0.005)
    try:
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        await task
