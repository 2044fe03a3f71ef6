"""The PostgreSQL machinery several workers share, each part against the real server: conversation
locks, leadership, live pushes, and a store that answers retryably while the server is cut off.
Two instances of a part stand for two workers (each has its own connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.errors import ConversationBusyError, DatabaseUnavailableError, TransientError
from bot.events import BotMessage, UserMessage
from bot.scaling import Workers
from bot.settings import Settings
from bot.state import ConversationState
from bot.store import SqlStore, open_store
from bot.store.advisory import Leadership, PostgresLocks, lock_key
from bot.store.engines import PoolOptions
from bot.store.live import PostgresLive
from bot.store.pg_connections import PgConnections, plain_dsn
from bot.testing.private_postgres import PrivatePostgres
from bot.testing.tcp_proxy import TcpProxy
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.telegram import TelegramChannel
from tests import telegram_updates as tg

WAIT = 20.0
"""Seconds a test waits for something that should happen within a few."""


def _pool(url: str, *, lock_timeout: float = 30.0, size: int = 4) -> PgConnections:
    return PgConnections(url, size=size, timeout=5.0, lock_timeout=lock_timeout)


@pytest.fixture
async def pools(fresh_postgres_url: str) -> AsyncIterator[list[PgConnections]]:
    opened = [_pool(fresh_postgres_url), _pool(fresh_postgres_url)]
    for pool in opened:
        await pool.open()
    yield opened
    for pool in opened:
        await pool.close()


async def _eventually(check: Any, what: str) -> None:
    for _ in range(int(WAIT / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


def test_lock_keys_are_stable_64_bit_and_distinct() -> None:
    assert lock_key("rest:alice") == lock_key("rest:alice")
    assert lock_key("rest:alice") != lock_key("rest:alicf")
    keys = {lock_key(f"webchat:{n}") for n in range(10_000)}
    assert len(keys) == 10_000
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("rest:alice") == 4008486377985698440  # the same in every run and worker


async def test_one_conversation_is_held_by_one_worker_at_a_time(
    pools: list[PgConnections],
) -> None:
    first, second = PostgresLocks(pools[0]), PostgresLocks(pools[1])
    order: list[str] = []
    entered = asyncio.Event()

    async def turn(locks: PostgresLocks, name: str, conversation: str) -> None:
        async with locks.hold(conversation):
            order.append(f"{name} in")
            entered.set()
            await asyncio.sleep(0.3)
            order.append(f"{name} out")

    slow = asyncio.create_task(turn(first, "a", "rest:alice"))
    await entered.wait()
    await asyncio.gather(turn(second, "b", "rest:alice"), turn(second, "c", "rest:bob"), slow)
    assert order.index("a out") < order.index("b in")  # b waited for a, in another worker
    assert order.index("c in") < order.index("a out")  # another conversation did not wait


async def test_a_hold_longer_than_the_lock_timeout_is_a_retryable_busy(
    fresh_postgres_url: str, pools: list[PgConnections]
) -> None:
    impatient = _pool(fresh_postgres_url, lock_timeout=0.2)
    await impatient.open()
    try:
        async with PostgresLocks(pools[0]).hold("rest:alice"):
            with pytest.raises(ConversationBusyError) as caught:
                async with PostgresLocks(impatient).hold("rest:alice"):
                    pass
        assert isinstance(caught.value, TransientError)
        async with PostgresLocks(impatient).hold("rest:alice"):  # free again afterwards
            pass
    finally:
        await impatient.close()


async def test_a_dead_workers_lock_goes_with_its_connection(
    fresh_postgres_url: str, pools: list[PgConnections]
) -> None:
    """The holder's session ends (as when its process is killed): the waiter gets the lock."""
    holding = asyncio.Event()
    released = asyncio.Event()

    async def doomed() -> None:
        async with PostgresLocks(pools[0]).hold("rest:alice"):
            holding.set()
            await released.wait()

    task = asyncio.create_task(doomed())
    await holding.wait()
    admin = await asyncpg.connect(plain_dsn(fresh_postgres_url))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        async with asyncio.timeout(WAIT), PostgresLocks(pools[1]).hold("rest:alice"):
            pass
    finally:
        released.set()
        await asyncio.gather(task, return_exceptions=True)
        await admin.close()


async def test_a_pooled_connection_the_server_closed_is_replaced(
    fresh_postgres_url: str, pools: list[PgConnections]
) -> None:
    locks = PostgresLocks(pools[0])
    async with locks.hold("rest:alice"):
        pass
    admin = await asyncpg.connect(plain_dsn(fresh_postgres_url))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'kefu-locks' AND datname = current_database()"
        )
    finally:
        await admin.close()
    async with locks.hold("rest:alice"):  # the idle connection died; a new one serves
        pass


async def test_one_leader_and_a_takeover_when_it_goes(fresh_postgres_url: str) -> None:
    dsn = plain_dsn(fresh_postgres_url)
    duties: list[str] = []

    def member(name: str) -> Leadership:
        async def start() -> None:
            duties.append(f"{name} starts")

        async def stop() -> None:
            duties.append(f"{name} stops")

        leadership = Leadership(dsn, retry=0.2, timeout=5.0)
        leadership.add_duty(start, stop)
        return leadership

    first, second = member("a"), member("b")
    await first.start()
    await _eventually(lambda: first.is_leader, "the first became the leader")
    await second.start()
    await asyncio.sleep(1.0)  # several of the second's attempts
    assert not second.is_leader
    await first.stop()
    await _eventually(lambda: second.is_leader, "the second took over")
    await second.stop()
    assert duties == ["a starts", "a stops", "b starts", "b stops"]


async def test_a_leader_cut_off_from_the_database_steps_down_and_another_takes_over(
    fresh_postgres_url: str,
) -> None:
    url = make_url(plain_dsn(fresh_postgres_url))
    proxy = TcpProxy([(url.host or "127.0.0.1", url.port or 5432)])
    await proxy.start()
    cut_off = Leadership(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        retry=0.2,
        timeout=2.0,
    )
    other = Leadership(plain_dsn(fresh_postgres_url), retry=0.2, timeout=2.0)
    try:
        await cut_off.start()
        await _eventually(lambda: cut_off.is_leader, "the first became the leader")
        await other.start()
        proxy.cut()
        await _eventually(lambda: other.is_leader, "the other took over")
        await _eventually(lambda: not cut_off.is_leader, "the cut-off one stepped down")
        proxy.restore()
        await asyncio.sleep(1.0)
        assert not cut_off.is_leader  # back, but as a follower: the lock is taken
    finally:
        await cut_off.stop()
        await other.stop()
        await proxy.close()


async def test_a_push_published_by_one_worker_reaches_the_others(
    pools: list[PgConnections],
) -> None:
    sender, receiver = PostgresLive(pools[0], retry=0.2), PostgresLive(pools[1], retry=0.2)
    got: list[tuple[str, dict[str, Any]]] = []
    receiver.subscribe(lambda topic, item: got.append((topic, item)))
    await receiver.start()
    try:
        await asyncio.wait_for(receiver.listening.wait(), WAIT)
        small = {"text": "hello", "from": "agent"}
        large = {"text": "长" * 20_000, "from": "agent"}  # 60 kB of UTF-8: sent in parts
        await sender.publish("webchat:web-1", small)
        await sender.publish("webchat:web-2", large)
        await _eventually(lambda: len(got) == 2, "both pushes arrived")
        assert got == [("webchat:web-1", small), ("webchat:web-2", large)]
    finally:
        await receiver.stop()


async def test_a_store_cut_off_from_the_database_answers_retryably_then_recovers(
    fresh_postgres_url: str,
) -> None:
    url = make_url(fresh_postgres_url)
    proxy = TcpProxy([(url.host or "127.0.0.1", url.port or 5432)])
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    store = await open_store(proxied, cache_size=0, pool=PoolOptions(size=2, timeout=2.0))
    message = UserMessage(channel="rest", conversation_id="rest:alice", sender_id="alice")
    try:
        state = ConversationState(conversation_id="rest:alice", channel="rest", sender_id="alice")
        await store.save(state, [message])
        proxy.cut()
        with pytest.raises(DatabaseUnavailableError):
            await store.load("rest:alice")
        with pytest.raises(DatabaseUnavailableError):
            await store.save(state, [message])
        proxy.restore()
        loaded = await store.load("rest:alice")  # reconnected by itself
        assert loaded is not None and loaded.version == 1
        await store.save(loaded, [message])
        assert [e.seq for e in await store.events("rest:alice")] == [1, 2]
    finally:
        await store.close()
        await proxy.close()


async def test_a_store_starting_while_the_database_is_away_waits_for_it(
    fresh_postgres_url: str,
) -> None:
    url = make_url(fresh_postgres_url)
    proxy = TcpProxy([(url.host or "127.0.0.1", url.port or 5432)])
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.cut()
    try:
        opening = asyncio.create_task(
            open_store(proxied, pool=PoolOptions(size=1, timeout=2.0, start_wait=WAIT))
        )
        await asyncio.sleep(1.0)
        assert not opening.done()  # still trying
        proxy.restore()
        store = await asyncio.wait_for(opening, WAIT)
        await store.close()
    finally:
        await proxy.close()


def test_pool_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {"KEFU_DB_POOL_SIZE": "3", "KEFU_DB_LOCK_POOL_SIZE": "6", "KEFU_DB_LOCK_TIMEOUT": "2.5"},
        env_file=None,
    )
    assert (settings.db_pool_size, settings.db_lock_pool_size) == (3, 6)
    assert settings.db_lock_timeout == 2.5
    for name, value in (("KEFU_DB_POOL_SIZE", "0"), ("KEFU_DB_TIMEOUT", "0")):
        with pytest.raises(Exception, match=name):
            Settings.from_env({name: value}, env_file=None)


async def test_telegram_long_polling_runs_on_the_leader_only_and_moves_with_it(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    """Two workers, each with a Telegram channel in polling mode, against one Bot API double:
    one polls; when its worker stops, the other takes over polling and gets the updates."""
    settings = Settings.from_env(
        {"KEFU_DATABASE_URL": fresh_postgres_url, "KEFU_LEADER_RETRY": "0.2"}, env_file=None
    )
    received: dict[int, list[str]] = {0: [], 1: []}
    store = await open_store(f"sqlite:///{tmp_path / 'telegram.db'}")
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
        channels: list[TelegramChannel] = []
        workers: list[Workers] = []
        for index in (0, 1):
            channel = TelegramChannel(
                token=tg.TOKEN,
                store=store,
                api_base_url=api.base_url,
                poll_timeout=1,
            )

            async def handle(message: UserMessage, index: int = index) -> list[BotMessage]:
                received[index].append(message.text)
                return []

            channel.attach(handle)
            worker = Workers(settings)
            worker.lead_polling([channel])
            channels.append(channel)
            workers.append(worker)
        try:
            for index in (0, 1):
                await channels[index].start()
                assert not channels[index].polling  # not before it leads
                await workers[index].start()
            await _eventually(lambda: any(w.leadership.is_leader for w in workers), "a leader")
            leader = 0 if workers[0].leadership.is_leader else 1
            follower = 1 - leader
            assert channels[leader].polling and not channels[follower].polling
            api.queue_update(tg.message(1, "first"))
            await _eventually(lambda: received[leader] == ["first"], "the leader got it")
            await workers[leader].close()
            assert not channels[leader].polling
            await _eventually(lambda: channels[follower].polling, "the other polls")
            api.queue_update(tg.message(2, "second"))
            await _eventually(lambda: received[follower] == ["second"], "the other got it")
            assert received[leader] == ["first"]
        finally:
            for index in (0, 1):
                await workers[index].close()
                await channels[index].stop()
            await store.close()


async def test_a_workers_cached_state_serves_only_once_its_lock_found_it_current(
    fresh_postgres_url: str, pools: list[PgConnections]
) -> None:
    """Each worker keeps the states it saved; under the conversation's lock a turn gets the
    state the last worker saved, whichever it was, and only then its own copy."""
    stores = [await open_store(fresh_postgres_url, shared=True) for _ in pools]
    first, second = (
        PostgresLocks(pool, states=store) for pool, store in zip(pools, stores, strict=True)
    )
    cid = "rest:alice"
    message = UserMessage(channel="rest", conversation_id=cid, sender_id="alice", text="n")

    async def count(store: SqlStore, of: str = cid) -> int | None:
        state = await store.load(of)
        return None if state is None else int(state.slots["count"])

    async def turn(locks: PostgresLocks, store: SqlStore, number: int) -> None:
        async with locks.hold(cid):
            state = await store.load(cid) or ConversationState(
                conversation_id=cid, channel="rest", sender_id="alice"
            )
            assert state.slots.get("count", 0) == number - 1, "a stale state"
            state.slots["count"] = number
            await store.save(state, [message])

    admin = await asyncpg.connect(plain_dsn(fresh_postgres_url))
    try:
        await turn(second, stores[1], 1)
        await turn(first, stores[0], 2)
        await turn(second, stores[1], 3)  # its own copy says 1: the lock found 2 stored
        await turn(first, stores[0], 4)
        # Under the lock, a copy of the stored version serves from memory: the row, changed
        # behind kefu's back without a new version, goes unread.
        await admin.execute(
            "UPDATE conversations SET state = jsonb_set(state::jsonb, '{slots,count}', '40')"
        )
        async with first.hold(cid):
            assert await count(stores[0]) == 4
        async with second.hold(cid):  # its copy is older (3): it reads the row
            assert await count(stores[1]) == 40
        assert await count(stores[0]) == 40  # outside the lock: what is stored
        async with first.hold("rest:bob"):  # none stored: known without another read
            assert await count(stores[0], "rest:bob") is None
    finally:
        await admin.close()
        for store in stores:
            await store.close()


async def test_a_server_out_of_connection_slots_answers_retryably(
    private_postgres: PrivatePostgres,
) -> None:
    """ "Too many clients" is a busy server, not a broken turn: retryable (REST answers 503)."""
    admin = await asyncpg.connect(private_postgres.url)
    await admin.execute("ALTER SYSTEM SET max_connections = 20")
    await admin.close()
    await private_postgres.stop()
    await private_postgres.start()
    store = await open_store(private_postgres.url, pool=PoolOptions(size=1, max_overflow=1))
    pool = _pool(private_postgres.url)
    await pool.open()
    fillers: list[asyncpg.Connection] = []
    try:
        with pytest.raises(asyncpg.exceptions.TooManyConnectionsError):
            while len(fillers) < 25:
                fillers.append(await asyncpg.connect(private_postgres.url))
        with pytest.raises(DatabaseUnavailableError):
            async with PostgresLocks(pool).hold("rest:alice"):
                pass
        with pytest.raises(DatabaseUnavailableError):  # its one connection busy, it needs two
            await asyncio.gather(store.load("rest:alice"), store.load("rest:bob"))
        await fillers.pop().close()
        async with PostgresLocks(pool).hold("rest:alice"):  # a slot free again
            pass
    finally:
        for filler in fillers:
            await filler.close()
        await pool.close()
        await store.close()
