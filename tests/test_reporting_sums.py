"""The figures from the per-day sums equal the rules applied to every conversation by hand;
CSAT answers, LLM calls and desk times reach the dashboard and /metrics (SQLite, PostgreSQL)."""

from __future__ import annotations

import csv
import io
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import MetaData
from starlette.applications import Starlette

from bot.dashboard import dashboard_routes
from bot.events import (
    AgentJoined,
    BotMessage,
    CsatAnswered,
    CsatCommented,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    HandoffRequested,
    HandoffResolved,
    UserMessage,
)
from bot.llm.client import LLMClient
from bot.metrics import Metrics
from bot.reporting import ConversationFacts, Figures, Query, Reporting, summarize
from bot.reporting.figures import percentile
from bot.reporting.rollup import HandoffTimes
from bot.reporting.usage import channel_of_turn
from bot.state import ConversationState
from bot.store import SqlStore, open_store
from bot.store.engines import database_url, open_database
from bot.testing.openai_double import OpenAIDouble, Reply

DAY = 86400.0
T0 = 1_790_035_200.0  # 2026-09-22 00:00 UTC, a Tuesday
WINDOW = 3 * 3600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kefu.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest_asyncio.fixture
async def stores(url: str) -> AsyncIterator[tuple[SqlStore, Reporting, str]]:
    prefix = f"s{uuid.uuid4().hex[:8]}_"
    store = await open_store(url, table_prefix=prefix)
    reporting = Reporting(url, table_prefix=prefix)
    await reporting.initialize()
    try:
        yield store, reporting, prefix
    finally:
        await reporting.close()
        await store.close()
        db = open_database(database_url(url))
        tables = MetaData()
        for table in reporting.metadata.sorted_tables:
            table.to_metadata(tables)
        await db.write(tables.drop_all)
        await db.dispose()


async def save(store: SqlStore, cid: str, events: list[Event]) -> None:
    channel, _, sender = cid.partition(":")
    state = await store.load(cid) or ConversationState(
        conversation_id=cid, channel=channel, sender_id=sender
    )
    state.remember(events)
    await store.save(state, events)


def user(cid: str, intent: str, ts: float, language: str) -> UserMessage:
    return UserMessage(
        channel=cid.partition(":")[0],
        conversation_id=cid,
        sender_id=cid,
        text=f"about {intent}",
        language=language,
        parse_data={"intent": {"name": intent, "confidence": 0.9}},
        timestamp=ts,
    )


def random_turns(rng: random.Random, cid: str, start: float) -> list[list[Event]]:
    """A conversation in turns: any mix of understood and unknown messages, flows left open,
    completed or cancelled, confirmations, unanswered last messages, handoffs at any stage."""
    language = rng.choice(["en", "zh"])
    t = start
    turns: list[list[Event]] = []
    flow: str | None = None
    for _ in range(rng.randint(1, 4)):
        t += rng.uniform(5, 4000)
        intent = rng.choice(["track_order", "cancel_order", "nlu_fallback", "thanks", "inform"])
        # Some channels say the language only later: the conversation moves between sums.
        said = "" if not turns and rng.random() < 0.2 else language
        turn: list[Event] = [user(cid, intent, t, said)]
        if intent == "nlu_fallback":
            turn.append(FlowStarted(flow_id="pattern_cannot_handle", timestamp=t))
        elif intent in ("track_order", "cancel_order") and flow is None:
            flow = intent
            turn.append(FlowStarted(flow_id=flow, timestamp=t))
        elif flow is not None and rng.random() < 0.6:
            kind = FlowCompleted if rng.random() < 0.6 else FlowCancelled
            turn.append(kind(flow_id=flow, timestamp=t))
            flow = None
        if rng.random() < 0.85:
            turn.append(BotMessage(conversation_id=cid, text="ok", timestamp=t + 1))
        turns.append(turn)
    if rng.random() < 0.3:
        t += 10
        desk: list[Event] = [
            HandoffRequested(reason=rng.choice(["asked", "flow", "sentiment"]), timestamp=t)
        ]
        if rng.random() < 0.8:
            desk.append(AgentJoined(agent="U1", timestamp=t + rng.uniform(5, 900)))
            if rng.random() < 0.7:
                desk.append(HandoffResolved(agent="U1", timestamp=t + rng.uniform(1000, 3000)))
                if rng.random() < 0.6:
                    desk.append(CsatAnswered(score=rng.randint(1, 5), timestamp=t + 3100))
        turns.append(desk)
    return turns


def verdict(f: ConversationFacts, *, now: float) -> str:
    """The containment rule, applied to one conversation's facts."""
    if f.handoff_at is not None:
        return "not_contained"
    if f.user_messages == 0:
        return "none"
    answered = f.last_bot_at is not None and f.last_bot_at >= (f.last_user_at or 0.0)
    if f.confirmed and answered:
        return "contained"
    if f.last_active_at > now - WINDOW:
        return "open"
    if answered and not f.last_not_understood and not f.open_flows:
        return "contained"
    return "not_contained"


def expected(facts: list[ConversationFacts], query: Query, *, now: float) -> dict[str, Any]:
    first, last = query.days()
    chosen = [
        f
        for f in facts
        if first <= f.day <= last
        and (not query.channel or f.channel == query.channel)
        and (not query.language or f.language == query.language)
    ]
    verdicts = Counter(verdict(f, now=now) for f in chosen)
    handed = [f for f in chosen if f.handoff_at is not None]
    claimed = [f for f in handed if f.claimed_at is not None]
    claims = [f.claimed_at - f.handoff_at for f in claimed if f.claimed_at and f.handoff_at]
    handling = [f.resolved_at - f.claimed_at for f in claimed if f.resolved_at and f.claimed_at]
    return {
        "conversations": len(chosen),
        "contained": verdicts["contained"],
        "settled": verdicts["contained"] + verdicts["not_contained"],
        "pending": verdicts["open"],
        "handoffs": len(handed),
        "resolved_handoffs": sum(f.resolved_at is not None for f in handed),
        "reasons": dict(Counter(f.handoff_reason for f in handed)),
        "csat": dict(Counter(f.csat for f in chosen if f.csat is not None)),
        "not_understood": sum(len(f.unknown) for f in chosen),
        "claim": (percentile(claims, 0.5), percentile(claims, 0.9)),
        "handling": (percentile(handling, 0.5), percentile(handling, 0.9)),
        "per_day": dict(sorted(Counter(f.day for f in chosen).items())),
        "languages": dict(Counter(f.language or "?" for f in chosen)),
        "channels": dict(Counter(f.channel for f in chosen)),
    }


def observed(f: Figures) -> dict[str, Any]:
    return {
        "conversations": f.conversations,
        "contained": f.contained,
        "settled": f.settled,
        "pending": f.pending,
        "handoffs": f.handoffs,
        "resolved_handoffs": f.resolved_handoffs,
        "reasons": dict(f.handoff_reasons),
        "csat": f.csat_distribution,
        "not_understood": f.not_understood,
        "claim": f.claim_seconds,
        "handling": f.handling_seconds,
        "per_day": {p.label: p.conversations for p in f.periods},
        "languages": dict(f.languages),
        "channels": dict(f.channels),
    }


def close_to(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, the percentiles within float rounding (SQL subtracts in another order)."""
    for key in a:
        if key in ("claim", "handling"):
            if a[key] != pytest.approx(b[key]):
                return False
        elif a[key] != b[key]:
            return False
    return True


async def all_facts(store: SqlStore, ids: list[str]) -> list[ConversationFacts]:
    out = []
    for cid in ids:
        events = [orjson.loads(orjson.dumps(s.event.to_dict())) for s in await store.events(cid)]
        out.append(summarize(cid, cid.partition(":")[0], events))
    return out


async def test_sums_equal_the_rules_applied_by_hand(
    stores: tuple[SqlStore, Reporting, str],
) -> None:
    store, reporting, _ = stores
    rng = random.Random(16)
    conversations = {
        f"{rng.choice(['rest', 'telegram'])}:{i}": random_turns(rng, f"x:{i}", T0) for i in range(0)
    }
    conversations = {}
    for i in range(60):
        cid = f"{rng.choice(['rest', 'telegram'])}:{i}"
        start = T0 + rng.uniform(0, 9 * DAY)
        conversations[cid] = random_turns(rng, cid, start)
    # First the opening turns of each, then the rest: the sums are kept across refreshes.
    for cid, turns in conversations.items():
        await save(store, cid, turns[0])
    await reporting.refresh()
    for cid, turns in conversations.items():
        for turn in turns[1:]:
            await save(store, cid, turn)
    await reporting.refresh()
    facts = await all_facts(store, list(conversations))
    queries = [
        Query(since=T0, until=T0 + 12 * DAY, window=WINDOW),
        Query(since=T0, until=T0 + 12 * DAY, window=WINDOW, group="week"),
        Query(since=T0 + 2 * DAY, until=T0 + 5 * DAY, window=WINDOW, channel="telegram"),
        Query(since=T0, until=T0 + 12 * DAY, window=WINDOW, language="zh", channel="rest"),
    ]
    # ``now`` inside the period (some conversations still open) and long after it.
    for now in (T0 + 5 * DAY, T0 + 40 * DAY):
        for query in queries:
            want = expected(facts, query, now=now)
            got = observed(await reporting.figures(query, now=now))
            if query.group == "week":
                got["per_day"] = want["per_day"] = None
            assert close_to(got, want), (query, now, got, want)
    week = await reporting.figures(queries[1], now=T0 + 40 * DAY)
    assert [p.label for p in week.periods] == ["2026-09-21", "2026-09-28"]


async def test_csat_distribution_and_response_rate(
    stores: tuple[SqlStore, Reporting, str],
) -> None:
    """Survey answers as the desk saves them (CsatAnswered after a resolved handoff, then
    CsatCommented), and as it saved them before (a second CsatAnswered with the comment)."""
    store, reporting, _ = stores
    scores = {"rest:c1": 5, "rest:c2": 4, "telegram:c3": 5, "rest:c4": None, "rest:c5": 1}
    for i, (cid, score) in enumerate(scores.items()):
        t = T0 + i * 600
        events: list[Event] = [
            user(cid, "contact_human_agent", t, "en"),
            HandoffRequested(reason="asked", timestamp=t + 1),
            AgentJoined(agent="U7", timestamp=t + 61),
            HandoffResolved(agent="U7", timestamp=t + 361),
        ]
        if score is not None:
            events.append(CsatAnswered(score=score, timestamp=t + 400))
            if i % 2:  # the survey saves the rating, then the comment: one answer
                events.append(CsatCommented(comment="fine", timestamp=t + 420))
            else:  # as kefu stored it before: the rating, then the rating with the comment
                events.append(CsatAnswered(score=score, comment="fine", timestamp=t + 420))
        await save(store, cid, events)
    # A handoff not resolved yet: no survey, not in the response rate's denominator.
    await save(
        store,
        "rest:c6",
        [
            user("rest:c6", "contact_human_agent", T0 + 9000, "en"),
            HandoffRequested(timestamp=T0 + 9001),
        ],
    )
    await reporting.refresh()
    query = Query(since=T0, until=T0 + DAY, window=WINDOW)
    f = await reporting.figures(query, now=T0 + 2 * DAY)
    assert f.csat_distribution == {1: 1, 4: 1, 5: 2}
    assert (f.csat_answers, f.resolved_handoffs, f.handoffs) == (4, 5, 6)
    assert f.csat_response_rate == 0.8
    assert f.csat_average == 15 / 4
    rest = await reporting.figures(
        Query(since=T0, until=T0 + DAY, window=WINDOW, channel="rest"), now=T0 + 2 * DAY
    )
    assert (rest.csat_distribution, rest.csat_response_rate) == ({1: 1, 4: 1, 5: 1}, 0.75)


async def test_llm_calls_reach_the_figures_and_metrics(
    stores: tuple[SqlStore, Reporting, str], url: str
) -> None:
    _, reporting, prefix = stores
    metrics = Metrics(reporting, worker="w1")
    async with OpenAIDouble() as double:
        llm = LLMClient(model="m", base_url=double.base_url, api_key="k", timeout=5)
        llm.observe(reporting.llm_usage.record)
        llm.observe(metrics.llm_call)
        try:
            double.script(Reply(text="an answer"), Reply(text="another"), Reply(status=400))

            async def turn(message: UserMessage) -> list[BotMessage]:
                await llm.complete([{"role": "user", "content": "hi"}], purpose="answer")
                return []

            handler = channel_of_turn(turn)
            await handler(user("telegram:9", "inform", time.time(), "en"))
            await handler(user("telegram:9", "inform", time.time(), "en"))
            with pytest.raises(Exception, match="status 400"):
                await handler(user("rest:8", "inform", time.time(), "en"))
            # A call outside any customer's turn (scheduled work) counts under no channel.
            double.script(Reply(text="reminder"))
            await llm.complete([{"role": "user", "content": "x"}], purpose="commands")
        finally:
            await llm.close()
    await reporting.refresh()
    now = time.time()
    today = Query(since=now - now % DAY, until=now + 1)
    f = await reporting.figures(today)
    assert (f.llm_calls, f.llm_failures) == (4, 1)
    # The double counts words: prompts "hi", "hi", "x"; answers "an answer", "another", "reminder".
    assert (f.llm_prompt_tokens, f.llm_completion_tokens) == (3, 4)
    assert [(p.llm_calls, p.llm_failures, p.llm_tokens) for p in f.periods] == [(4, 1, 7)]
    telegram = await reporting.figures(
        Query(since=today.since, until=today.until, channel="telegram")
    )
    assert (telegram.llm_calls, telegram.llm_failures) == (2, 0)

    # Another worker (or this one after a restart) adds to the same sums.
    other = Reporting(url, table_prefix=prefix)
    await other.initialize()
    async with OpenAIDouble() as double:
        llm = LLMClient(model="m", base_url=double.base_url, timeout=5)
        llm.observe(other.llm_usage.record)
        await llm.complete([{"role": "user", "content": "x"}], purpose="answer")
        await llm.close()
    await other.close()  # flushes what it counted
    assert (await reporting.figures(today)).llm_calls == 5

    # The page and the CSV export show them.
    app = Starlette(routes=dashboard_routes(reporting, api_token="t0ken"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kefu.test") as http:
        assert (await http.post("/dashboard/login", data={"token": "t0ken"})).status_code == 303
        page = (await http.get("/dashboard?days=1")).text
        card = re.search(r'id="fig-llm-calls".*?class="v">(\d+)<.*?failed (\d+)', page, re.S)
        assert card is not None and card.groups() == ("5", "1")
        exported = (await http.get("/dashboard/export/figures.csv?days=1")).text
        rows = {r[0]: r[1] for r in csv.reader(io.StringIO(exported)) if len(r) == 2}
        assert (rows["llm_calls"], rows["llm_failures"], rows["llm_completion_tokens"]) == (
            "5",
            "1",
            "5",
        )

    text = (await metrics.render()).decode()
    assert re.search(
        r'kefu_llm_seconds_count\{outcome="ok",purpose="answer",worker="w1"\} 2\.0', text
    )
    assert re.search(
        r'kefu_llm_failures_total\{purpose="answer",reason="status 400",worker="w1"\} 1\.0', text
    )
    assert re.search(
        r'kefu_llm_tokens_total\{kind="completion",purpose="answer",worker="w1"\} 3\.0', text
    )


async def test_desk_times_and_queue_in_metrics(stores: tuple[SqlStore, Reporting, str]) -> None:
    store, reporting, _ = stores
    metrics = Metrics(reporting, worker="w2")
    seen: list[HandoffTimes] = []
    reporting.on_handoff(seen.append)
    now = time.time()
    # Two waiting, one claimed after 45 s and resolved 600 s later; one from long ago.
    await save(
        store,
        "rest:w1",
        [user("rest:w1", "human", now - 100, "en"), HandoffRequested(timestamp=now - 100)],
    )
    await save(
        store,
        "rest:w2",
        [user("rest:w2", "human", now - 30, "en"), HandoffRequested(timestamp=now - 30)],
    )
    t = now - 1000
    await save(
        store,
        "telegram:w3",
        [
            user("telegram:w3", "human", t, "en"),
            HandoffRequested(timestamp=t),
            AgentJoined(agent="U1", timestamp=t + 45),
        ],
    )
    old = now - 30 * DAY
    await save(
        store,
        "rest:old",
        [
            user("rest:old", "human", old, "en"),
            HandoffRequested(timestamp=old),
            AgentJoined(agent="U1", timestamp=old + 10),
            HandoffResolved(agent="U1", timestamp=old + 20),
        ],
    )
    text = (await metrics.render()).decode()
    assert re.search(r'kefu_desk_waiting_conversations\{worker="w2"\} 2\.0', text)
    oldest = re.search(r'kefu_desk_oldest_waiting_seconds\{worker="w2"\} ([\d.]+)', text)
    assert oldest is not None and 100 <= float(oldest.group(1)) < 1000
    # The old handoff is history (met by a rollup of old events), not an operations figure.
    assert [(h.channel, h.claimed_at, h.resolved_at) for h in seen] == [("telegram", t + 45, None)]
    assert re.search(r'kefu_desk_claim_seconds_count\{channel="telegram",worker="w2"\} 1\.0', text)
    assert re.search(r'kefu_desk_claim_seconds_sum\{channel="telegram",worker="w2"\} 45\.0', text)

    await save(store, "telegram:w3", [HandoffResolved(agent="U1", timestamp=t + 645)])
    await save(store, "rest:w1", [AgentJoined(agent="U2", timestamp=now - 40)])
    text = (await metrics.render()).decode()
    assert re.search(r'kefu_desk_waiting_conversations\{worker="w2"\} 1\.0', text)
    assert re.search(
        r'kefu_desk_handling_seconds_sum\{channel="telegram",worker="w2"\} 600\.0', text
    )
    assert re.search(r'kefu_desk_claim_seconds_sum\{channel="rest",worker="w2"\} 60\.0', text)
    # Each claim is told once, however often the conversation is rolled up again.
    await save(store, "telegram:w3", [user("telegram:w3", "thanks", now, "en")])
    await metrics.render()
    assert len(seen) == 3


async def test_tables_of_another_layout_are_rebuilt(
    stores: tuple[SqlStore, Reporting, str], url: str
) -> None:
    """Tables kept by an older kefu (other sums, or none) are emptied and rolled up again."""
    store, reporting, prefix = stores
    await save(store, "rest:r1", [user("rest:r1", "track_order", T0, "en")])
    await save(store, "rest:r2", [user("rest:r2", "thanks", T0 + 60, "en")])
    await reporting.refresh()
    query = Query(since=T0, until=T0 + DAY, window=WINDOW)
    before = await reporting.figures(query, now=T0 + 2 * DAY)
    assert before.conversations == 2

    def older_layout(conn: Any) -> None:
        kv = reporting._store.kv
        conn.execute(kv.update().where(kv.c.key == "layout").values(value="1"))
        conn.execute(reporting.daily.delete())  # an older kefu kept no such sums

    db = open_database(database_url(url))
    await db.write(older_layout)
    await db.dispose()
    again = Reporting(url, table_prefix=prefix)
    await again.initialize()
    try:
        assert await again.refresh() == 2
        assert await again.figures(query, now=T0 + 2 * DAY) == before
    finally:
        await again.close()


async def test_a_conversation_moving_to_its_language_leaves_no_empty_sums(
    stores: tuple[SqlStore, Reporting, str],
) -> None:
    store, reporting, _ = stores
    await save(store, "rest:m", [user("rest:m", "greet", T0, "")])
    await reporting.refresh()
    query = Query(since=T0, until=T0 + DAY, window=WINDOW)
    assert (await reporting.figures(query, now=T0 + DAY)).languages == [("?", 1)]
    await save(store, "rest:m", [user("rest:m", "track_order", T0 + 60, "zh")])
    await reporting.refresh()
    f = await reporting.figures(query, now=T0 + DAY)
    assert (f.languages, [(p.label, p.conversations) for p in f.periods]) == (
        [("zh", 1)],
        [("2026-09-22", 1)],
    )
