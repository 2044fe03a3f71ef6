"""The waits between re-runs of a turn that lost a write race."""

from __future__ import annotations

import asyncio

import pytest

from bot.conflicts import ConflictBackoff


async def test_waits_grow_with_jitter_up_to_the_largest(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", record)
    backoff = ConflictBackoff(
        deadline=100.0, delays=(0.01, 0.05), clock=lambda: 0.0, jitter=lambda: 0.5
    )
    for _ in range(5):
        assert await backoff.wait()
    assert slept == pytest.approx([0.005, 0.01, 0.02, 0.025, 0.025])
    assert backoff.attempts == 6


async def test_gives_up_at_the_deadline_without_waiting_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", record)
    now = [0.0]
    backoff = ConflictBackoff(
        deadline=1.0, delays=(0.5, 8.0), clock=lambda: now[0], jitter=lambda: 1.0
    )
    assert await backoff.wait()  # 0.5 s
    now[0] = 0.8
    assert await backoff.wait()  # 1.0 s wanted, 0.2 s left
    now[0] = 1.0
    assert not await backoff.wait()
    assert slept == pytest.approx([0.5, 0.2])
