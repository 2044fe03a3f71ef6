"""Dashboard queries over a large store: fills PostgreSQL (or SQLite) with synthetic
conversations spread over 30 days, builds the reporting rollup, and times each query a page
makes.

    python bench/dashboard.py [--url URL] [--events 1000000] [--days 30] [--repeat 5]
                              [--keep | --reuse PREFIX]

The default URL is ``KEFU_TEST_POSTGRES_URL``'s when set, else a temporary SQLite file.
Tables get a fresh prefix each run and are dropped at the end (``--keep`` leaves them for
``--reuse``). The figures are also computed by a full scan of the conversations, as kefu did
before the daily sums, to compare both times and check the two agree. Prints figures, asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import MetaData, case, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.reporting import Figures, Query, Reporting
from bot.reporting.facts import ASKED
from bot.reporting.figures import Bucket, compute, percentile
from bot.store.engines import database_url, open_database
from bot.store.schema import Tables

INTENTS = ["track_order", "cancel_order", "get_refund", "delivery_options", "payment_issue"]
FLOWS = {
    "track_order": "track_order",
    "cancel_order": "cancel_order",
    "get_refund": "request_refund",
}
CHANNELS = ["telegram", "webchat", "rest"]
UNKNOWN = ["do you sell {} in bulk", "can I pay with {}", "is {} vegan", "who designed the {}"]
THINGS = ["socks", "seashells", "bitcoin", "lamps", "the logo", "gift cards"]
BATCH = 5000


def conversation(
    index: int, start: float, rng: random.Random
) -> tuple[str, str, list[list[dict[str, Any]]]]:
    """A synthetic conversation: its id, channel and turns (each a list of event dicts)."""
    channel = rng.choice(CHANNELS)
    cid = f"{channel}:{index}"
    language = "zh" if rng.random() < 0.3 else "en"
    t = start
    turns: list[list[dict[str, Any]]] = []

    def user(text: str, intent: str) -> dict[str, Any]:
        return {
            "event": "user",
            "timestamp": t,
            "channel": channel,
            "conversation_id": cid,
            "sender_id": str(index),
            "text": text,
            "language": language,
            "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []},
        }

    def bot(text: str) -> dict[str, Any]:
        return {"event": "bot", "timestamp": t + 0.2, "conversation_id": cid, "text": text}

    intent = rng.choice(INTENTS)
    flow = FLOWS.get(intent)
    first = [
        user(f"I need help with {intent}", intent),
        {"event": "action", "timestamp": t, "name": "action_listen"},
    ]
    if flow:
        first += [
            {"event": "flow_started", "timestamp": t, "flow_id": flow},
            bot("What's your order number?"),
        ]
    else:
        first += [bot("Here is what our policy says.")]
    turns.append(first)
    for _ in range(rng.randint(1, 4)):
        t += rng.uniform(10, 120)
        roll = rng.random()
        if roll < 0.08:
            text = rng.choice(UNKNOWN).format(rng.choice(THINGS))
            turns.append(
                [
                    user(text, "nlu_fallback"),
                    {"event": "flow_started", "timestamp": t, "flow_id": "pattern_cannot_handle"},
                    bot("Sorry, I can't help with that."),
                ]
            )
        else:
            turn = [
                user("KF-10001", "inform"),
                {"event": "slot", "timestamp": t, "name": "order_id", "value": "KF-10001"},
                bot("Your order has shipped."),
            ]
            if flow and roll < 0.2:
                turn.append({"event": "flow_cancelled", "timestamp": t, "flow_id": flow})
                flow = None
            elif flow and roll < 0.7:
                turn.append({"event": "flow_completed", "timestamp": t, "flow_id": flow})
                flow = None
            turns.append(turn)
    if rng.random() < 0.15:
        t += 5
        claim, handling = rng.uniform(20, 900), rng.uniform(60, 1800)
        desk = [
            user("human please", "contact_human_agent"),
            {
                "event": "handoff_requested",
                "timestamp": t,
                "reason": rng.choice(["customer asked for a human", "flow", "sentiment"]),
            },
            bot("Connecting you."),
        ]
        desk += [
            {"event": "agent_joined", "timestamp": t + claim, "agent": "U1"},
            {"event": "agent_message", "timestamp": t + claim + 5, "agent": "U1", "text": "Hi!"},
            {"event": "handoff_resolved", "timestamp": t + claim + handling, "agent": "U1"},
        ]
        if rng.random() < 0.5:
            desk.append(
                {
                    "event": "csat_answer",
                    "timestamp": t + claim + handling + 60,
                    "score": rng.randint(1, 5),
                }
            )
        turns.append(desk)
    elif rng.random() < 0.5:
        t += 20
        turns.append([user("thanks", "thanks"), bot("You're welcome!")])
    return cid, channel, turns


async def fill(url: str, prefix: str, events: int, days: int) -> tuple[int, int]:
    """Store synthetic conversations until ``events`` events; (conversations, events)."""
    tables = Tables(prefix)
    db = open_database(database_url(url))
    await db.write(tables.metadata.create_all)
    rng = random.Random(7)
    now = time.time()
    stored = index = 0
    conv_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []

    async def flush() -> None:
        rows, convs = list(event_rows), list(conv_rows)
        event_rows.clear()
        conv_rows.clear()

        def work(conn: Any) -> None:
            conn.execute(tables.conversations.insert(), convs)
            conn.execute(tables.events.insert(), rows)

        await db.write(work)

    while stored < events:
        start = now - rng.uniform(0, days * 86400)
        cid, channel, turns = conversation(index, start, rng)
        index += 1
        seq = 1
        for turn in turns:
            event_rows.append(
                {
                    "conversation_id": cid,
                    "seq": seq,
                    "count": len(turn),
                    "timestamp": turn[0]["timestamp"],
                    "data": orjson.dumps(turn).decode(),
                }
            )
            seq += len(turn)
            stored += len(turn)
        last = max(e["timestamp"] for turn in turns for e in turn)
        conv_rows.append(
            {
                "id": cid,
                "channel": channel,
                "sender_id": cid,
                "state": "{}",
                "version": 1,
                "last_seq": seq - 1,
                "last_active_at": last,
                "created_at": start,
            }
        )
        if len(event_rows) >= BATCH:
            await flush()
    if event_rows:
        await flush()
    await db.dispose()
    return index, stored


async def scanned_figures(reporting: Reporting, query: Query, *, now: float) -> Figures:
    """The figures by scanning every conversation of the period (how kefu computed them
    before the daily sums): the reference the fast path must equal, and its time."""
    f = reporting.facts
    since, until = query.since, query.until
    where = [f.c.started_at >= since, f.c.started_at < until]
    if query.channel:
        where.append(f.c.channel == query.channel)
    if query.language:
        where.append(f.c.language == query.language)
    answered = f.c.last_bot_at.isnot(None) & (
        f.c.last_bot_at >= func.coalesce(f.c.last_user_at, 0.0)
    )
    verdict = case(
        (f.c.handoff_at.isnot(None), "not_contained"),
        (f.c.user_messages == 0, "none"),
        ((f.c.confirmed == 1) & answered, "contained"),
        (f.c.last_active_at > now - query.window, "open"),
        (answered & (f.c.last_not_understood == 0) & (f.c.open_flows == 0), "contained"),
        else_="not_contained",
    )
    handed = f.c.handoff_at.isnot(None)

    def count_if(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    def work(conn: Connection) -> Figures:
        buckets = [
            Bucket._make(r)
            for r in conn.execute(
                select(
                    f.c.day,
                    f.c.channel,
                    f.c.language,
                    func.count(),
                    count_if(f.c.user_messages > 0),
                    count_if(verdict.in_(("contained", "not_contained"))),
                    count_if(verdict == "contained"),
                    count_if(verdict == "open"),
                    count_if(handed),
                    count_if(handed & f.c.resolved_at.isnot(None)),
                    func.sum(f.c.unknown_count),
                )
                .where(*where)
                .group_by(f.c.day, f.c.channel, f.c.language)
            )
        ]
        durations = conn.execute(
            select(f.c.claimed_at - f.c.handoff_at, f.c.resolved_at - f.c.claimed_at).where(
                *where, handed, f.c.claimed_at.isnot(None)
            )
        ).all()
        reasons = conn.execute(
            select(f.c.handoff_reason, func.count())
            .where(*where, handed)
            .group_by(f.c.handoff_reason)
        ).all()
        csat = conn.execute(
            select(f.c.csat, func.count()).where(*where, f.c.csat.isnot(None)).group_by(f.c.csat)
        ).all()
        c = reporting.counts
        named: dict[str, list[tuple[str, int]]] = {}
        total = func.sum(c.c.n).label("total")
        counted = [c.c.started_at >= since, c.c.started_at < until]
        if query.channel:
            counted.append(c.c.channel == query.channel)
        if query.language:
            counted.append(c.c.language == query.language)
        for kind, name, n in conn.execute(
            select(c.c.kind, c.c.name, total)
            .where(*counted)
            .group_by(c.c.kind, c.c.name)
            .order_by(total.desc(), c.c.name)
        ):
            named.setdefault(kind, []).append((name, int(n)))
        claims = [float(d[0]) for d in durations]
        handling = [float(d[1]) for d in durations if d[1] is not None]
        return compute(
            buckets,
            named,
            query=query,
            claim_seconds=(percentile(claims, 0.5), percentile(claims, 0.9)),
            handling_seconds=(percentile(handling, 0.5), percentile(handling, 0.9)),
            reasons={r or ASKED: int(n) for r, n in reasons},
            csat={int(score): int(n) for score, n in csat},
        )

    return await reporting._db.read(work)


async def vacuum(url: str) -> None:
    """What PostgreSQL's autovacuum (or SQLite's ANALYZE) would have done since the rollup:
    the daily sums are updated in place many times while a large store is rolled up."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_async_engine(parsed, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE"))
        await engine.dispose()
    else:
        db = open_database(parsed)
        await db.write(lambda conn: conn.execute(text("ANALYZE")))
        await db.dispose()


def fast_figures(reporting: Reporting, query: Query, now: float) -> Callable[[], Awaitable[Any]]:
    return lambda: reporting.figures(query, now=now)


def full_scan(reporting: Reporting, query: Query, now: float) -> Callable[[], Awaitable[Any]]:
    return lambda: scanned_figures(reporting, query, now=now)


async def timed(label: str, work: Callable[[], Awaitable[Any]], *, repeat: int = 1) -> Any:
    """Run ``work`` ``repeat`` times; print the median time (and the fastest when repeated:
    the machine may be shared, and the fastest run is the least disturbed one)."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await work()
        times.append((time.perf_counter() - started) * 1000)
    line = f"  {label:<48} {statistics.median(times):9.1f} ms"
    if repeat > 1:
        line += f"  (fastest {min(times):.1f} ms of {repeat})"
    print(line)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("KEFU_TEST_POSTGRES_URL"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query")
    parser.add_argument("--keep", action="store_true", help="keep the tables (print the prefix)")
    parser.add_argument("--reuse", metavar="PREFIX", help="time the tables a --keep run left")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    prefix = args.reuse or f"b{uuid.uuid4().hex[:8]}_"
    print(f"database: {database_url(url).render_as_string(hide_password=True)}")
    if not args.reuse:
        started = time.perf_counter()
        conversations, events = await fill(url, prefix, args.events, args.days)
        print(
            f"filled {events} events in {conversations} conversations over {args.days} days "
            f"in {time.perf_counter() - started:.1f} s"
        )
    reporting = Reporting(url, table_prefix=prefix)
    r = args.repeat
    try:
        await reporting.initialize()
        await timed("rollup from scratch (once, then incremental)", reporting.refresh)
        await timed("refresh with nothing new (every page)", reporting.refresh, repeat=r)
        now = time.time()
        today = now - now % 86400  # the dashboard's periods: whole UTC days up to now
        month = Query(since=today - 29 * 86400, until=now + 1)
        if not args.reuse:
            await timed(
                "figures, 30 days, before any vacuum", lambda: reporting.figures(month, now=now)
            )
            await timed("VACUUM ANALYZE (PostgreSQL) / ANALYZE (SQLite)", lambda: vacuum(url))
        week = Query(since=today - 6 * 86400, until=now + 1, group="week")
        telegram = Query(since=month.since, until=month.until, channel="telegram", language="zh")
        for label, query in (
            ("30 days, per day", month),
            ("7 days, per week", week),
            ("30 days, telegram + zh", telegram),
        ):
            fast = await timed(f"figures, {label}", fast_figures(reporting, query, now), repeat=r)
            scanned = await timed(
                "  the same by a full scan (before)",
                full_scan(reporting, query, now),
                repeat=r,
            )
            print(f"  {'  the two agree':<48} {'yes' if fast == scanned else 'NO'}")
        pages: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("conversations list, 30 days", lambda: reporting.conversations(month, limit=200)),
            (
                "conversations with handoff",
                lambda: reporting.conversations(month, handoff=True, limit=200),
            ),
            (
                "conversations by intent",
                lambda: reporting.conversations(month, intent="get_refund", limit=200),
            ),
            (
                "conversation id search",
                lambda: reporting.conversations(month, search="telegram:12", limit=200),
            ),
            (
                "unknown messages, 30 days (1000)",
                lambda: reporting.unknown_messages(month, limit=1000),
            ),
            ("one transcript", lambda: reporting.transcript("rest:5")),
            ("desk queue (/metrics)", reporting.waiting_handoffs),
        ]
        for label, work in pages:
            await timed(label, work, repeat=r)
    finally:
        await reporting.close()
        if args.keep:
            print(f"tables kept: --reuse {prefix}")
        else:
            db = open_database(database_url(url))
            tables = Tables(prefix)
            dropped = MetaData()
            for table in (*tables.metadata.sorted_tables, *reporting.metadata.sorted_tables):
                table.to_metadata(dropped)
            await db.write(dropped.drop_all)
            await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
