"""``/metrics``: operations' figures in Prometheus' text format, behind ``KEFU_METRICS_TOKEN``.

Turns are timed where the channels hand them to the core; LLM calls are told by the LLM
client; the desk's times to claim and handling times are observed as the reporting rollup
meets the desk's events (each claim by the one worker whose refresh rolls it up); the outbox
and the desk queue are counted from the store when Prometheus scrapes. Every series carries a
``worker`` label (the process id), so several workers behind one address stay apart.
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
from bot.llm.client import LLMCall
from bot.reporting import Reporting
from bot.reporting.rollup import HandoffTimes

__all__ = ["Metrics", "metrics_routes"]

TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
DESK_BUCKETS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)


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
        self.desk_oldest_wait = Gauge(
            "kefu_desk_oldest_waiting_seconds",
            "How long the longest-waiting unclaimed handoff has waited (0: none waiting).",
            ["worker"],
            registry=registry,
        )
        self.desk_claim_seconds = Histogram(
            "kefu_desk_claim_seconds",
            "Time from a handoff to an agent claiming it.",
            ["channel", "worker"],
            buckets=DESK_BUCKETS,
            registry=registry,
        )
        self.desk_handling_seconds = Histogram(
            "kefu_desk_handling_seconds",
            "Time from an agent claiming a handoff to its resolution.",
            ["channel", "worker"],
            buckets=DESK_BUCKETS,
            registry=registry,
        )
        self.llm_seconds = Histogram(
            "kefu_llm_seconds",
            "LLM call latency, retries included, by purpose and outcome (ok, failed).",
            ["purpose", "outcome", "worker"],
            buckets=LLM_BUCKETS,
            registry=registry,
        )
        self.llm_failures = Counter(
            "kefu_llm_failures",
            "LLM calls that gave no usable answer, by purpose and reason.",
            ["purpose", "reason", "worker"],
            registry=registry,
        )
        self.llm_tokens = Counter(
            "kefu_llm_tokens",
            "Tokens of answered LLM calls, by purpose and kind (prompt, completion).",
            ["purpose", "kind", "worker"],
            registry=registry,
        )
        self._worker = labels["worker"]
        reporting.on_handoff(self.handoff)

    def llm_call(self, call: LLMCall) -> None:
        """An LLM client observer: the call's latency, failure or tokens."""
        outcome = "ok" if call.ok else "failed"
        if call.attempts:  # a call refused by the open circuit took no time
            self.llm_seconds.labels(call.purpose, outcome, self._worker).observe(call.latency)
        if not call.ok:
            self.llm_failures.labels(call.purpose, call.failure, self._worker).inc()
            return
        tokens = self.llm_tokens
        tokens.labels(call.purpose, "prompt", self._worker).inc(call.prompt_tokens)
        tokens.labels(call.purpose, "completion", self._worker).inc(call.completion_tokens)

    def handoff(self, times: HandoffTimes) -> None:
        """A reporting listener: a claim's waiting time, a resolution's handling time."""
        if times.claimed_at is not None:
            waited = max(0.0, times.claimed_at - times.handoff_at)
            self.desk_claim_seconds.labels(times.channel, self._worker).observe(waited)
        if times.resolved_at is not None and times.handling_from is not None:
            handled = max(0.0, times.resolved_at - times.handling_from)
            self.desk_handling_seconds.labels(times.channel, self._worker).observe(handled)

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
        waiting, oldest = await self._reporting.waiting_handoffs()
        self.desk_waiting.labels(self._worker).set(waiting)
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        self.desk_oldest_wait.labels(self._worker).set(age)
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
