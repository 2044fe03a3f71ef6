"""The action journal (``bot.journal``): a custom action runs once per customer message, also
when the turn that ran it died before its save and the client sends the message again.

In-process, a save that fails once stands in for the crash; then a real ``kefu run`` worker is
killed with SIGKILL while the second action of the turn holds (the first one returned and its
record was committed), and the client's retry goes to a second worker, on SQLite (standing in
for the killed one started again) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from bot.app import App
from bot.errors import ConcurrentUpdateError, DatabaseUnavailableError
from bot.events import BotMessage, UserMessage
from bot.inbound import message_key
from bot.project import load_project
from bot.settings import Settings
from bot.store import SqlStore, open_store
from bot.testing.cluster import WorkerCluster

PROJECT = Path(__file__).resolve().parent / "projects" / "journal"
WAIT = 30.0
_Store = TypeVar("_Store", bound=SqlStore)


@asynccontextmanager
async def _journal_app(
    store_class: type[_Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[App, _Store, Path]]:
    """The journal project on a SQLite file through ``store_class``; its action log."""
    log = tmp_path / "actions.log"
    monkeypatch.setenv("KEFU_TEST_ACTION_LOG", str(log))
    url = f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
    store = store_class(url)
    await store.initialize()
    app = await App.create(load_project(PROJECT), settings=Settings(database_url=url), store=store)
    try:
        yield app, store, log
    finally:
        await app.close()


def _runs(log: Path) -> list[tuple[str, str, str, str]]:
    """Each recorded action run: (action, conversation, message text, idempotency key)."""
    if not log.exists():
        return []
    return [tuple(line.split("\t")) for line in log.read_text().splitlines()]  # type: ignore[misc]


class _DiesBeforeItsFirstSave(SqlStore):
    """A store whose first turn save fails as if the worker had died just before it."""

    died = False

    async def save(self, *args: Any, **kwargs: Any) -> list[int]:
        if not self.died:
            self.died = True
            raise DatabaseUnavailableError("the worker died before the turn was saved")
        return await super().save(*args, **kwargs)


async def test_a_turn_run_again_replays_its_recorded_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = UserMessage(
        channel="rest", conversation_id="rest:ann", sender_id="ann", text="pay 1", message_id="m1"
    )
    key = message_key(message)
    assert key is not None
    async with _journal_app(_DiesBeforeItsFirstSave, tmp_path, monkeypatch) as (app, store, log):
        with pytest.raises(DatabaseUnavailableError):
            await app.turns.process(message)
        assert [run[0] for run in _runs(log)] == ["action_charge", "action_receipt"]
        assert len(await store.recorded_actions(*key) or ()) == 2

        result = await app.turns.process(message)  # the client sends it again
        assert [m.text for m in result.messages] == ["charged pay 1", "receipt pay 1"]
        assert len(_runs(log)) == 2  # both replayed from the journal, neither run again
        state = await store.load("rest:ann")
        assert state is not None and state.slots["charged"] == "pay 1"
        assert await store.recorded_actions(*key) is None  # saved

        again = await app.turns.process(message)  # after the save: the stored answer
        assert again.duplicate and [m.text for m in again.messages] == [
            "charged pay 1",
            "receipt pay 1",
        ]
        other = await app.turns.process(
            UserMessage(channel="rest", conversation_id="rest:ann", sender_id="ann", text="pay 2")
        )
        assert [m.text for m in other.messages] == ["charged pay 2", "receipt pay 2"]
        keys = [run[3] for run in _runs(log)]
        assert keys[:2] != ["None", "None"] and keys[0] != keys[1]
        assert keys[2:] == ["None", "None"]  # no message id: no journal, no key


class _UnreachableForOneRecord(SqlStore):
    """A store whose first journal write finds the database unreachable."""

    failed = False

    async def record_action(self, *args: Any, **kwargs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise DatabaseUnavailableError("database unavailable: ConnectionResetError")
        await super().record_action(*args, **kwargs)


async def test_a_record_the_database_refused_for_a_moment_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = UserMessage(
        channel="rest", conversation_id="rest:bo", sender_id="bo", text="pay 3", message_id="m3"
    )
    async with _journal_app(_UnreachableForOneRecord, tmp_path, monkeypatch) as (app, store, log):
        result = await app.turns.process(message)
    assert store.failed and [m.text for m in result.messages] == ["charged pay 3", "receipt pay 3"]
    assert [run[0] for run in _runs(log)] == ["action_charge", "action_receipt"]


class _LosesItsFirstRace(SqlStore):
    """A store whose first turn save finds that another process saved the conversation first."""

    lost = False

    async def save(self, *args: Any, **kwargs: Any) -> list[int]:
        if not self.lost:
            self.lost = True
            raise ConcurrentUpdateError("another process saved this conversation first")
        return await super().save(*args, **kwargs)


async def test_a_turn_run_again_on_the_fresh_state_replays_its_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = UserMessage(
        channel="rest", conversation_id="rest:cy", sender_id="cy", text="pay 4", message_id="m4"
    )
    async with _journal_app(_LosesItsFirstRace, tmp_path, monkeypatch) as (app, store, log):
        result = await app.turns.process(message)
    assert store.lost and [m.text for m in result.messages] == ["charged pay 4", "receipt pay 4"]
    assert [run[0] for run in _runs(log)] == ["action_charge", "action_receipt"]


async def _post(url: str, body: dict[str, str]) -> list[str | None]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http,
        http.post(f"{url}/webhooks/rest/webhook", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return [reply.get("text") for reply in await response.json()]


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.02)


async def test_a_worker_killed_between_two_actions_runs_the_first_once_sqlite(
    tmp_path: Path,
) -> None:
    # The second process stands in for the killed one started again (SQLite serves one
    # worker at a time; it starts up front so that the test waits for one start-up only).
    await _kill_between_two_actions(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}", tmp_path)


async def test_a_worker_killed_between_two_actions_runs_the_first_once_postgresql(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    await _kill_between_two_actions(fresh_postgres_url, tmp_path)


async def _kill_between_two_actions(url: str, tmp_path: Path) -> None:
    """Two workers; worker 0 is killed inside ``action_receipt`` (``action_charge`` returned),
    and the client's retry goes to worker 1."""
    log, hold = tmp_path / "actions.log", tmp_path / "hold"
    cluster = WorkerCluster(
        PROJECT,
        url,
        count=2,
        logs=tmp_path,
        env={
            "KEFU_TEST_ACTION_LOG": str(log),
            "KEFU_TEST_HOLD": str(hold),
        },
    )
    body = {"sender": "ann", "message": "pay 1", "message_id": "m1"}
    key = message_key(
        UserMessage(
            channel="rest", conversation_id="rest:ann", sender_id="ann", text="", message_id="m1"
        )
    )
    assert key is not None
    store = await open_store(url)
    try:
        async with aiohttp.ClientSession() as http:
            await cluster.start(http)
        hold.touch()
        first = asyncio.create_task(_post(cluster.worker_url(0), body))
        await _until(lambda: len(_runs(log)) == 2, "action_receipt started")
        for _ in range(int(WAIT / 0.02)):  # action_charge's record committed (milliseconds)
            if await store.recorded_actions(*key):
                break
            await asyncio.sleep(0.02)
        cluster.kill(0)  # inside action_receipt: the turn was not saved
        with pytest.raises(aiohttp.ClientError):
            await first
        hold.unlink()
        assert await _post(cluster.worker_url(1), body) == [
            "charged pay 1",
            "receipt pay 1",
        ]
        assert await _post(cluster.worker_url(1), body) == [  # saved: answered again
            "charged pay 1",
            "receipt pay 1",
        ]
        runs = _runs(log)
        said = [
            e.event.text
            for e in await store.events("rest:ann")
            if isinstance(e.event, UserMessage | BotMessage)
        ]
        assert said == ["pay 1", "charged pay 1", "receipt pay 1"]
        assert await store.recorded_actions(*key) is None
    finally:
        await cluster.stop()
        await store.close()
    assert Counter(run[0] for run in runs) == {"action_charge": 1, "action_receipt": 2}
    # action_receipt was cut off inside its call (the window the journal cannot close): run
    # again, with the same idempotency key, by which an action can tell.
    receipts = [run for run in runs if run[0] == "action_receipt"]
    assert receipts[0] == receipts[1] and receipts[0][3] != "None"
