"""Scheduled work end to end: kefu built as ``kefu run`` builds it (agent, Telegram channel
against the local Bot API double, scheduler, ``/api/notify``), on a SQLite file or PostgreSQL,
with the clock moved by the test (time-machine) and due jobs run by ``Scheduler.run_due``.

Customer messages enter through ``TurnRunner.process`` as the Telegram channel hands them over;
what the bot says is read where the customer would see it: at the Telegram double.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine

from bot.app import App, build, notify_api, scheduled_work
from bot.events import AllSlotsReset, FlowCancelled, SessionStarted, UserMessage
from bot.scheduling.work import ScheduledWork
from bot.server import create_app, running
from bot.settings import Settings
from bot.testing.telegram_double import TelegramBotApiDouble
from tests import telegram_updates as tg

PROJECT = Path(__file__).resolve().parent / "projects" / "scheduled"
API_TOKEN = "shop-backend-s3cret"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T0 = START.timestamp()
_MESSAGE_IDS = itertools.count(1)
"""Platform message ids (a random hex id sometimes holds a run of digits that reads as a card
number, which the edge refuses)."""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test project, shared by the module so its classifier trains once."""
    root = tmp_path_factory.mktemp("scheduled") / "project"
    shutil.copytree(PROJECT, root)
    return root


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramBotApiDouble]:
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
        yield api


@dataclass
class Kefu:
    """One running kefu process."""

    agent: App
    work: ScheduledWork
    api: TelegramBotApiDouble
    http: httpx.AsyncClient

    async def say(self, chat: int, text: str, *, language: str = "en") -> None:
        await self.agent.turns.process(
            UserMessage(
                channel="telegram",
                conversation_id=f"telegram:{chat}",
                sender_id=str(chat),
                text=text,
                language=language,
                message_id=f"msg-{next(_MESSAGE_IDS)}",
            )
        )

    def sent_to(self, chat: int) -> list[str]:
        return [m.get("text", "") for m in self.api.sent_messages if m["chat"]["id"] == chat]

    async def notify(self, body: Any, *, token: str | None = API_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.http.post("/api/notify", json=body, headers=headers)

    async def run_due(self) -> int:
        return await self.work.scheduler.run_due()


@asynccontextmanager
async def kefu(
    project: Path, database: str, api: TelegramBotApiDouble, **settings: Any
) -> AsyncIterator[Kefu]:
    """kefu as ``kefu run`` wires it (without the outbox retry loop: tests drive time)."""
    config = Settings(
        database_url=database,
        telegram_bot_token=tg.TOKEN,
        telegram_webhook_url="https://shop.example",
        telegram_webhook_secret="s3cret",
        telegram_api_base_url=api.base_url,
        **{"api_token": API_TOKEN, **settings},
    )
    agent, channels = await build(project, config)
    work = scheduled_work(agent)
    app = create_app(
        channels=channels,
        routes=notify_api(agent, work).routes(),
        on_startup=[work.start],
        on_shutdown=[work.shutdown, agent.close],
    )
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Kefu(agent, work, api, http)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


# --- proactive notices ----------------------------------------------------------------------


async def test_a_notice_goes_now_in_the_customers_language(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as k:
        await k.say(501, "你好", language="zh")
        shipped = {"conversation_id": "telegram:501", "response": "utter_parcel_shipped"}
        answer = await k.notify(shipped)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "sent"
        assert k.sent_to(501)[-1] == "好消息：您的包裹已发出。"
        answer = await k.notify({"conversation_id": "telegram:501", "text": "Order KF-7 left."})
        assert answer.status_code == 202
        assert k.sent_to(501)[-1] == "Order KF-7 left."
        # a time in the past sends now
        past = await k.notify(
            {"conversation_id": "telegram:501", "text": "Late news.", "at": iso(T0 - 3600)}
        )
        assert past.json()["status"] == "sent"
        assert k.sent_to(501)[-1] == "Late news."


async def test_a_notice_at_a_time_fires_then_not_early_not_twice_and_survives_a_restart(
    project: Path, database: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, database, telegram) as k:
        await k.say(502, "hello there")
        before = len(k.sent_to(502))
        notice = {"conversation_id": "telegram:502", "text": "Your parcel arrives today."}
        answer = await k.notify({**notice, "at": iso(T0 + 600)})
        assert answer.status_code == 202
        assert answer.json()["status"] == "scheduled"
        assert answer.json()["at"] == iso(T0 + 600)
        clock.shift(599)
        await k.run_due()
        assert len(k.sent_to(502)) == before
    # kefu restarts; the notice is still due
    async with kefu(project, database, telegram) as k:
        await k.run_due()
        assert len(k.sent_to(502)) == before
        clock.shift(1)
        assert await k.run_due() == 1
        assert k.sent_to(502)[before:] == ["Your parcel arrives today."]
        clock.shift(86400)
        await k.run_due()
    async with kefu(project, database, telegram) as k:
        await k.run_due()
        assert k.sent_to(502)[before:] == ["Your parcel arrives today."]


async def test_two_processes_send_a_notice_once(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as first:
        await first.say(503, "hi")
        before = len(first.sent_to(503))
        await first.notify({"conversation_id": "telegram:503", "text": "Once.", "at": iso(T0 + 60)})
        async with kefu(project, sqlite_db, telegram) as second:  # loads the stored notice too
            clock.shift(60)
            await first.run_due()
            await second.run_due()
            assert first.sent_to(503)[before:] == ["Once."]


async def test_notify_refuses_bad_calls(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as k:
        await k.say(504, "hi")
        body = {"conversation_id": "telegram:504", "text": "x"}
        assert (await k.notify(body, token=None)).status_code == 401
        wrong = await k.notify(body, token="guess")
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        unknown = await k.notify({"conversation_id": "telegram:999", "text": "x"})
        assert unknown.status_code == 404
        for bad, field in [
            ({"text": "x"}, "conversation_id"),
            ({"conversation_id": 5, "text": "x"}, "conversation_id"),
            ({"conversation_id": "telegram:504"}, "text"),
            ({"conversation_id": "telegram:504", "text": "x", "response": "utter_greet"}, "text"),
            ({"conversation_id": "telegram:504", "text": ""}, "text"),
            ({"conversation_id": "telegram:504", "response": "utter_nope"}, "response"),
            ({"conversation_id": "telegram:504", "text": "x", "at": "tomorrow"}, "at"),
            ({"conversation_id": "telegram:504", "text": "x", "at": "2026-03-02T10:00"}, "at"),
            ({"conversation_id": "telegram:504", "text": "x", "colour": "red"}, "colour"),
            ([1, 2], "body"),
        ]:
            answer = await k.notify(bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["field"] == field, bad
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        for content in (b"{nope", b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe"):
            raw = await k.http.post("/api/notify", content=content, headers=auth)
            assert raw.status_code == 400, raw.text
        assert len(k.sent_to(504)) == 1  # the greeting only: nothing bad went out
        rest = {"channel": "rest", "conversation_id": "rest:bob", "sender_id": "bob"}
        await k.agent.turns.process(UserMessage(text="hi", **rest))
        inline = await k.notify({"conversation_id": "rest:bob", "text": "x"})
        assert inline.status_code == 409
        assert "rest channel cannot" in inline.json()["error"]


async def test_notify_to_a_customer_who_blocked_the_bot_is_a_conflict(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as k:
        await k.say(505, "hi")
        telegram.block_chat(505)
        notice = {"conversation_id": "telegram:505", "text": "Sale today!"}
        await k.notify(notice)  # Telegram refuses it: the chat is noted as unreachable
        answer = await k.notify(notice)
        assert answer.status_code == 409
        assert "blocked" in answer.json()["error"]


async def test_the_api_is_off_without_a_token(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram, api_token=None) as k:
        await k.say(506, "hi")
        answer = await k.notify({"conversation_id": "telegram:506", "text": "x"})
        assert answer.status_code == 403
        assert "KEFU_API_TOKEN" in answer.json()["error"]


# --- reminders from custom actions ----------------------------------------------------------


async def test_a_reminder_set_by_an_action_fires_after_a_restart(
    project: Path, database: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, database, telegram) as k:
        await k.say(510, "/remind_me")
        assert "I will remind you in ten minutes." in k.sent_to(510)
        clock.shift(599)
        await k.run_due()
        assert "Your basket is still waiting for you." not in k.sent_to(510)
    async with kefu(project, database, telegram) as k:
        clock.shift(1)
        assert await k.run_due() == 1
        assert "Your basket is still waiting for you." in k.sent_to(510)
        stored = [s.event for s in await k.agent.store.events("telegram:510")]
        [fired] = [e for e in stored if isinstance(e, UserMessage) and "reminder" in e.metadata]
        assert fired.parse_data["intent"]["name"] == "reminder_due"
        assert [(e["entity"], e["value"]) for e in fired.parse_data["entities"]] == [
            ("order_id", "KF-7")
        ]
        clock.shift(3600)
        await k.run_due()
        assert k.sent_to(510).count("Your basket is still waiting for you.") == 1


async def test_a_cancelled_reminder_does_not_fire(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as k:
        await k.say(511, "/remind_me")
        await k.say(511, "/forget_reminder")
        assert "Reminder cancelled." in k.sent_to(511)
        assert await k.work.scheduler.jobs(kind="reminder") == []
        clock.shift(3600)
        await k.run_due()
        assert "Your basket is still waiting for you." not in k.sent_to(511)


async def test_a_reminder_killed_by_a_customer_message(
    project: Path, sqlite_db: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, sqlite_db, telegram) as k:
        await k.say(512, "/remind_me_softly")
        clock.shift(60)
        await k.say(512, "hi")
        clock.shift(600)
        await k.run_due()
        assert "Your basket is still waiting for you." not in k.sent_to(512)
        assert await k.work.scheduler.jobs(kind="reminder") == []


# --- session expiry ---------------------------------------------------------------------------


async def test_an_idle_session_ends_on_time_and_the_next_message_starts_one(
    project: Path, database: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    cid = "telegram:520"
    async with kefu(project, database, telegram) as k:
        await k.say(520, "/track_order")
        assert k.sent_to(520)[-1] == "What is your order number?"
        clock.shift(20 * 60)
        await k.say(520, "hi")  # still the same session: the clock restarts from here
        clock.shift(29 * 60)
        await k.run_due()
        state = await k.agent.store.load(cid)
        assert state is not None and state.session_started_at and state.stack
    async with kefu(project, database, telegram) as k:  # a restart changes nothing
        clock.shift(60)
        await k.run_due()
        state = await k.agent.store.load(cid)
        assert state is not None
        assert state.session_started_at == 0 and state.stack == []
        ended = [s.event for s in await k.agent.store.events(cid)][-2:]
        assert [type(e) for e in ended] == [FlowCancelled, AllSlotsReset]
        clock.shift(60)
        await k.say(520, "hi")
        events = [s.event for s in await k.agent.store.events(cid, after=state.event_count)]
        assert any(isinstance(e, SessionStarted) for e in events)
        assert await k.work.scheduler.jobs(kind="session_expiry") != []


# --- retention --------------------------------------------------------------------------------


async def test_retention_deletes_old_conversations_daily_and_nothing_younger(
    project: Path, database: str, telegram: TelegramBotApiDouble, clock: time_machine.Coordinates
) -> None:
    async with kefu(project, database, telegram, retention_days=30) as k:
        await k.say(530, "hi")  # last active at T0
        await k.work.notices.notify("telegram:530", text="later", at=T0 + 90 * 86400)
        clock.shift(10 * 86400)
        await k.say(531, "hi")  # last active at T0 + 10 days
        clock.move_to(START + timedelta(days=29, hours=23))
        await k.run_due()  # daily runs so far: nothing is 30 days old
        assert await k.agent.store.load("telegram:530") is not None
    clock.move_to(START + timedelta(days=31))
    async with kefu(project, database, telegram, retention_days=30) as k:
        await k.run_due()  # the 03:00 run missed while kefu was down runs now
        assert await k.agent.store.load("telegram:530") is None
        assert await k.agent.store.events("telegram:530") == []
        assert await k.work.scheduler.jobs(conversation_id="telegram:530") == []
        assert await k.agent.store.load("telegram:531") is not None
        [daily] = await k.work.scheduler.jobs(kind="retention")
        assert daily.run_at == (START + timedelta(days=31)).replace(hour=3).timestamp() + 86400
