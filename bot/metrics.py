"""``/metrics``: operations' figures in Prometheus' text format, behind ``KEFU_METRICS_TOKEN``.

Turns are timed where the channels hand them to the core; the outbox and the desk queue are
counted from the store when Prometheus scrapes. Every series carries a ``worker`` label (the
process id), so several workers behind one address stay apart.
"""

from __future__ import annotations

import hmac
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.channel import MessageHandler
from bot.events import BotMessage, UserMessage
from bot.reporting import Reporting

__all__ = ["Metrics", "metrics_routes"]

TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """This worker's series, in a registry of its own."""

    def __init__(self, reporting: Reporting, *, worker: str | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        self._reporting = reporting
        labels = {"worker": worker or str(os.getpid())}
        self.turn_seconds = Histogram(
            "kefu_turn_seconds",
            "Time from a customer's message reaching the core to its answers being ready.",
            ["channel", "worker"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self.turn_failures = Counter(
            "kefu_turn_failures",
            "Turns that raised instead of answering.",
            ["channel", "worker"],
            registry=registry,
        )
        self.outbox = Gauge(
            "kefu_outbox_messages",
            "Outbox messages by delivery status (pending, failed, delivered).",
            ["status", "worker"],
            registry=registry,
        )
        self.desk_waiting = Gauge(
            "kefu_desk_waiting_conversations",
            "Conversations handed off to the desk and not yet claimed by an agent.",
            ["worker"],
            registry=registry,
        )
        self._worker = labels["worker"]

    def timed(self, handler: MessageHandler) -> MessageHandler:
        """``handler`` with each turn's duration (and failure) recorded per channel."""

        async def handle(message: UserMessage) -> list[BotMessage]:
            started = time.perf_counter()
            try:
                return await handler(message)
            except Exception:
                self.turn_failures.labels(message.channel, self._worker).inc()
                raise
            finally:
                elapsed = time.perf_counter() - started
                self.turn_seconds.labels(message.channel, self._worker).observe(elapsed)

        return handle

    async def render(self) -> bytes:
        """The text format, the store-backed gauges read now."""
        await self._reporting.refresh(budget=constants.DASHBOARD_REFRESH_BUDGET)
        counts = await self._reporting.outbox_counts()
        for status in sorted({"pending", "failed", "delivered", *counts}):
            self.outbox.labels(status, self._worker).set(counts.get(status, 0))
        self.desk_waiting.labels(self._worker).set(await self._reporting.waiting_handoffs())
        return generate_latest(self.registry)


def metrics_routes(metrics: Metrics, *, token: str) -> list[BaseRoute]:
    """``GET /metrics`` for a scraper sending ``Authorization: Bearer <token>``; else 401."""
    expected = f"Bearer {token}".encode()

    async def endpoint(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return PlainTextResponse(
                "a bearer token is required",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", endpoint, methods=["GET"])]
