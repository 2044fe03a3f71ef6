"""Baseline for ``bench/load.py``: the least a REST chatbot endpoint can do per message.

A minimal Starlette app served by uvicorn (same server settings as kefu's): on
``POST /webhooks/rest/webhook`` it parses ``{"sender", "message"}``, stores the message in SQLite
through aiosqlite (one INSERT and one commit per message, WAL mode, ``synchronous=NORMAL`` as
kefu's store uses) and echoes ``[{"recipient_id", "text"}]``. ``GET /health`` answers
``{"status": "ok"}``.

    python bench/baseline_app.py --port 8100 --db /tmp/baseline.db [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import time
from collections.abc import AsyncIterator

import aiosqlite
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(db_path: str) -> Starlette:
    """Build the baseline app storing messages in the SQLite file ``db_path``."""
    db: aiosqlite.Connection | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal db
        db = await aiosqlite.connect(db_path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS messages ("
            "id INTEGER PRIMARY KEY, sender TEXT NOT NULL, text TEXT NOT NULL, ts REAL NOT NULL)"
        )
        await db.commit()
        try:
            yield
        finally:
            await db.close()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def webhook(request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            sender = data["sender"]
            text = data["message"]
            if not isinstance(sender, str) or not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "bad body"}, status_code=400)
        assert db is not None
        await db.execute(
            "INSERT INTO messages (sender, text, ts) VALUES (?, ?, ?)", (sender, text, time.time())
        )
        await db.commit()
        return JSONResponse([{"recipient_id": sender, "text": text}])

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/webhooks/rest/webhook", webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    """Parse the command line and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file path")
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(args.db),
        host=args.host,
        port=args.port,
        loop="asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    # The same event loop as `kefu run`: uvloop when installed.
    loop_factory = uvloop.new_event_loop if importlib.util.find_spec("uvloop") else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
