"""Handoff waiting times and the satisfaction survey, end to end on a clock the test moves.

kefu runs as ``kefu run`` runs it (server, Telegram channel against the Telegram double, the
Slack desk against the Slack double through slack-sdk, the scheduler with its jobs in the
conversation database); time-machine freezes the clock and the test fires due jobs with
``Scheduler.run_due``. What the customer hears is read at the Telegram double, what the
agents see at the Slack double.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from bot.desk import Status
from bot.errors import DatabaseUnavailableError
from bot.events import CsatAnswered, CsatCommented, HandoffResolved
from bot.hours import BusinessHours
from bot.reporting import Query, Reporting
from bot.scheduling import handoffs, surveys
from bot.testing.slack_double import SlackApiDouble
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.slack_board import CLAIM, REOPEN, RESOLVE, RESOLVE_NO_SURVEY
from channels.telegram import SECRET_HEADER, WEBHOOK_PATH
from tests import telegram_updates as tg
from tests.desk_env import (
    AGENT,
    DESK,
    TELEGRAM_SECRET,
    DeskShop,
    accepted,
    desk_doubles,
    desk_shop,
    until,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
T0 = START.timestamp()
SLA, MAX_WAIT, CSAT_DELAY = 300.0, 1800.0, 60.0
CHAT = 5550177
CONVERSATION = f"telegram:{CHAT}"
OTHER_CHAT = 5550178

DELAYED = (
    "Sorry, it is taking longer than usual for a colleague to answer. You are still in the "
    "queue, and they will reply here."
)
DELAYED_ZH = "抱歉，客服接入比平时慢一些。您仍在排队中，客服会在这里回复您。"
MAX_WAIT_EN = (
    "Sorry, everyone on our team is still busy. You can leave a message and they will answer "
    "you here, or go back to the shop assistant."
)
MAX_WAIT_ZH = "抱歉，客服同事仍在忙碌。您可以留言，客服会在这里回复您；也可以返回智能助手。"
RATE = "How would you rate the help you got from our team? (1 = poor, 5 = excellent)"
RATE_ZH = "您对刚才人工客服的服务打几分？（1 = 很差，5 = 很好）"


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
async def doubles() -> AsyncIterator[tuple[SlackApiDouble, TelegramBotApiDouble]]:
    """Slack and Telegram doubles that outlive a restart of kefu."""
    async with desk_doubles() as running:
        yield running


@asynccontextmanager
async def shop(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    **settings: Any,
) -> AsyncIterator[DeskShop]:
    async with desk_shop(
        tmp_path,
        scheduled=True,
        doubles=doubles,
        handoff_sla=SLA,
        handoff_max_wait=MAX_WAIT,
        csat_delay=CSAT_DELAY,
        **settings,
    ) as s:
        yield s


async def run_due(s: DeskShop) -> int:
    assert s.work is not None
    return await s.work.scheduler.run_due()


async def jobs(s: DeskShop, kind: str) -> list[str]:
    assert s.work is not None
    return [job.id for job in await s.work.scheduler.jobs(kind=kind)]


async def jobs_become(s: DeskShop, kind: str, expected: list[str]) -> None:
    """Wait until the stored jobs of ``kind`` are ``expected`` (a Slack action's work ends
    after Slack was answered)."""

    async def check() -> bool:
        return await jobs(s, kind) == expected

    await until(check)


async def hand_off(s: DeskShop, *, zh: bool = False, count: int = 1, chat: int = CHAT) -> str:
    """The customer greets the bot and asks for a person; the ticket's ts."""
    before = len(s.tg_sent(chat))
    await s.tg_send(chat, "你好" if zh else "hello")
    await s.tg_replies(chat, before + 1)
    await s.tg_send(chat, "人工" if zh else "human")
    await s.tg_replies(chat, before + 2)
    return str((await s.ticket(count))["ts"])


async def press(s: DeskShop, title: str) -> None:
    """The customer presses the button titled ``title`` on the bot's latest keyboard."""
    shown = next(
        m
        for m in reversed(s.telegram.sent_messages)
        if m["chat"]["id"] == CHAT and m.get("reply_markup")
    )
    buttons = [b for row in shown["reply_markup"]["inline_keyboard"] for b in row]
    titles = [b["text"] for b in buttons]
    assert title in titles, titles
    data = next(b["callback_data"] for b in buttons if b["text"] == title)
    update = tg.callback(next(s.update_ids), data, shown)
    update["callback_query"]["from"] = {**tg.CUSTOMER, "id": CHAT, "first_name": "Alice"}
    response = await s.http.post(
        WEBHOOK_PATH, json=update, headers={SECRET_HEADER: TELEGRAM_SECRET}
    )
    assert response.status_code == 200


def keyboard(s: DeskShop) -> list[str]:
    """The titles of the buttons under the customer's latest message."""
    last = [m for m in s.telegram.sent_messages if m["chat"]["id"] == CHAT][-1]
    rows = (last.get("reply_markup") or {}).get("inline_keyboard") or []
    return [b["text"] for row in rows for b in row]


def in_thread(s: DeskShop, ts: str) -> list[dict[str, Any]]:
    return s.slack.thread(DESK, ts)


async def thread_line(s: DeskShop, ts: str, start: str) -> dict[str, Any]:
    """Wait for the thread's message starting with ``start``."""

    def found() -> list[dict[str, Any]]:
        return [m for m in in_thread(s, ts) if str(m.get("text", "")).startswith(start)]

    await until(found)
    return found()[0]


def lines(s: DeskShop, ts: str, start: str) -> int:
    return sum(str(m.get("text", "")).startswith(start) for m in in_thread(s, ts))


# --- waiting times ---------------------------------------------------------------------------


async def test_an_unclaimed_handoff_is_raised_again_then_the_customer_may_leave_a_message(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    database: str,
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles, database_url=database) as s:
        ts = await hand_off(s)
        assert await jobs(s, handoffs.SLA) == [f"handoff_sla:{CONVERSATION}:1"]
        clock.shift(SLA - 1)
        await run_due(s)
        sent = len(s.tg_sent(CHAT))
    # kefu restarts before the SLA is up: the jobs are still there, and not early.
    async with shop(tmp_path, doubles, database_url=database) as s:
        await run_due(s)
        assert len(s.tg_sent(CHAT)) == sent
        assert lines(s, ts, "<!here>") == 0
        clock.shift(1)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == DELAYED
        raised = await thread_line(s, ts, "<!here>")
        assert (
            raised["text"]
            == "<!here> Handoff #1 has waited 5 min for an agent. Can someone claim it?"
        )
        assert raised["reply_broadcast"]  # shown in the channel, not only in the thread
        # Not twice.
        clock.shift(60)
        await run_due(s)
        assert s.tg_sent(CHAT).count(DELAYED) == 1

        # Past the longest wait: leave a message or go back to the bot.
        clock.shift(MAX_WAIT - SLA - 60)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == MAX_WAIT_EN
        assert keyboard(s) == ["Leave a message", "Back to the assistant"]
        await thread_line(s, ts, "The customer has waited 30 min")
        await press(s, "Leave a message")
        replies = await s.tg_replies(CHAT, sent + 3)
        assert replies[-1] == "Please write your message for our team."
        await thread_line(s, ts, "The customer chose to leave a message")
        await s.tg_send(CHAT, "Please call me back about order KF-1001, it never arrived")
        replies = await s.tg_replies(CHAT, sent + 4)
        assert replies[-1].startswith("Thank you, your message is with our team")
        left = await thread_line(s, ts, "*Alice Smith:* (left a message)")
        assert "KF-1001" in left["text"]
        await until(lambda: "the customer left a message" in s.ticket_text(ts))
        assert (await s.ticket_record(CONVERSATION)).with_bot
        assert await jobs(s, handoffs.MAX_WAIT) == []

        # Meanwhile the bot answers the customer.
        await s.tg_send(CHAT, "hello")
        await s.tg_replies(CHAT, sent + 5)

        # Dana claims: the conversation is hers again, the customer's words go to the thread.
        await s.press(ts, CLAIM)
        replies = await s.tg_replies(CHAT, sent + 6)
        assert "Dana from our team" in replies[-1]
        await jobs_become(s, handoffs.IDLE, [f"handoff_idle:{CONVERSATION}:1"])
        assert await jobs(s, handoffs.SLA) == []
        await s.tg_send(CHAT, "thanks for getting back to me")
        await thread_line(s, ts, "*Alice Smith:* thanks for getting back to me")
        assert len(s.tg_sent(CHAT)) == sent + 6
        # Once an agent has it, "back to the bot" is only words for the thread.
        await s.tg_send(CHAT, "/handoff_back_to_bot")
        await thread_line(s, ts, "*Alice Smith:* /handoff_back_to_bot")
        assert (await s.ticket_record(CONVERSATION)).status is Status.ACTIVE
        assert len(s.tg_sent(CHAT)) == sent + 6

        # Neither side writes: Dana is reminded, once per quiet spell.
        clock.shift(SLA - 1)
        await run_due(s)
        assert lines(s, ts, f"<@{AGENT}>") == 0
        clock.shift(1)
        await run_due(s)
        reminder = await thread_line(s, ts, f"<@{AGENT}>")
        assert "Neither you nor the customer wrote for 5 min" in reminder["text"]
        clock.shift(SLA)
        await run_due(s)
        assert lines(s, ts, f"<@{AGENT}>") == 1
        # She writes; a new quiet spell reminds her again.
        await s.reply(ts, "I have asked the courier, I will write again today")
        await s.tg_replies(CHAT, sent + 7)
        clock.shift(SLA)
        await run_due(s)
        await until(lambda: lines(s, ts, f"<@{AGENT}>") == 2)

        # Resolving cancels what is left.
        await s.press(ts, RESOLVE_NO_SURVEY)
        await until(lambda: "without a survey" in s.ticket_text(ts))
        for kind in (*handoffs.KINDS, surveys.KIND):
            await jobs_become(s, kind, [])


async def test_a_chinese_customer_goes_back_to_the_bot_after_the_longest_wait(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles) as s:
        ts = await hand_off(s, zh=True)
        clock.shift(SLA)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == DELAYED_ZH
        clock.shift(MAX_WAIT - SLA)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == MAX_WAIT_ZH
        assert keyboard(s) == ["留言", "返回智能助手"]
        sent = len(s.tg_sent(CHAT))
        await press(s, "返回智能助手")
        replies = await s.tg_replies(CHAT, sent + 1)
        assert replies[-1] == "好的，接下来由智能助手继续为您服务。请问有什么可以帮您？"
        await thread_line(s, ts, "The customer stopped waiting and went back to the bot.")
        await until(lambda: "the customer went back to the bot" in s.ticket_text(ts))
        record = await s.ticket_record(CONVERSATION)
        assert record.status is Status.RESOLVED and record.withdrawn
        for kind in (*handoffs.KINDS, surveys.KIND):
            assert await jobs(s, kind) == []
        # The handoff's end is in the conversation's log (for the figures), without an agent.
        await run_due(s)
        ended = [e for e in await s.events(CONVERSATION) if isinstance(e, HandoffResolved)]
        assert [e.agent for e in ended] == [None]
        # The bot answers again; no survey follows a handoff no agent took.
        await s.tg_send(CHAT, "你好")
        await s.tg_replies(CHAT, sent + 2)
        clock.shift(CSAT_DELAY * 10)
        await run_due(s)
        assert RATE_ZH not in s.tg_sent(CHAT)


async def test_outside_business_hours_the_customer_hears_when_staff_are_back_and_leaves_a_message(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    hours = BusinessHours.parse("mon-fri 10:00-18:00", timezone="UTC")
    async with shop(tmp_path, doubles, business_hours=hours) as s:
        ts = await hand_off(s)  # 09:00: an hour before the team starts
        assert s.tg_sent(CHAT)[-1].startswith(
            "Our team is away right now and back at 2026-03-02 10:00 (UTC)."
        )
        assert keyboard(s) == ["Leave a message", "Back to the assistant"]
        sent = len(s.tg_sent(CHAT))
        await press(s, "Leave a message")
        replies = await s.tg_replies(CHAT, sent + 1)
        assert replies[-1] == "Please write your message for our team."
        await s.tg_send(CHAT, "My parcel KF-1002 arrived broken")
        replies = await s.tg_replies(CHAT, sent + 2)
        assert replies[-1].startswith("Thank you, your message is with our team")
        await thread_line(s, ts, "*Alice Smith:* (left a message) My parcel KF-1002")
        # Waiting counts from the opening: nothing is raised while the team is away.
        clock.shift(SLA)
        await run_due(s)
        assert lines(s, ts, "<!here>") == 0
        clock.move_to(datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
        await run_due(s)
        await thread_line(s, ts, "<!here> Handoff #1 has waited 65 min")
        # The customer, talking to the bot meanwhile, is not told it takes long.
        assert DELAYED not in s.tg_sent(CHAT)


async def test_a_message_left_for_the_team_reaches_the_thread_once_when_its_turn_runs_again(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hours = BusinessHours.parse("mon-fri 10:00-18:00", timezone="UTC")
    async with shop(tmp_path, doubles, business_hours=hours) as s:
        ts = await hand_off(s)
        sent = len(s.tg_sent(CHAT))
        await press(s, "Leave a message")
        assert (await s.tg_replies(CHAT, sent + 1))[-1] == "Please write your message for our team."
        store = s.agent.turns.store
        real = store.save
        failures: list[str] = []

        async def fails_once(*args: Any, **kwargs: Any) -> Any:
            if not failures:  # the turn handed the message on, then its save failed
                failures.append("save")
                raise DatabaseUnavailableError("the database went away")
            return await real(*args, **kwargs)

        monkeypatch.setattr(store, "save", fails_once)
        left = s.tg_update(CHAT, "Please call me back about order KF-1003")
        assert await accepted(lambda: s.tg_post(left)) == 1  # Telegram sends it again
        replies = await s.tg_replies(CHAT, sent + 2)
        assert replies[-1].startswith("Thank you, your message is with our team")

        async def posted() -> bool:
            record = await s.ticket_record(CONVERSATION)
            return record.outbox == [] and lines(s, ts, "*Alice Smith:* (left a message)") > 0

        await until(posted)
        assert lines(s, ts, "*Alice Smith:* (left a message)") == 1
        assert len(s.tg_sent(CHAT)) == sent + 2


async def test_a_claim_drops_the_message_the_customer_was_asked_to_leave(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    hours = BusinessHours.parse("mon-fri 10:00-18:00", timezone="UTC")
    async with shop(tmp_path, doubles, business_hours=hours) as s:
        await s.tg_send(CHAT, "where is my order")  # a task the handoff interrupts
        asked = (await s.tg_replies(CHAT, 1))[-1]
        await s.tg_send(CHAT, "human")
        await s.tg_replies(CHAT, 2)
        ts = str((await s.ticket())["ts"])
        await press(s, "Leave a message")
        assert (await s.tg_replies(CHAT, 3))[-1] == "Please write your message for our team."
        await s.press(ts, CLAIM)  # before the customer wrote it: she talks to Dana now
        assert "Dana from our team" in (await s.tg_replies(CHAT, 4))[-1]
        await s.tg_send(CHAT, "it never arrived")
        await thread_line(s, ts, "*Alice Smith:* it never arrived")
        await s.press(ts, RESOLVE_NO_SURVEY)
        await until(lambda: "Shall we go back" in s.tg_sent(CHAT)[-1])
        await s.tg_send(CHAT, "yes")
        await until(lambda: s.tg_sent(CHAT)[-1] == asked)  # the task goes on, nothing stale
        sent = s.tg_sent(CHAT)
        assert sent.count("Please write your message for our team.") == 1
        state = await s.agent.store.load(CONVERSATION)
        assert state is not None
        assert [f["flow_id"] for f in state.stack if "leave_message" in f["flow_id"]] == []


# --- the satisfaction survey -----------------------------------------------------------------


async def test_the_survey_follows_a_resolve_once_and_its_answers_reach_the_ticket_and_figures(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    database: str,
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles, database_url=database) as s:
        ts = await hand_off(s)
        await s.press(ts, CLAIM)
        await s.reply(ts, "Hello Alice, your refund is on its way")
        await s.tg_replies(CHAT, 4)
        await s.press(ts, RESOLVE)
        replies = await s.tg_replies(CHAT, 5)
        assert "handed you back" in replies[-1]
        await jobs_become(s, surveys.KIND, [f"handoff_survey:{CONVERSATION}:1"])
        clock.shift(CSAT_DELAY - 1)
        await run_due(s)
        assert len(s.tg_sent(CHAT)) == 5
    # kefu restarts before the survey is due: it still goes, on time.
    async with shop(tmp_path, doubles, database_url=database) as s:
        await run_due(s)
        assert len(s.tg_sent(CHAT)) == 5
        clock.shift(1)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == RATE
        assert keyboard(s) == ["1", "2", "3", "4", "5"]
        await press(s, "4")
        replies = await s.tg_replies(CHAT, 7)
        assert replies[-1].startswith("Thank you! Is there anything you'd like to tell us?")
        await thread_line(s, ts, "Survey: the customer rated this handoff 4/5.")
        await s.tg_send(CHAT, "Quick and kind, thank you")
        replies = await s.tg_replies(CHAT, 8)
        assert replies[-1] == "Thanks for your feedback!"
        await thread_line(s, ts, "Survey comment from the customer: Quick and kind, thank you")
        await until(lambda: "4/5 ★★★★☆" in s.ticket_text(ts))
        # One answer, and its comment as an event of its own (not a second answer).
        events = await s.events(CONVERSATION)
        answers = [e for e in events if isinstance(e, CsatAnswered)]
        assert [(a.score, a.comment) for a in answers] == [(4, None)]
        comments = [e.comment for e in events if isinstance(e, CsatCommented)]
        assert comments == ["Quick and kind, thank you"]

        # Reopened and resolved again: the same handoff is not surveyed twice.
        await s.press(ts, REOPEN)
        await s.tg_replies(CHAT, 9)
        await s.press(ts, RESOLVE)
        await s.tg_replies(CHAT, 10)
        await until(lambda: len([e for e in s.tg_sent(CHAT) if "handed you back" in e]) == 2)
        clock.shift(CSAT_DELAY)
        await run_due(s)
        clock.shift(CSAT_DELAY)
        await run_due(s)
        assert s.tg_sent(CHAT).count(RATE) == 1

        # The dashboard's figures count the answer.
        reporting = Reporting(database)
        await reporting.initialize()
        try:
            await reporting.refresh()
            figures = await reporting.figures(
                Query(since=T0 - 60, until=T0 + 86400, window=3600), now=T0 + 3600
            )
        finally:
            await reporting.close()
        assert figures.csat_answers == 1
        assert figures.csat_distribution == {4: 1}
        assert figures.csat_average == 4


async def test_a_chinese_survey_with_the_comment_skipped(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles) as s:
        ts = await hand_off(s, zh=True)
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 3)
        await s.press(ts, RESOLVE)
        await s.tg_replies(CHAT, 4)
        await jobs_become(s, surveys.KIND, [f"handoff_survey:{CONVERSATION}:1"])
        clock.shift(CSAT_DELAY)
        await run_due(s)
        assert s.tg_sent(CHAT)[-1] == RATE_ZH
        await press(s, "5")
        replies = await s.tg_replies(CHAT, 6)
        assert replies[-1].startswith("谢谢您的评分！")
        assert keyboard(s) == ["跳过"]
        await press(s, "跳过")
        replies = await s.tg_replies(CHAT, 7)
        assert replies[-1] == "感谢您的反馈！"
        await until(lambda: "5/5 ★★★★★" in s.ticket_text(ts))
        events = await s.events(CONVERSATION)
        answers = [e for e in events if isinstance(e, CsatAnswered)]
        assert [(a.score, a.comment) for a in answers] == [(5, None)]
        assert [e for e in events if isinstance(e, CsatCommented)] == []
        # A rating nobody offered any more counts for nothing.
        shown = [m for m in s.telegram.sent_messages if m["chat"]["id"] == CHAT][-1]
        forged = tg.callback(next(s.update_ids), "/SetSlots(handoff_rating=1)", shown)
        forged["callback_query"]["from"] = {**tg.CUSTOMER, "id": CHAT, "first_name": "Alice"}
        response = await s.http.post(
            WEBHOOK_PATH, json=forged, headers={SECRET_HEADER: TELEGRAM_SECRET}
        )
        assert response.status_code == 200
        await s.tg_replies(CHAT, 8)
        answers = [e for e in await s.events(CONVERSATION) if isinstance(e, CsatAnswered)]
        assert [(a.score, a.comment) for a in answers] == [(5, None)]
        # A later survey asks again from scratch (the answers were forgotten).
        state = await s.agent.store.load(CONVERSATION)
        assert state is not None
        assert state.slots.get("handoff_rating") is None


async def test_an_agent_resolves_without_a_survey(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles) as s:
        ts = await hand_off(s)
        sla, idle = f"handoff_sla:{CONVERSATION}:1", f"handoff_idle:{CONVERSATION}:1"
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 3)
        await jobs_become(s, handoffs.IDLE, [idle])
        # Released, the ticket waits again: its waiting time starts over.
        assert await s.command("release", user=AGENT) == "Done."
        await s.tg_replies(CHAT, 4)
        await jobs_become(s, handoffs.SLA, [sla])
        assert await jobs(s, handoffs.IDLE) == []
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 5)
        await jobs_become(s, handoffs.SLA, [])
        answer = await s.command("resolve --no-survey", user=AGENT)
        assert answer == "Done."
        await s.tg_replies(CHAT, 6)
        await until(lambda: "without a survey" in s.ticket_text(ts))
        await jobs_become(s, surveys.KIND, [])
        clock.shift(CSAT_DELAY * 5)
        await run_due(s)
        assert RATE not in s.tg_sent(CHAT)
        events = await s.events(CONVERSATION)
        assert [e.agent for e in events if isinstance(e, HandoffResolved)] == ["Dana Lee"]
        shown = s.ticket_text(ts)
        assert "kefu_reopen" in shown and "without a survey" in shown


async def test_retention_deletes_the_tickets_and_drops_the_handoff_jobs(
    tmp_path: Path,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble],
    clock: time_machine.Coordinates,
) -> None:
    async with shop(tmp_path, doubles, retention_days=30) as s:
        ts = await hand_off(s)
        await s.tg_send(CHAT, "my address is 12 Elm Street")
        await s.thread_has(ts, 1)
        sent = len(s.tg_sent(CHAT))
        assert s.work is not None and s.work.retention is not None
        assert await s.work.retention.delete_expired(T0 + 30 * 86400 + 1) == 1
        # The ticket (its transcript), its thread, its number and its place in the queue go.
        store = s.agent.store
        for namespace in ("desk.ticket", "desk.thread", "desk.number", "desk.open"):
            assert await store.values(namespace) == {}, namespace
        assert await s.desk.ticket(CONVERSATION) is None
        assert "No one is waiting" in await s.command("queue")
        await s.press(ts, CLAIM)  # the old thread is nobody's now, and stays deleted
        assert "not an open kefu handoff" in (await s.ephemeral(AGENT, 1))[0]
        assert await store.values("desk.ticket") == {}
        clock.shift(MAX_WAIT)
        await run_due(s)
        assert len(s.tg_sent(CHAT)) == sent
        assert lines(s, ts, "<!here>") == 0
        for kind in handoffs.KINDS:
            assert await jobs(s, kind) == []
