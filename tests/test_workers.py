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
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from sqlalchemy.engine import make_url

from bot.events import BotMessage
from bot.store import open_store
from bot.testing.cluster import WorkerCluster
from bot.testing.tcp_proxy import TcpProxy
from tests.rest_load import (
    WAIT,
    Load,
    action_calls,
    check_action_runs,
    check_stored,
    converse,
    send,
    until,
)

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

            await until(one_leader, "one leader among the workers")
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
                await asyncio.gather(*(send(http, cluster.url, sender, t, bursts) for t in texts))
            burst_calls = action_calls(action_log)
            for sender, texts in bursts.sent.items():
                for text in texts:
                    assert len(burst_calls[(f"rest:{sender}", text)]) == 1, (sender, text)
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
                *(converse(http, cluster.url, s, load, gate, turns=TURNS) for s in senders)
            )
            total = CONVERSATIONS * TURNS

            async def answered(share: float) -> bool:
                return load.answered >= share * total or traffic.done()

            await until(lambda: answered(0.2), "a fifth of the load answered")
            cluster.kill(leader)
            killed_at = time.monotonic()
            cluster.launch(leader)  # back soon, as a supervisor would start it again

            async def another_leader() -> bool:
                return bool([i for i in await cluster.leaders(http) if i != leader])

            await until(another_leader, "another worker took over as the leader")
            takeover = time.monotonic() - killed_at
            await until(lambda: answered(0.5), "half the load answered")
            database.cut()
            await asyncio.sleep(3.0)
            database.restore()
            await asyncio.wait_for(traffic, timeout=300)
            await cluster.wait_healthy(http, leader)
            await until(one_leader, "one leader again after the database came back")
            # Each notice sent once, by whichever worker led when it fell due.
            for visitor_id in visitors:
                await until(
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

    await check_stored(fresh_postgres_url, bursts, in_order=set())
    await check_stored(fresh_postgres_url, load, in_order=set(load.sent))
    called_again = check_action_runs(action_log, bursts, load)
    print(
        f"retried messages whose action was called again with its idempotency key: {called_again}"
    )
