"""Four ``kefu run`` workers on one PostgreSQL behind a round-robin proxy (the shape README's
deployment section shows), through the faults that shape must survive.

One cluster, in phases: a web chat stream held by one worker gets a notice sent through another;
bursts of concurrent messages to one conversation, spread over the workers, run each custom
action exactly once; then 200 conversations under load while the leader is killed with SIGKILL
(and started again) and while PostgreSQL is cut off for a few seconds (a TCP proxy between
the workers and the server, cut and restored: to the workers, a real network fault). Notices
scheduled before the kill fall due after it and are sent once, by the new leader.

Every message that a client saw answered is stored exactly once, in order, with its answer
right after it; a client that got no answer (its worker died, the database was away) sends
the same message (same id) again, as REST clients are told to. A custom action is called once
per message, its result journaled (``bot.journal``) so that a retried turn replays it: a
message's action is called again only when its worker died between the action's return and
the journal's record, and then with the same idempotency key, by which the action keeps its
effect to once. Every message's effect happens exactly once, retried messages' too; the test
says how many calls were made again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from bot.events import BotMessage, UserMessage
from bot.store import open_store
from bot.testing.cluster import WorkerCluster
from bot.testing.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "tests" / "projects" / "workers"
WORKERS = 4
CONVERSATIONS = 200
TURNS = 3
CONCURRENT = 48
"""Conversations in flight at once (each sends its messages one after the other)."""
BURSTS = 10
BURST_SIZE = 6
NOTICES = 8
TOKEN = "workers-test-token"
WAIT = 60.0
"""Seconds the test waits for something that should take a few."""
MAX_ATTEMPTS = 60


@dataclass
class Load:
    """What the clients sent and were answered."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    retried: set[tuple[str, str]] = field(default_factory=set)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        return len(self.answers)


async def _send(http: aiohttp.ClientSession, url: str, sender: str, text: str, load: Load) -> None:
    """Send one message until answered, retrying with the same id as REST clients are told."""
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
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            load.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
    raise AssertionError(f"{sender}: {text!r} was never answered")


async def _converse(
    http: aiohttp.ClientSession, url: str, sender: str, load: Load, gate: asyncio.Semaphore
) -> None:
    async with gate:
        texts = [f"count {sender}-{turn}" for turn in range(TURNS)]
        load.sent[sender] = texts
        for text in texts:
            await _send(http, url, sender, text, load)


async def _until(check: Any, what: str) -> float:
    """Wait for ``check()`` to hold; the seconds it took."""
    started = time.monotonic()
    for _ in range(int(WAIT / 0.1)):
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT} s: {what}")


async def _stream_gets(http: aiohttp.ClientSession, url: str, sender: str, text: str) -> None:
    """Hold ``sender``'s web chat stream on ``url`` until a message with ``text`` arrives."""
    headers = {"authorization": f"Bearer {sender}"}
    async with http.get(f"{url}/webchat/events", headers=headers) as stream:
        assert stream.status == 200
        async for line in stream.content:
            if line.startswith(b"data: ") and json.loads(line[6:]).get("text") == text:
                return


async def _notices(database_url: str, conversation_id: str) -> bool:
    """Whether the notice was sent to the conversation; fails when it was sent twice."""
    store = await open_store(database_url)
    try:
        events = await store.events(conversation_id)
    finally:
        await store.close()
    said = [e for e in events if isinstance(e.event, BotMessage) and e.event.text == "later"]
    assert len(said) <= 1, f"the notice was sent {len(said)} times to {conversation_id}"
    return len(said) == 1


def _actions(path: Path) -> dict[tuple[str, str], list[str]]:
    """The idempotency key of each call of the test action, per (conversation, message)."""
    calls: dict[tuple[str, str], list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            conversation, text, key = line.split("\t")
            calls.setdefault((conversation, text), []).append(key)
    return calls


def _effects(path: Path) -> Counter[tuple[str, str]]:
    """How many times the test action had its effect, per (conversation, message)."""
    folder = path.with_name(f"{path.name}.effects")
    done = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []
    return Counter(tuple(p.read_text().split("\t")) for p in done)  # type: ignore[misc]


async def test_four_workers_through_a_kill_a_takeover_and_a_database_cut(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    server = make_url(fresh_postgres_url)
    database = TcpProxy([(server.host or "127.0.0.1", server.port or 5432)])
    await database.start()
    proxied = server.set(host="127.0.0.1", port=database.port)
    action_log = tmp_path / "actions.log"
    cluster = WorkerCluster(
        PROJECT,
        proxied.render_as_string(hide_password=False),
        count=WORKERS,
        logs=tmp_path,
        env={
            "KEFU_API_TOKEN": TOKEN,
            "KEFU_TEST_ACTION_LOG": str(action_log),
            "KEFU_DB_POOL_SIZE": "3",
            "KEFU_DB_MAX_OVERFLOW": "3",
            "KEFU_DB_LOCK_POOL_SIZE": "6",
            "KEFU_DB_TIMEOUT": "5",
            "KEFU_DB_LOCK_TIMEOUT": "10",
            "KEFU_LEADER_RETRY": "0.5",
        },
    )
    api = {"authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(force_close=True, limit=CONCURRENT * 2)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await cluster.start(http)

            async def one_leader() -> bool:
                return len(await cluster.leaders(http)) == 1

            await _until(one_leader, "one leader among the workers")
            [leader] = await cluster.leaders(http)
            holder, sender_worker = [i for i in range(WORKERS) if i != leader][:2]

            # --- a web chat stream on one worker gets a notice sent through another ------
            visitor = f"web-{uuid.uuid4().hex}"
            async with http.post(
                f"{cluster.worker_url(holder)}/webchat/webhook",
                json={"sender": visitor, "message": "hi"},
            ) as response:
                assert response.status == 200
            stream = asyncio.create_task(
                _stream_gets(http, cluster.worker_url(holder), visitor, "from another worker")
            )
            await asyncio.sleep(0.5)  # the stream is open
            async with http.post(
                f"{cluster.worker_url(sender_worker)}/api/notify",
                json={"conversation_id": f"webchat:{visitor}", "text": "from another worker"},
                headers=api,
            ) as response:
                assert response.status == 202, await response.text()
            await asyncio.wait_for(stream, WAIT)

            # --- bursts: concurrent messages of one conversation through every worker ----
            bursts = Load()
            for burst in range(BURSTS):
                sender = f"burst{burst}"
                texts = [f"count {sender}-{n}" for n in range(BURST_SIZE)]
                bursts.sent[sender] = texts
                await asyncio.gather(*(_send(http, cluster.url, sender, t, bursts) for t in texts))
            burst_runs = _actions(action_log)
            for sender, texts in bursts.sent.items():
                for text in texts:
                    assert len(burst_runs[(f"rest:{sender}", text)]) == 1, (sender, text)
            assert not bursts.retried and not bursts.failures  # no conflict, no re-run, no 503

            # --- notices due after the leader's death --------------------------------------
            visitors = [f"web-{uuid.uuid4().hex}" for _ in range(NOTICES)]
            due = datetime.fromtimestamp(time.time() + 8, UTC).isoformat()
            for visitor_id in visitors:
                async with http.post(
                    f"{cluster.url}/webchat/webhook", json={"sender": visitor_id, "message": "hi"}
                ) as response:
                    assert response.status == 200
                async with http.post(
                    f"{cluster.url}/api/notify",
                    json={"conversation_id": f"webchat:{visitor_id}", "text": "later", "at": due},
                    headers=api,
                ) as response:
                    assert response.status == 202, await response.text()
                    assert (await response.json())["status"] == "scheduled"

            # --- the load, the leader killed and back, the database cut and back ----------
            load = Load()
            gate = asyncio.Semaphore(CONCURRENT)
            senders = [f"c{n:04d}" for n in range(CONVERSATIONS)]
            traffic = asyncio.gather(
                *(_converse(http, cluster.url, s, load, gate) for s in senders)
            )
            total = CONVERSATIONS * TURNS

            async def answered(share: float) -> bool:
                return load.answered >= share * total or traffic.done()

            await _until(lambda: answered(0.2), "a fifth of the load answered")
            cluster.kill(leader)
            killed_at = time.monotonic()
            cluster.launch(leader)  # back soon, as a supervisor would start it again

            async def another_leader() -> bool:
                return bool([i for i in await cluster.leaders(http) if i != leader])

            await _until(another_leader, "another worker took over as the leader")
            takeover = time.monotonic() - killed_at
            await _until(lambda: answered(0.5), "half the load answered")
            database.cut()
            await asyncio.sleep(3.0)
            database.restore()
            await asyncio.wait_for(traffic, timeout=300)
            await cluster.wait_healthy(http, leader)
            await _until(one_leader, "one leader again after the database came back")
            # Each notice sent once, by whichever worker led when it fell due.
            for visitor_id in visitors:
                await _until(
                    lambda cid=f"webchat:{visitor_id}": _notices(fresh_postgres_url, cid),
                    f"the notice to {visitor_id} sent",
                )
    finally:
        await cluster.stop()
        await database.close()
    print(
        f"\n{WORKERS} workers, {total} turns in {CONVERSATIONS} conversations; "
        f"leader takeover after SIGKILL: {takeover:.1f} s; "
        f"retried messages: {len(load.retried)}; failed attempts: {dict(load.failures)}"
    )

    # Every message answered with its own answer, stored once, in order, answer right after.
    for (sender, text), replies in load.answers.items():
        assert replies == [f"counted {text}"], (sender, text, replies)
    assert load.answered == total
    calls, effects = _actions(action_log), _effects(action_log)
    store = await open_store(fresh_postgres_url)
    try:
        for sender, texts in {**bursts.sent, **load.sent}.items():
            stored = [e.event for e in await store.events(f"rest:{sender}")]
            said = [
                (type(e).__name__, e.text)
                for e in stored
                if isinstance(e, UserMessage | BotMessage)
            ]
            if sender in load.sent:  # sent one after the other: in that order
                expected = [("UserMessage", t) for t in texts]
                assert [s for s in said if s[0] == "UserMessage"] == expected, sender
            assert sorted(t for kind, t in said if kind == "UserMessage") == sorted(texts)
            for position in range(0, len(said), 2):  # each message, then its answer
                kind, text = said[position]
                assert kind == "UserMessage"
                assert said[position + 1] == ("BotMessage", f"counted {text}"), (sender, said)
        # Each message's action had its effect exactly once, retried messages' too. It was
        # called once, or (its worker died between the call and the journal's record) again
        # with the same idempotency key.
        called_again = 0
        for sender, texts in {**bursts.sent, **load.sent}.items():
            for text in texts:
                message = (f"rest:{sender}", text)
                assert effects[message] == 1, (message, effects[message])
                keys = calls[message]
                retried = (sender, text) in load.retried
                assert len(keys) == 1 or (retried and len(set(keys)) == 1), (message, keys)
                called_again += len(keys) - 1
        assert sum(effects.values()) == sum(
            len(t) for t in (*bursts.sent.values(), *load.sent.values())
        )
        print(
            f"retried messages whose action was called again with its idempotency key: "
            f"{called_again}"
        )
    finally:
        await store.close()
