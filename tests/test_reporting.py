"""The reporting rollup on SQLite and PostgreSQL: figures from saved events, kept up to date
as conversations go on, and the dashboard's session cookie."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import MetaData

from bot.dashboard.auth import Sessions
from bot.dashboard.groups import group_messages
from bot.events import (
    AgentJoined,
    BotMessage,
    CsatAnswered,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    HandoffRequested,
    HandoffResolved,
    UserMessage,
)
from bot.reporting import Query, Reporting, UnknownMessage
from bot.reporting.figures import percentile
from bot.state import ConversationState
from bot.store import SqlStore, open_store
from bot.store.engines import database_url, open_database

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21, a Monday


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kefu.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest_asyncio.fixture
async def stores(url: str) -> AsyncIterator[tuple[SqlStore, Reporting]]:
    prefix = f"r{uuid.uuid4().hex[:8]}_"
    store = await open_store(url, table_prefix=prefix)
    reporting = Reporting(url, table_prefix=prefix)
    await reporting.initialize()
    try:
        yield store, reporting
    finally:
        await reporting.close()
        await store.close()
        db = open_database(database_url(url))
        tables = MetaData()
        for table in reporting.metadata.sorted_tables:
            table.to_metadata(tables)
        await db.write(tables.drop_all)
        await db.dispose()


def user(cid: str, text: str, intent: str, ts: float, language: str = "en") -> UserMessage:
    channel = cid.partition(":")[0]
    return UserMessage(
        channel=channel,
        conversation_id=cid,
        sender_id=cid,
        text=text,
        language=language,
        parse_data={"intent": {"name": intent, "confidence": 0.9}},
        timestamp=ts,
    )


def bot(cid: str, ts: float) -> BotMessage:
    return BotMessage(conversation_id=cid, text="ok", timestamp=ts)


async def save(store: SqlStore, cid: str, events: list[Event]) -> None:
    channel, _, sender = cid.partition(":")
    state = await store.load(cid) or ConversationState(
        conversation_id=cid, channel=channel, sender_id=sender
    )
    state.remember(events)
    await store.save(state, events)


async def test_figures_and_incremental_refresh(stores: tuple[SqlStore, Reporting]) -> None:
    store, reporting = stores
    # Day 0: a, answered then silent past the window (contained); b cancels a flow.
    await save(
        store, "rest:a", [user("rest:a", "where is it", "track_order", T0), bot("rest:a", T0 + 1)]
    )
    await save(
        store,
        "telegram:b",
        [
            user("telegram:b", "cancel", "cancel_order", T0 + 10, "zh"),
            FlowStarted(flow_id="cancel_order", timestamp=T0 + 10),
            FlowCancelled(flow_id="cancel_order", timestamp=T0 + 20),
            bot("telegram:b", T0 + 21),
        ],
    )
    # Day 8 (next week): c is not understood, asks for a person: claimed after 40 s, 200 s work.
    c, t = "rest:c", T0 + 8 * DAY
    await save(
        store,
        c,
        [
            user(c, "do you repair bikes", "nlu_fallback", t),
            FlowStarted(flow_id="pattern_cannot_handle", timestamp=t),
            bot(c, t + 1),
            user(c, "human", "contact_human_agent", t + 5),
            HandoffRequested(reason="asked", timestamp=t + 6),
        ],
    )
    assert await reporting.refresh() == 3
    query = Query(since=T0 - 1, until=T0 + 30 * DAY, window=3600)
    now = T0 + 9 * DAY
    f = await reporting.figures(query, now=now)
    assert (f.conversations, f.contained, f.settled, f.handoffs) == (3, 2, 3, 1)
    assert f.not_understood == 1
    assert f.claim_seconds == (None, None)
    assert f.flows == [("cancel_order", 1, 0, 1)]
    assert dict(f.intents)["cancel_order"] == 1
    assert [(p.label, p.conversations) for p in f.periods] == [("2026-09-21", 2), ("2026-09-29", 1)]
    weekly = await reporting.figures(
        Query(since=query.since, until=query.until, group="week"), now=now
    )
    assert [(p.label, p.conversations) for p in weekly.periods] == [
        ("2026-09-21", 2),
        ("2026-09-28", 1),
    ]
    zh = await reporting.figures(
        Query(since=query.since, until=query.until, language="zh"), now=now
    )
    assert (zh.conversations, zh.contained) == (1, 1)
    assert await reporting.waiting_handoffs() == (1, t + 6)

    # The desk claims and resolves c; the customer answers the survey; a starts a flow anew.
    await save(
        store,
        c,
        [
            AgentJoined(agent="U1", timestamp=t + 46),
            HandoffResolved(agent="U1", timestamp=t + 246),
            CsatAnswered(score=4, timestamp=t + 300),
        ],
    )
    await save(
        store,
        "rest:a",
        [
            user("rest:a", "track it", "track_order", T0 + 100),
            FlowStarted(flow_id="track_order", timestamp=T0 + 100),
            bot("rest:a", T0 + 101),
        ],
    )
    assert await reporting.refresh() == 2
    assert await reporting.refresh() == 0
    f = await reporting.figures(query, now=now)
    # a now has a flow left open: no longer contained.
    assert (f.conversations, f.contained, f.settled) == (3, 1, 3)
    assert f.claim_seconds == (40.0, 40.0)
    assert f.handling_seconds == (200.0, 200.0)
    assert (f.csat_answers, f.resolved_handoffs, f.csat_distribution) == (1, 1, {4: 1})
    assert f.flows == [("cancel_order", 1, 0, 1), ("track_order", 1, 0, 0)]
    # Inside the window the same conversations are still open, except the handed-off one.
    recent = await reporting.figures(query, now=T0 + 102)
    assert recent.pending == 2 and recent.settled == 1
    assert await reporting.waiting_handoffs() == (0, None)
    unknown = await reporting.unknown_messages(query)
    assert [(m.conversation_id, m.text) for m in unknown] == [(c, "do you repair bikes")]
    listed = await reporting.conversations(query, handoff=True)
    assert [r.conversation_id for r in listed] == [c]
    assert [
        r.conversation_id for r in await reporting.conversations(query, intent="cancel_order")
    ] == ["telegram:b"]
    # a completes the flow later: completed counts.
    await save(store, "rest:a", [FlowCompleted(flow_id="track_order", timestamp=T0 + 200)])
    await reporting.refresh()
    f = await reporting.figures(query, now=now)
    assert f.contained == 2
    assert f.flows[1] == ("track_order", 1, 1, 0)
    # a was redone three times; its intents are counted once each, not once per refresh.
    assert dict(f.intents) == {
        "track_order": 2,
        "cancel_order": 1,
        "nlu_fallback": 1,
        "contact_human_agent": 1,
    }


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([30.0, 90.0], 0.5) == 60.0
    assert percentile([30.0, 90.0], 0.9) == pytest.approx(84.0)
    assert percentile([5.0], 0.9) == 5.0


def test_sessions_expire_and_cannot_be_forged() -> None:
    sessions = Sessions("tok", lifetime=60)
    value = sessions.issue(now=1000)
    assert sessions.valid(value, now=1059)
    assert not sessions.valid(value, now=1061)
    expires, _, signature = value.partition(".")
    assert not sessions.valid(f"{int(expires) + 3600}.{signature}", now=1000)
    assert not Sessions("other", lifetime=60).valid(value, now=1000)
    assert not sessions.valid(None) and not sessions.valid("garbage")
    assert sessions.token_matches("tok") and not sessions.token_matches("to")


def test_grouping_puts_alike_messages_together() -> None:
    texts = {
        "en": ["do you sell socks in bulk", "can I buy socks in bulk", "is the lamp vegan"],
        "zh": ["你们修自行车吗", "可以修自行车吗", "你们卖花吗"],
    }
    messages = [
        UnknownMessage("rest:x", 1.0, text, language)
        for language, items in texts.items()
        for text in items
    ]
    groups = group_messages(messages)
    assert sorted(sorted(g.texts) for g in groups) == [
        ["can I buy socks in bulk", "do you sell socks in bulk"],
        ["is the lamp vegan"],
        ["你们修自行车吗", "可以修自行车吗"],
        ["你们卖花吗"],
    ]
