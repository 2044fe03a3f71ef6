"""The conversation store against real databases: a SQLite file, and PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import bot.events
from bot import constants
from bot.errors import (
    ConcurrentUpdateError,
    DatabaseUnavailableError,
    DuplicateMessageError,
    PermanentDeliveryError,
    StoreError,
)
from bot.events import (
    ActionExecuted,
    AgentJoined,
    AgentLeft,
    AgentMessage,
    AgentNote,
    AllSlotsReset,
    Attachment,
    BotMessage,
    Button,
    ConversationPaused,
    ConversationResumed,
    CsatAnswered,
    CsatCommented,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowInterrupted,
    FlowResumed,
    FlowStarted,
    FollowupAction,
    HandoffRequested,
    HandoffResolved,
    Restarted,
    SessionStarted,
    SlotSet,
    UnknownEvent,
    UserMessage,
)
from bot.files import FileBlob, StoredFiles
from bot.ports import ActionResult, ConversationStore, RecordedAction, ScheduledJob
from bot.state import ConversationState
from bot.store import SqlStore, database_url, open_store
from bot.store.pg_connections import plain_dsn
from bot.testing.memory_store import MemoryDatabase, MemoryStore

TABLES = (
    "conversations",
    "events",
    "processed_messages",
    "action_journal",
    "outbox",
    "kv",
    "scheduled_jobs",
)
CID = "rest:alice"


@dataclasses.dataclass(frozen=True)
class Db:
    """A database the contract runs on: in memory, or SQL with a table prefix of its own, so
    runs never see each other's rows."""

    url: str
    prefix: str
    memory: MemoryDatabase | None = None

    async def open(self, **options: Any) -> ConversationStore:
        """A store on this database; ``options`` are the SQL store's (a SQL database only)."""
        if self.memory is not None:
            assert not options, "the memory store has no options"
            return MemoryStore(self.memory)
        return await open_store(self.url, table_prefix=self.prefix, **options)

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run raw SQL beside the store, as another program (or a disk fault) would."""
        assert self.memory is None, "raw SQL needs a SQL database (the sql_db fixture)"
        url = make_url(self.url)
        driver = "sqlite+aiosqlite" if url.get_backend_name() == "sqlite" else "postgresql+asyncpg"
        engine = create_async_engine(url.set(drivername=driver))
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement.format(p=self.prefix)), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    async def journal_rows(self, message_id: str) -> int:
        """How many action journal records the REST message ``message_id`` has, read or not."""
        if self.memory is not None:
            return len(self.memory.journal.get(("rest", message_id), {}))
        query = "SELECT COUNT(*) FROM {p}action_journal WHERE message_id = :m"
        [(count,)] = await self.sql(query, m=message_id)
        return int(count)

    async def outbox_conversations(self) -> list[str]:
        """The conversation of every outbox entry, whatever its status."""
        if self.memory is not None:
            return self.memory.outbox_conversations()
        return [r.conversation_id for r in await self.sql("SELECT conversation_id FROM {p}outbox")]


async def _database(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Db]:
    if kind == "memory":
        yield Db("memory", "", MemoryDatabase())
        return
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'kefu.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Db(url, f"t{uuid.uuid4().hex[:12]}_")
    yield database
    if kind == "postgresql":
        for name in TABLES:
            await database.sql(f"DROP TABLE IF EXISTS {{p}}{name}")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Db]:
    """Every store implementation: the contract below holds for each."""
    async for database in _database(request.param, request, tmp_path):
        yield database


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql_db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Db]:
    """The SQL databases only: for what raw SQL sets up, and the SQL store's own options."""
    async for database in _database(request.param, request, tmp_path):
        yield database


@pytest.fixture
async def store(db: Db) -> AsyncIterator[ConversationStore]:
    opened = await db.open()
    yield opened
    await opened.close()


@pytest.fixture
async def sql_store(sql_db: Db) -> AsyncIterator[ConversationStore]:
    opened = await sql_db.open()
    yield opened
    await opened.close()


def new_state(cid: str = CID, **fields: Any) -> ConversationState:
    channel, _, sender = cid.partition(":")
    return ConversationState(conversation_id=cid, channel=channel, sender_id=sender, **fields)


def user(text_: str, cid: str = CID, message_id: str | None = None) -> UserMessage:
    channel, _, sender = cid.partition(":")
    return UserMessage(
        channel=channel, conversation_id=cid, sender_id=sender, text=text_, message_id=message_id
    )


def reply(text_: str, cid: str = CID) -> BotMessage:
    return BotMessage(conversation_id=cid, text=text_, buttons=(Button("Yes", "/affirm"),))


async def turn(
    store: ConversationStore, cid: str, text_: str, *, message_id: str | None = None
) -> tuple[ConversationState, list[int]]:
    """One turn as the dialogue runs it: load, change, save with a reply in the outbox."""
    state = await store.load(cid) or new_state(cid)
    answer = reply(f"re: {text_}", cid)
    events: list[Event] = [user(text_, cid, message_id), answer]
    state.slots["last"] = text_
    state.remember(events)
    key = (state.channel, message_id) if message_id else None
    ids = await store.save(state, events, outbox=[answer], message_key=key)
    return state, ids


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, UserMessage | BotMessage) and e.text]


def every_event() -> list[Event]:
    return [
        UserMessage(
            channel="telegram",
            conversation_id="telegram:42",
            sender_id="42",
            text="我的订单在哪里？",
            payload='/track_order{"order_id": "A1"}',
            attachments=(Attachment(kind="location", data={"lat": 31.2, "lon": 121.5}),),
            language="zh",
            message_id="7",
            metadata={"chat_type": "private"},
            parse_data={"intent": {"name": "track_order", "confidence": 0.9}, "entities": []},
        ),
        BotMessage(
            conversation_id="telegram:42",
            text="Which order?",
            buttons=(Button("A1", "/inform"), Button("A2", "/inform")),
            image="https://shop.example/a1.png",
            custom={"card": {"sku": "A1"}},
            response="utter_ask_order_id",
            metadata={"rendered": True},
        ),
        SlotSet(name="order_id", value={"id": "A1", "items": [1, 2]}),
        AllSlotsReset(),
        Restarted(),
        FollowupAction(name="action_check_order"),
        ActionExecuted(name="action_listen", policy="flow", confidence=1.0),
        SessionStarted(),
        ConversationPaused(),
        ConversationResumed(),
        FlowStarted(flow_id="track_order"),
        FlowCompleted(flow_id="track_order", step_id="done"),
        FlowCancelled(flow_id="return_item", step_id="ask_reason"),
        FlowInterrupted(flow_id="track_order", step_id="collect"),
        FlowResumed(flow_id="track_order", step_id="collect"),
        HandoffRequested(reason="customer asked for a human"),
        AgentJoined(agent="U123"),
        AgentLeft(agent="U123"),
        AgentMessage(agent="U123", text="Hi, I am Lin."),
        AgentNote(agent="U123", text="VIP customer"),
        HandoffResolved(agent="U123"),
        CsatAnswered(score=5),
        CsatCommented(comment="很好"),
        CsatAnswered(score=4, comment="stored before csat_comment"),
        UnknownEvent(
            data={"event": "user_featurization", "timestamp": 12.5, "x": [1]}, timestamp=12.5
        ),
    ]


# --- conversations --------------------------------------------------------------------------


async def test_unknown_conversation_loads_as_none(store: ConversationStore) -> None:
    assert await store.load("rest:nobody") is None
    assert await store.events("rest:nobody") == []


async def test_state_round_trips_through_cache_and_database(
    store: ConversationStore, db: Db
) -> None:
    state = new_state(
        slots={"order_id": "A1", "items": [{"sku": "S-1", "qty": 2}], "名字": "小明"},
        stack=[{"flow_id": "track_order", "step_id": "collect_order_id", "type": "flow"}],
        language="zh",
        latest_message={"text": "hi", "intent": {"name": "greet", "confidence": 0.99}},
        latest_action="action_listen",
        paused=True,
        session_started_at=1000.5,
        profile={"first_name": "Ming"},
    )
    state.remember([user("hi")])
    assert await store.save(state, [user("hi")]) == []
    assert state.version == 1

    cached = await store.load(CID)
    assert cached == state
    cached.slots["order_id"] = "changed by the caller"
    cached.stack.clear()
    assert await store.load(CID) == state, "the cache handed out its own copy"

    fresh = await db.open()
    try:
        assert await fresh.load(CID) == state
    finally:
        await fresh.close()


async def test_every_event_kind_round_trips(store: ConversationStore) -> None:
    events = every_event()
    kinds = {
        obj
        for name in bot.events.__all__
        if isinstance(obj := getattr(bot.events, name), type)
        and issubclass(obj, Event)
        and obj is not Event
    }
    assert {type(e) for e in events} == kinds, "every event kind is covered"
    await store.save(new_state("telegram:42"), events)
    stored = await store.events("telegram:42")
    assert [s.event for s in stored] == events
    assert [s.seq for s in stored] == list(range(1, len(events) + 1))


async def test_event_seq_continues_across_saves(store: ConversationStore) -> None:
    state = new_state()
    await store.save(state, [user("one"), user("two"), user("three")])
    await store.save(state, [user("four"), user("five")])
    await store.save(state, [])
    stored = await store.events(CID)
    assert [s.seq for s in stored] == [1, 2, 3, 4, 5]
    assert [s.event.text for s in stored] == ["one", "two", "three", "four", "five"]  # type: ignore[attr-defined]
    assert [s.seq for s in await store.events(CID, after=3)] == [4, 5]
    assert [s.seq for s in await store.events(CID, after=1, limit=2)] == [2, 3]
    assert state.version == 3


async def test_stale_version_is_refused_and_writes_nothing(store: ConversationStore) -> None:
    state, _ = await turn(store, CID, "hello", message_id="m1")
    stale = dataclasses.replace(state, version=0, slots={"last": "stale"})
    for version in (0, 2, 7):
        stale.version = version
        with pytest.raises(ConcurrentUpdateError, match="rest:alice"):
            await store.save(
                stale, [user("lost")], outbox=[reply("lost")], message_key=("rest", "m2")
            )
        assert stale.version == version
    loaded = await store.load(CID)
    assert loaded is not None
    assert (loaded.version, loaded.slots["last"]) == (1, "hello")
    assert len(await store.events(CID)) == 2
    assert len(await store.pending_deliveries(now=time.time() + 1)) == 1
    assert not await store.is_processed("rest", "m2")


async def test_turn_events_are_the_whole_turn_that_holds_a_message_id(
    store: ConversationStore,
) -> None:
    state = new_state()
    first: list[Event] = [SessionStarted(), reply("Welcome!"), user("hi", message_id="m1")]
    first.append(reply("re: hi"))
    state.remember(first)
    await store.save(state, first, message_key=("rest", "m1"))
    await turn(store, CID, "m1", message_id="m2")  # its text is the other id: not that turn
    await turn(store, CID, "later")
    assert await store.turn_events(CID, "m1") == first
    assert texts(await store.turn_events(CID, "m2")) == ["m1", "re: m1"]
    assert await store.turn_events(CID, "m9") == []
    assert await store.turn_events("rest:bob", "m1") == []


async def test_turn_events_find_ids_that_sql_or_json_would_escape(store: ConversationStore) -> None:
    odd = ["50%_off", "a/b\\c", 'say "hi"', "订单-1"]
    for message_id in odd:
        await turn(store, CID, f"text of {message_id}", message_id=message_id)
    for message_id in odd:
        events = await store.turn_events(CID, message_id)
        assert texts(events) == [f"text of {message_id}", f"re: text of {message_id}"]
    assert await store.turn_events(CID, "50") == []
    assert await store.turn_events(CID, "50__off") == []


async def test_two_stores_on_one_database_see_each_others_writes(db: Db) -> None:
    """Two processes: the version check, not the cache, decides who wins."""
    first, second = await db.open(), await db.open()
    try:
        await turn(first, CID, "from the first")
        behind = await second.load(CID)
        assert behind is not None and behind.version == 1
        await turn(first, CID, "first again")

        behind.slots["last"] = "from the second"
        with pytest.raises(ConcurrentUpdateError):
            await second.save(behind, [user("from the second")])
        current = await second.load(CID)
        assert current is not None
        assert (current.version, current.slots["last"]) == (2, "first again")
        await second.save(current, [user("second, reloaded")])
        assert current.version == 3

        both_new = [new_state("rest:bob"), new_state("rest:bob")]
        await first.save(both_new[0], [user("bob 1", "rest:bob")])
        with pytest.raises(ConcurrentUpdateError):
            await second.save(both_new[1], [user("bob 2", "rest:bob")])
        assert [s.seq for s in await first.events("rest:bob")] == [1]
        assert [s.seq for s in await first.events(CID)] == [1, 2, 3, 4, 5]
    finally:
        await first.close()
        await second.close()


async def test_duplicate_message_is_refused_and_writes_nothing(store: ConversationStore) -> None:
    state, _ = await turn(store, CID, "hello", message_id="m1")
    assert await store.is_processed("rest", "m1")
    assert not await store.is_processed("telegram", "m1")
    with pytest.raises(DuplicateMessageError, match="m1"):
        await store.save(state, [user("again")], outbox=[reply("x")], message_key=("rest", "m1"))
    assert state.version == 1
    other = new_state("rest:bob")
    with pytest.raises(DuplicateMessageError):
        await store.save(other, [user("bob")], message_key=("rest", "m1"))
    assert await store.load("rest:bob") is None
    assert len(await store.events(CID)) == 2
    assert len(await store.pending_deliveries(now=time.time() + 1)) == 1
    loaded = await store.load(CID)
    assert loaded is not None and loaded.version == 1


async def test_the_action_journal_keeps_results_until_its_turn_is_saved(
    store: ConversationStore, db: Db
) -> None:
    charged = RecordedAction(
        step=0,
        name="action_charge",
        result=ActionResult(
            events=[{"event": "slot", "name": "paid", "value": {"sum": 12.5}}],
            responses=[{"text": "charged 支付"}],
        ),
    )
    first = RecordedAction(step=1, name="action_receipt", result=ActionResult())
    second = RecordedAction(step=1, name="action_refund", result=ActionResult(responses=[{}]))
    for action in (charged, first, second):  # a later attempt's step replaces an earlier one's
        await store.record_action("rest", "m1", conversation_id=CID, action=action)
    await store.record_action("rest", "m2", conversation_id=CID, action=first)
    assert await store.recorded_actions("rest", "m1") == [charged, second]
    assert await store.recorded_actions("telegram", "m1") == []
    state = new_state()
    await store.save(state, [user("hi", message_id="m1")], message_key=("rest", "m1"))
    assert await store.recorded_actions("rest", "m1") is None  # saved: its journal is not read
    assert await db.journal_rows("m1") == 2  # the save was not journaled: the records stay
    await store.save(
        state, [user("hi", message_id="m2")], message_key=("rest", "m2"), journaled=True
    )
    assert await store.recorded_actions("rest", "m2") is None  # saved
    assert await db.journal_rows("m2") == 0  # and its records dropped in the same write


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "one-by-one"])
async def test_concurrent_saves_on_many_conversations_all_land(
    sql_db: Db, group_commit: bool
) -> None:
    store = await sql_db.open(group_commit=group_commit)
    try:

        async def talk(n: int) -> list[int]:
            ids = []
            for t in range(3):
                ids += (await turn(store, f"rest:u{n}", f"t{t}", message_id=f"{n}-{t}"))[1]
            return ids

        ids = [i for got in await asyncio.gather(*(talk(n) for n in range(150))) for i in got]
        assert len(set(ids)) == 450
    finally:
        await store.close()
    reopened = await sql_db.open()
    try:
        for n in (0, 77, 149):
            state = await reopened.load(f"rest:u{n}")
            assert state is not None and state.version == 3
            assert [s.seq for s in await reopened.events(f"rest:u{n}")] == list(range(1, 7))
        pending = await reopened.pending_deliveries(now=time.time() + 1, limit=1000)
        assert sorted(p.id for p in pending) == sorted(ids)
    finally:
        await reopened.close()


async def test_a_failing_write_fails_only_its_caller(store: ConversationStore) -> None:
    """Writes committed together: a conflict, a duplicate or a bad id spoil nothing else."""
    await turn(store, "rest:taken", "first", message_id="dup")
    stale = new_state("rest:taken")

    results = await asyncio.gather(
        *(turn(store, f"rest:ok{n}", "hi", message_id=f"ok{n}") for n in range(20)),
        store.save(stale, [user("stale", "rest:taken")]),
        store.save(new_state("rest:dup"), [user("dup", "rest:dup")], message_key=("rest", "dup")),
        store.mark_delivered(987654),
        *(turn(store, f"rest:late{n}", "hi") for n in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[20], ConcurrentUpdateError)
    assert isinstance(results[21], DuplicateMessageError)
    assert isinstance(results[22], StoreError) and "987654" in str(results[22])
    fine = results[:20] + results[23:]
    assert not [r for r in fine if isinstance(r, BaseException)]
    for n in range(20):
        state = await store.load(f"rest:ok{n}")
        assert state is not None and state.version == 1
    assert await store.load("rest:dup") is None


# --- outbox ---------------------------------------------------------------------------------


async def test_outbox_lifecycle(store: ConversationStore) -> None:
    first, second = reply("one"), BotMessage(conversation_id=CID, custom={"kind": "card"})
    now = time.time()
    ids = await store.save(new_state(), [first, second], outbox=[first, second])
    assert len(ids) == 2 and ids[0] < ids[1]

    due = await store.pending_deliveries(now=now + 1)
    assert [(d.id, d.channel, d.message, d.attempts) for d in due] == [
        (ids[0], "rest", first, 0),
        (ids[1], "rest", second, 0),
    ]
    assert [d.id for d in await store.pending_deliveries(now=now + 1, limit=1)] == ids[:1]
    assert await store.pending_deliveries(now=now - 60) == []

    await store.mark_failed(ids[0], error="HTTP 502", retry_at=now + 30)
    assert [d.id for d in await store.pending_deliveries(now=now + 1)] == ids[1:]
    later = await store.pending_deliveries(now=now + 31)
    assert [(d.id, d.attempts) for d in later] == [(ids[0], 1), (ids[1], 0)]

    await store.mark_delivered(ids[1])
    await store.mark_failed(ids[0], error="HTTP 403: bot was blocked", retry_at=None)
    assert await store.pending_deliveries(now=now + 10_000) == []


async def test_marking_an_unknown_delivery_raises(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="no outbox entry 424242"):
        await store.mark_delivered(424242)
    with pytest.raises(StoreError, match="no outbox entry 424242"):
        await store.mark_failed(424242, error="x", retry_at=None)


async def test_unreadable_outbox_row_is_failed_and_skipped(
    sql_store: ConversationStore, sql_db: Db
) -> None:
    ids = await sql_store.save(new_state(), [], outbox=[reply("one"), reply("two"), reply("three")])
    await sql_db.sql("UPDATE {p}outbox SET message = '{{broken' WHERE id = :id", id=ids[0])
    await sql_db.sql(
        "UPDATE {p}outbox SET message = :m WHERE id = :id",
        m='{"event": "slot", "name": "x"}',
        id=ids[1],
    )
    due = await sql_store.pending_deliveries(now=time.time() + 1)
    assert [d.id for d in due] == ids[2:]
    rows = await sql_db.sql("SELECT id, status, last_error FROM {p}outbox ORDER BY id")
    assert [r.status for r in rows] == ["failed", "failed", "pending"]
    assert "unreadable message" in rows[0].last_error
    assert "not a bot message" in rows[1].last_error


# --- small values, retention, durability ----------------------------------------------------


async def test_key_values(store: ConversationStore) -> None:
    assert await store.get_value("telegram:buttons", "abc") is None
    await store.put_value("telegram:buttons", "abc", '/inform{"order_id": "A1"}')
    await store.put_value("slack:threads", "abc", "1700000000.000100")
    assert await store.get_value("telegram:buttons", "abc") == '/inform{"order_id": "A1"}'
    await store.put_value("telegram:buttons", "abc", "replaced")
    assert await store.get_value("telegram:buttons", "abc") == "replaced"
    assert await store.get_value("slack:threads", "abc") == "1700000000.000100"


async def test_shared_values_count_atomically_list_and_delete(
    store: ConversationStore, db: Db
) -> None:
    other = await db.open()  # another worker on the same database
    try:
        counts = await asyncio.gather(
            *(s.increment("counter", "ticket") for s in [store, other] * 10)
        )
        assert sorted(counts) == list(range(1, 21))
        assert await store.get_value("counter", "ticket") == "20"
        await store.put_value("open", "telegram:1", "3")
        await other.put_value("open", "telegram:2", "4")
        await store.put_value("closed", "telegram:3", "5")
        assert await other.values("open") == {"telegram:1": "3", "telegram:2": "4"}
        await other.delete_value("open", "telegram:1")
        await other.delete_value("open", "telegram:1")  # gone already: nothing to do
        assert await store.values("open") == {"telegram:2": "4"}
        assert await store.values("nothing") == {}
        assert await other.update_value("open", "telegram:2", "6") is True
        assert await other.update_value("open", "telegram:1", "7") is False  # stays deleted
        assert await store.values("open") == {"telegram:2": "6"}
    finally:
        await other.close()


async def test_retention_deletes_old_conversations_with_everything_they_own(
    store: ConversationStore, db: Db
) -> None:
    for cid, active in (("rest:old", 100.0), ("rest:older", 50.0), ("rest:recent", 300.0)):
        ev = user("hi", cid, message_id=f"m-{cid}")
        answer = reply("hello", cid)
        await store.save(
            new_state(cid, last_active_at=active),
            [ev, answer],
            outbox=[answer],
            message_key=("rest", f"m-{cid}"),
        )
        await store.save_job(ScheduledJob(id=f"j-{cid}", kind="k", run_at=1.0, conversation_id=cid))
        for namespace in constants.CONVERSATION_NAMESPACES:
            await store.put_value(namespace, cid, f"{namespace} of {cid}")
        for namespace in constants.CONVERSATION_VALUE_NAMESPACES:
            await store.put_value(namespace, f"{namespace}/{cid}", cid)
        charged = RecordedAction(step=0, name="action_charge", result=ActionResult())
        await store.record_action("rest", f"n-{cid}", conversation_id=cid, action=charged)
    await store.put_value("callbacks", "rest:old", "kept: not a conversation's namespace")
    files = StoredFiles(store)
    old_file = await files.put(FileBlob("a.png", "image/png", b"old"), owner="rest:old")
    kept_file = await files.put(FileBlob("b.png", "image/png", b"new"), owner="rest:recent")
    assert await store.delete_conversations_before(200.0) == 2
    assert await store.delete_conversations_before(200.0) == 0
    for cid in ("rest:old", "rest:older"):
        assert await store.load(cid) is None
        assert await store.events(cid) == []
        assert not await store.is_processed("rest", f"m-{cid}")
        assert await store.turn_events(cid, f"m-{cid}") == []
        assert await store.recorded_actions("rest", f"n-{cid}") == []
    assert await store.load("rest:recent") is not None
    assert len(await store.events("rest:recent")) == 2
    assert await store.is_processed("rest", "m-rest:recent")
    assert len(await store.recorded_actions("rest", "n-rest:recent")) == 1
    assert await db.outbox_conversations() == ["rest:recent"]
    assert [job.conversation_id for job in await store.jobs()] == ["rest:recent"]
    assert await store.get_value("callbacks", "rest:old") is not None
    for namespace in constants.CONVERSATION_NAMESPACES:  # the desk's tickets among them
        assert await store.get_value(namespace, "rest:old") is None
        assert await store.get_value(namespace, "rest:recent") == f"{namespace} of rest:recent"
    for namespace in constants.CONVERSATION_VALUE_NAMESPACES:  # threads and ticket numbers
        assert await store.get_value(namespace, f"{namespace}/rest:older") is None
        assert await store.get_value(namespace, f"{namespace}/rest:recent") == "rest:recent"
    with pytest.raises(PermanentDeliveryError):
        await files.get(old_file)
    assert (await files.get(kept_file)).data == b"new"
    assert (await turn(store, "rest:old", "back again"))[0].version == 1


async def test_scheduled_jobs_are_replaced_by_id_filtered_and_claimed_by_due_time(
    store: ConversationStore,
) -> None:
    def job(job_id: str, at: float, kind: str = "notice", cid: str | None = CID) -> ScheduledJob:
        return ScheduledJob(id=job_id, kind=kind, run_at=at, conversation_id=cid, data={"n": at})

    await store.save_job(job("a", 30.0))
    await store.save_job(job("a", 20.0))  # the same id: replaced
    await store.save_job(job("b", 10.0, kind="reminder"))
    await store.save_job(job("c", 40.0, kind="retention", cid=None))
    assert [(j.id, j.run_at, j.data) for j in await store.jobs()] == [
        ("b", 10.0, {"n": 10.0}),
        ("a", 20.0, {"n": 20.0}),
        ("c", 40.0, {"n": 40.0}),
    ]
    assert [j.id for j in await store.jobs(kind="reminder")] == ["b"]
    assert [j.id for j in await store.jobs(conversation_id=CID)] == ["b", "a"]
    assert await store.delete_job("a", run_at=19.0) is False  # rescheduled for later: kept
    assert await store.delete_job("a", run_at=20.0) is True
    assert await store.delete_job("a") is False


async def test_a_scheduled_job_whose_row_is_unreadable_is_skipped(
    sql_store: ConversationStore, sql_db: Db
) -> None:
    for job_id, at in (("b", 10.0), ("c", 40.0)):
        await sql_store.save_job(ScheduledJob(id=job_id, kind="notice", run_at=at, data={"n": at}))
    await sql_db.sql("UPDATE {p}scheduled_jobs SET data = 'not json' WHERE id = 'b'")
    assert [j.id for j in await sql_store.jobs()] == ["c"]


async def test_everything_survives_close_and_reopen(db: Db) -> None:
    store = await db.open()
    state, ids = await turn(store, CID, "remember me", message_id="m1")
    await store.put_value("ns", "k", "v")
    await store.close()
    await store.close()  # closing twice is harmless

    reopened = await db.open()
    try:
        assert await reopened.load(CID) == state
        assert [s.seq for s in await reopened.events(CID)] == [1, 2]
        assert await reopened.is_processed("rest", "m1")
        assert [d.id for d in await reopened.pending_deliveries(now=time.time() + 1)] == ids
        assert await reopened.get_value("ns", "k") == "v"
        assert (await turn(reopened, CID, "and again"))[0].version == 2
    finally:
        await reopened.close()


async def test_cache_is_bounded_and_written_through(sql_db: Db) -> None:
    store = await sql_db.open(cache_size=1)
    try:
        await store.save(new_state("rest:a"), [])
        await store.save(new_state("rest:b"), [])
        await sql_db.sql("UPDATE {p}conversations SET state = 'garbage'")
        assert await store.load("rest:b") is not None, "the latest save is served from memory"
        with pytest.raises(StoreError, match="rest:a"):
            await store.load("rest:a")
    finally:
        await store.close()


# --- bad input and bad data -----------------------------------------------------------------


@pytest.mark.parametrize(
    "stored", ["{not json", "[1, 2]", '{"conversation_id": "rest:alice", "colour": "red"}']
)
async def test_corrupted_state_row_raises_store_error_naming_the_conversation(
    sql_db: Db, stored: str
) -> None:
    store = await sql_db.open()
    await store.save(new_state(), [])
    await store.close()
    await sql_db.sql("UPDATE {p}conversations SET state = :s", s=stored)
    reopened = await sql_db.open()
    try:
        with pytest.raises(StoreError, match=r"conversation 'rest:alice': stored state"):
            await reopened.load(CID)
    finally:
        await reopened.close()


async def test_corrupted_event_row_raises_store_error_naming_it(
    sql_store: ConversationStore, sql_db: Db
) -> None:
    state = new_state()
    for text_ in ("one", "two"):  # two turns: two rows
        state.remember([user(text_)])
        await sql_store.save(state, [user(text_)])
    await sql_db.sql("UPDATE {p}events SET data = 'oops' WHERE seq = 2")
    assert len(await sql_store.events(CID, limit=1)) == 1
    with pytest.raises(StoreError, match=r"'rest:alice': event 2 is unreadable"):
        await sql_store.events(CID)


async def test_unstorable_turn_is_refused_before_anything_is_written(
    store: ConversationStore,
) -> None:
    state = new_state(slots={"when": object()})
    with pytest.raises(StoreError, match="rest:alice"):
        await store.save(state, [user("hi")])
    bad_event = UserMessage(
        channel="rest", conversation_id=CID, sender_id="alice", metadata={"raw": {1, 2}}
    )
    with pytest.raises(StoreError, match="cannot store this turn"):
        await store.save(new_state(), [bad_event])
    with pytest.raises(StoreError, match="message_key"):
        await store.save(new_state(), [], message_key=("telegram", 42))  # type: ignore[arg-type]
    assert await store.load(CID) is None
    assert await store.events(CID) == []
    await store.save(new_state(slots={"when": "today"}), [user("hi")])  # the store still works


async def test_non_string_values_are_refused(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="must be strings"):
        await store.put_value("ns", "k", 42)  # type: ignore[arg-type]
    assert await store.get_value("ns", "k") is None


async def test_closed_store_refuses_work(db: Db) -> None:
    store = await db.open()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load(CID)
    with pytest.raises(StoreError, match="closed"):
        await store.save(new_state(), [])


async def test_close_commits_queued_writes(db: Db) -> None:
    store = await db.open()
    saves = [
        asyncio.create_task(store.save(new_state(f"rest:q{n}"), [user("hi", f"rest:q{n}")]))
        for n in range(30)
    ]
    await asyncio.sleep(0)  # every save is queued, none committed yet
    await store.close()
    assert [await save for save in saves] == [[]] * 30
    reopened = await db.open()
    try:
        assert all([await reopened.load(f"rest:q{n}") for n in range(30)])
    finally:
        await reopened.close()


def test_urls_are_mapped_to_the_drivers_the_store_runs() -> None:
    assert database_url("sqlite:///kefu.db").drivername == "sqlite+pysqlite"
    assert database_url("sqlite+aiosqlite:///kefu.db").drivername == "sqlite+pysqlite"
    assert database_url("postgresql://u@db/kefu").drivername == "postgresql+asyncpg"
    assert database_url("postgresql+psycopg2://u@db/kefu").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize("url", ["mysql://u:pw@db/kefu", "not a url", ""])
def test_unsupported_or_malformed_url_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match="database URL") as error:
        SqlStore(url)
    assert ":pw@" not in str(error.value)


def test_invalid_table_prefix_is_refused() -> None:
    with pytest.raises(StoreError, match="table prefix"):
        SqlStore("sqlite://", table_prefix="x; DROP TABLE kv")


async def test_unreachable_database_names_it_without_the_password() -> None:
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1") as error:
        await open_store("postgresql://kefu:s3cret@127.0.0.1:1/kefu")
    assert "s3cret" not in str(error.value)


async def test_a_server_out_of_connections_is_unavailable_not_broken(postgres_url: str) -> None:
    """PostgreSQL's "too many clients" (SQLSTATE 53300) passes: retryable, REST answers 503."""
    admin = await asyncpg.connect(plain_dsn(postgres_url))
    try:
        await admin.execute("DROP ROLE IF EXISTS kefu_no_connections")
        await admin.execute("CREATE ROLE kefu_no_connections LOGIN CONNECTION LIMIT 0")
        limited = make_url(database_url(postgres_url)).set(username="kefu_no_connections")
        store = SqlStore(limited.render_as_string(hide_password=False))
        try:
            with pytest.raises(DatabaseUnavailableError, match="TooManyConnectionsError"):
                await store.load(CID)
        finally:
            await store.close()
    finally:
        await admin.execute("DROP ROLE kefu_no_connections")
        await admin.close()


async def test_in_memory_sqlite_works() -> None:
    store = await open_store("sqlite://")
    try:
        state, ids = await turn(store, CID, "hi", message_id="m1")
        assert await store.load(CID) == state
        assert [d.id for d in await store.pending_deliveries(now=time.time() + 1)] == ids
        assert len(await store.events(CID)) == 2
    finally:
        await store.close()


async def test_missing_sqlite_directory_is_reported(tmp_path: Any) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        await open_store(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'kefu.db'}")


async def test_a_turns_replies_are_marked_delivered_in_one_write(store: ConversationStore) -> None:
    _, first = await turn(store, "rest:batch", "one")
    _, second = await turn(store, "rest:batch", "two")
    await store.mark_delivered(*first, *second)
    assert await store.pending_deliveries(now=time.time() + 1) == []
    _, third = await turn(store, "rest:batch", "three")
    with pytest.raises(StoreError, match="no outbox entry"):
        await store.mark_delivered(*third, 424242)
    await store.mark_delivered()  # nothing to record is fine
