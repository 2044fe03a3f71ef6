"""Live pushes between workers through PostgreSQL ``LISTEN``/``NOTIFY``.

A web chat customer's event stream is held by one worker; the agent's reply that must reach it
may be produced by any worker (the Slack event landed there). :class:`PostgresLive` publishes
each push with ``NOTIFY`` and every worker, the publisher included, ``LISTEN``\\ s and hands
what arrives to its local receivers, which show it on the streams they hold.

Why PostgreSQL and not Redis pub/sub: the workers share PostgreSQL already, a push is a few
hundred bytes a few times a minute per handoff, far below what ``NOTIFY`` carries, and another
service to run, secure and watch would cost a shop more than it saves. Like Redis pub/sub,
``NOTIFY`` is at most once: a worker whose listening connection is down misses what is sent
meanwhile; its streams' pages show the message from the history when they reconnect, and the
store keeps every message regardless.

A payload over ``NOTIFY``'s limit (8000 bytes) is sent in parts under one id, reassembled by
the receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from bot import constants
from bot.errors import TransientDeliveryError
from bot.store.kept_connection import KeptConnection
from bot.store.pg_connections import PgConnections, is_connection_error

__all__ = ["PostgresLive", "Receiver"]

log = logging.getLogger(__name__)

Receiver = Callable[[str, dict[str, Any]], None]
"""Called with (topic, item) for every push any worker published."""
_MAX_PAYLOAD_BYTES = 7900
"""``NOTIFY``'s payload limit is 8000 bytes."""
_PART_CHARS = 3900
"""ASCII characters of a large payload per notification (twice that once escaped, at most)."""
_PARTIAL_KEPT = 100
"""Incomplete multi-part pushes remembered at most."""


class PostgresLive:
    """Publish to every worker; receive what any worker published."""

    def __init__(self, connections: PgConnections, *, retry: float) -> None:
        self._connections = connections
        self._retry = retry
        self._channel = constants.LIVE_CHANNEL
        self._receivers: list[Receiver] = []
        self._partial: OrderedDict[str, list[str | None]] = OrderedDict()
        self._kept = KeptConnection(
            "live pushes", connect=self._connect, use=self._receive, lost=self._lost, retry=retry
        )
        self.listening = asyncio.Event()
        """Set while this worker receives pushes."""

    def subscribe(self, receiver: Receiver) -> None:
        """Call ``receiver`` for every push from now on."""
        self._receivers.append(receiver)

    async def publish(self, topic: str, item: dict[str, Any]) -> None:
        """Send ``item`` under ``topic`` to every worker; ``TransientDeliveryError`` when the
        database cannot take it now (the outbox tries again)."""
        push = {"t": topic, "i": item}
        whole = orjson.dumps({"w": orjson.dumps(push).decode()})
        if len(whole) <= _MAX_PAYLOAD_BYTES:
            payloads = [whole.decode()]
        else:  # ASCII JSON, so that characters are bytes; escaping at most doubles a part
            text = json.dumps(push, ensure_ascii=True)
            parts = [text[at : at + _PART_CHARS] for at in range(0, len(text), _PART_CHARS)]
            push_id = uuid.uuid4().hex
            payloads = [
                orjson.dumps({"p": push_id, "n": len(parts), "k": index, "w": part}).decode()
                for index, part in enumerate(parts)
            ]
        try:
            async with self._connections.connection() as connection, connection.transaction():
                for payload in payloads:  # one transaction: the parts arrive together
                    await connection.execute("SELECT pg_notify($1, $2)", self._channel, payload)
        except Exception as exc:
            if is_connection_error(exc) or isinstance(exc, TransientDeliveryError):
                raise TransientDeliveryError(f"live push not sent: {type(exc).__name__}") from exc
            if isinstance(exc, asyncpg.PostgresError):
                raise TransientDeliveryError(f"live push not sent: {exc}") from exc
            raise

    async def start(self) -> None:
        """Listen in the background, reconnecting after a failure."""
        await self._kept.start()

    async def stop(self) -> None:
        """Stop listening."""
        await self._kept.stop()

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._connections.dsn,
            timeout=self._connections.timeout,
            server_settings={"application_name": "kefu-live"},
        )

    async def _lost(self) -> None:
        self.listening.clear()

    async def _receive(self, connection: asyncpg.Connection) -> None:
        """Listen on ``connection`` until it fails; a silent network cut shows as a failed
        ping."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(self._channel, self._on_notification)
        self.listening.set()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self._retry)
            if not lost.is_set():
                await connection.fetchval("SELECT 1", timeout=self._connections.timeout)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            text = self._assemble(orjson.loads(payload))
            if text is None:
                return
            push = orjson.loads(text)
            topic, item = push["t"], push["i"]
            if not isinstance(topic, str) or not isinstance(item, dict):
                raise TypeError("not a push")
        except (ValueError, TypeError, KeyError):
            log.warning("live pushes: an unreadable notification was ignored")
            return
        for receiver in self._receivers:
            try:
                receiver(topic, item)
            except Exception:
                log.exception("a live push receiver failed")

    def _assemble(self, message: dict[str, Any]) -> str | None:
        """The whole payload once every part of it arrived; None before."""
        if "p" not in message:
            whole: str = message["w"]
            return whole
        push_id, count, index = message["p"], message["n"], message["k"]
        parts = self._partial.setdefault(push_id, [None] * count)
        parts[index] = message["w"]
        if len(self._partial) > _PARTIAL_KEPT:
            self._partial.popitem(last=False)
        if any(part is None for part in parts):
            return None
        del self._partial[push_id]
        return "".join(part or "" for part in parts)
