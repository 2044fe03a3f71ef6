"""Store throughput: turns saved per second by concurrent conversations, with and without group
commit. Each turn loads the state, records a user message, an action and a bot reply, queues the
reply in the outbox and claims the platform message id, as a real turn does.

    python bench/store_bench.py [--url URL] [--conversations 100] [--turns 20]

Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.events import ActionExecuted, BotMessage, Button, UserMessage
from bot.state import ConversationState
from bot.store import SqlStore, database_url, open_store


async def _conversation(store: SqlStore, index: int, turns: int) -> None:
    cid = f"bench:{index}"
    for turn in range(turns):
        message_id = f"{index}-{turn}"
        state = await store.load(cid) or ConversationState(
            conversation_id=cid, channel="bench", sender_id=str(index)
        )
        user = UserMessage(
            channel="bench",
            conversation_id=cid,
            sender_id=str(index),
            text=f"where is my order {turn}?",
            message_id=message_id,
            parse_data={"intent": {"name": "track_order", "confidence": 0.93}},
        )
        reply = BotMessage(
            conversation_id=cid,
            text="Your order ships tomorrow.",
            buttons=(Button(title="Thanks", payload="/thanks"),),
        )
        events = [user, ActionExecuted(name="utter_order_status"), reply]
        state.slots["order_id"] = f"A{turn:05d}"
        state.remember(events)
        await store.save(state, events, outbox=[reply], message_key=("bench", message_id))


TABLES = ("conversations", "events", "processed_messages", "outbox", "kv")


async def _drop_tables(url: str, prefix: str) -> None:
    """Leave a shared database as the run found it."""
    engine = create_async_engine(database_url(url))
    async with engine.begin() as conn:
        for name in TABLES:
            await conn.execute(text(f"DROP TABLE IF EXISTS {prefix}{name}"))
    await engine.dispose()


async def _run(url: str, conversations: int, turns: int, group_commit: bool) -> tuple[float, float]:
    """Turns per second and CPU microseconds per turn (all threads; steadier on a busy host)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    store = await open_store(url, group_commit=group_commit, table_prefix=prefix)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(_conversation(store, i, turns) for i in range(conversations)))
        total = conversations * turns
        elapsed = time.perf_counter() - started
        return total / elapsed, (time.process_time() - cpu) / total * 1e6
    finally:
        await store.close()
        if database_url(url).get_backend_name() == "postgresql":
            await _drop_tables(url, prefix)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        for group_commit in (True, False):
            rate, cpu = await _run(url, args.conversations, args.turns, group_commit)
            mode = "group commit" if group_commit else "one transaction per save"
            print(f"{url.split(':')[0]:<12} {mode:<26} {rate:7.0f} turns/s {cpu:6.0f} µs CPU/turn")


if __name__ == "__main__":
    asyncio.run(_main())
