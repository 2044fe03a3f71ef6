"""REST clients under faults, for the tests of several workers (``test_workers``,
``test_pg_restart``): each sends its messages one after the other, and sends a message again
(same id) until it is answered, as REST clients are told to; then what the store holds is
checked against what was sent and answered.

The workers test project's action answers ``counted <message>``, records each call with its
idempotency key in a file (``KEFU_TEST_ACTION_LOG``) and has its effect once per key
(:func:`check_action_runs`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.events import BotMessage, UserMessage
from bot.store import open_store

MAX_ATTEMPTS = 60
WAIT = 60.0
"""Seconds a test waits for something that should take a few."""


@dataclass
class Load:
    """What the clients sent and were answered."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    retried: set[tuple[str, str]] = field(default_factory=set)
    failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind: ``503``, or the client's exception."""
    waits: Counter[str] = field(default_factory=Counter)
    """The ``Retry-After`` values the 503 answers carried (``missing`` when none)."""

    @property
    def answered(self) -> int:
        return len(self.answers)


async def send(http: aiohttp.ClientSession, url: str, sender: str, text: str, load: Load) -> None:
    """Send one message until answered, retrying with the same id; any answer but 200 or a
    retryable 503 fails the test."""
    body = {"sender": sender, "message": text, "message_id": text}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with http.post(f"{url}/webhooks/rest/webhook", json=body) as response:
                if response.status == 200:
                    replies = await response.json()
                    load.answers[(sender, text)] = [r.get("text") for r in replies]
                    if attempt > 1:
                        load.retried.add((sender, text))
                    return
                assert response.status == 503, (response.status, await response.text())
                load.failures["503"] += 1
                wait = response.headers.get("retry-after")
                load.waits[wait or "missing"] += 1
                await asyncio.sleep(float(wait or "1"))
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            load.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
    raise AssertionError(f"{sender}: {text!r} was never answered")


async def converse(
    http: aiohttp.ClientSession,
    url: str,
    sender: str,
    load: Load,
    gate: asyncio.Semaphore,
    *,
    turns: int,
) -> None:
    """``sender``'s ``turns`` messages (``count <sender>-<n>``), each once the last is answered."""
    async with gate:
        texts = [f"count {sender}-{turn}" for turn in range(turns)]
        load.sent[sender] = texts
        for text in texts:
            await send(http, url, sender, text, load)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Wait for ``check()`` to hold; the seconds it took."""
    started = time.monotonic()
    for _ in range(int(WAIT / 0.1)):
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT} s: {what}")


def action_calls(path: Path) -> dict[tuple[str, str], list[str]]:
    """The idempotency key of each call of the test action, per (conversation, message)."""
    calls: dict[tuple[str, str], list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            conversation, text, key = line.split("\t")
            calls.setdefault((conversation, text), []).append(key)
    return calls


def action_effects(path: Path) -> Counter[tuple[str, str]]:
    """How many times the test action had its effect, per (conversation, message)."""
    folder = path.with_name(f"{path.name}.effects")
    done = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []
    return Counter(tuple(p.read_text().split("\t")) for p in done)  # type: ignore[misc]


async def check_stored(database_url: str, load: Load, *, in_order: set[str]) -> None:
    """Every message answered with its own answer, stored once with the answer right after;
    the messages of the senders in ``in_order`` (sent one after the other) in that order."""
    for (sender, text), replies in load.answers.items():
        assert replies == [f"counted {text}"], (sender, text, replies)
    assert load.answered == sum(len(texts) for texts in load.sent.values())
    store = await open_store(database_url)
    try:
        for sender, texts in load.sent.items():
            stored = [e.event for e in await store.events(f"rest:{sender}")]
            said = [
                (type(e).__name__, e.text)
                for e in stored
                if isinstance(e, UserMessage | BotMessage)
            ]
            if sender in in_order:
                expected = [("UserMessage", t) for t in texts]
                assert [s for s in said if s[0] == "UserMessage"] == expected, sender
            assert sorted(t for kind, t in said if kind == "UserMessage") == sorted(texts)
            for position in range(0, len(said), 2):  # each message, then its answer
                kind, text = said[position]
                assert kind == "UserMessage"
                assert said[position + 1] == ("BotMessage", f"counted {text}"), (sender, said)
    finally:
        await store.close()


def check_action_runs(path: Path, *loads: Load) -> int:
    """Each message's action had its effect exactly once, retried messages' too: it was called
    once, or (its worker died between the call and the journal's record) again with the same
    idempotency key, by which the action kept its effect to once. Returns how many calls were
    made again."""
    calls, effects = action_calls(path), action_effects(path)
    called_again = 0
    for load in loads:
        for sender, texts in load.sent.items():
            for text in texts:
                message = (f"rest:{sender}", text)
                assert effects[message] == 1, (message, effects[message])
                keys = calls[message]
                retried = (sender, text) in load.retried
                assert len(keys) == 1 or (retried and len(set(keys)) == 1), (message, keys)
                called_again += len(keys) - 1
    assert sum(effects.values()) == sum(len(t) for load in loads for t in load.sent.values())
    return called_again
