"""The Slack desk on two workers sharing one PostgreSQL database, as ``kefu run`` wires them.

Telegram webhooks and Slack events land on either worker: a ticket posted through one is
claimed and answered through the other, two agents claiming at once on the two get one claim,
ticket numbers stay unique, and what waited while Slack was down is posted once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.desk import Status
from bot.events import AgentJoined, AgentMessage
from bot.testing import slack_double as sd
from channels.slack_board import CLAIM
from tests.desk_env import AGENT, SECOND_AGENT, USERS, DeskShop, desk_doubles, desk_shop, until

CHAT = 5550123
CONVERSATION = f"telegram:{CHAT}"


@asynccontextmanager
async def two_workers(tmp_path: Path, url: str) -> AsyncIterator[tuple[DeskShop, DeskShop]]:
    """Two workers (each its own store, locks and desk, in ``tmp_path``'s folders a and b) on
    the database at ``url``."""
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    async with (
        desk_doubles() as doubles,
        desk_shop(tmp_path / "a", doubles=doubles, database_url=url, workers=True) as a,
        desk_shop(tmp_path / "b", doubles=doubles, database_url=url, workers=True) as b,
    ):
        yield a, b


async def customer_hands_off(s: DeskShop, chat: int) -> None:
    await s.tg_send(chat, "human")
    await until(lambda: any("connecting you" in text for text in s.tg_sent(chat)))


async def test_a_ticket_posted_through_one_worker_is_worked_through_the_other(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    async with two_workers(tmp_path, fresh_postgres_url) as (a, b):
        await customer_hands_off(a, CHAT)
        ts = str((await a.ticket())["ts"])
        await b.tg_send(CHAT, "my parcel is two weeks late")  # the webhook lands on B
        assert await a.thread_has(ts, 1) == ["*Alice Smith:* my parcel is two weeks late"]

        await b.press(ts, CLAIM)  # the press lands on B, which never posted the ticket
        assert "Dana from our team" in (await a.tg_replies(CHAT, 2))[-1]
        await until(lambda: "Dana Lee has it" in a.ticket_text(ts))

        reply = await b.reply(ts, "Found it: it leaves today")
        assert (await a.tg_replies(CHAT, 3))[-1] == "Found it: it leaves today"
        await a.slack_post(sd.event_callback(reply), retry=1)  # Slack's retry lands on A
        await a.reply(ts, "Anything else?")
        assert (await a.tg_replies(CHAT, 4))[-1] == "Anything else?"
        await a.tg_send(CHAT, "no thanks")
        assert (await b.thread_has(ts, 2))[-1] == "*Alice Smith:* no thanks"
        await asyncio.sleep(0.3)
        assert len(a.tg_sent(CHAT)) == 4  # each agent reply reached the customer once
        assert len(a.tickets()) == 1 and len(a.thread(ts)) == 2
        events = await b.events(CONVERSATION)
        assert [e.text for e in events if isinstance(e, AgentMessage)] == [
            "Found it: it leaves today",
            "Anything else?",
        ]
        await until(lambda: _settled(b))  # the poster gave its claim up
        assert (await b.ticket_record(CONVERSATION)).status is Status.ACTIVE
        assert (await b.ticket_record(CONVERSATION)).agent == AGENT


async def test_concurrent_handoffs_get_unique_numbers_and_concurrent_claims_one_winner(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    async with two_workers(tmp_path, fresh_postgres_url) as (a, b):
        chats = [CHAT + n for n in range(6)]
        await asyncio.gather(*(customer_hands_off((a, b)[n % 2], c) for n, c in enumerate(chats)))
        await a.ticket(len(chats))

        async def threads_recorded() -> bool:
            return all([(await a.ticket_record(f"telegram:{c}")).thread for c in chats])

        await until(threads_recorded)
        records = [await a.ticket_record(f"telegram:{c}") for c in chats]
        assert sorted(r.number for r in records) == list(range(1, len(chats) + 1))
        assert sorted(str(r.thread) for r in records) == sorted(t["ts"] for t in a.tickets())
        queue = await b.command("queue")
        assert all(f"#{n} · waiting" in queue for n in range(1, len(chats) + 1))

        # Dana presses Claim through A while Sam presses it through B, on every ticket.
        await asyncio.gather(
            *(
                press
                for r in records
                for press in (
                    a.press(str(r.thread), CLAIM, user=AGENT),
                    b.press(str(r.thread), CLAIM, user=SECOND_AGENT),
                )
            )
        )
        await until(lambda: len(a.ephemerals_to(AGENT) + a.ephemerals_to(SECOND_AGENT)) >= 6)
        told = a.ephemerals_to(AGENT) + a.ephemerals_to(SECOND_AGENT)
        assert len(told) == len(chats)
        assert all("has this conversation already" in notice for notice in told)
        for chat, record in zip(chats, records, strict=True):
            replies = await a.tg_replies(chat, 2)
            joined = [
                e for e in await a.events(record.conversation_id) if isinstance(e, AgentJoined)
            ]
            assert len(joined) == 1
            assert sum("from our team" in text for text in replies) == 1
            winner = await b.ticket_record(record.conversation_id)
            assert winner.agent in (AGENT, SECOND_AGENT)
            assert USERS[str(winner.agent)]["profile"]["real_name"].split()[0] in replies[-1]


async def test_what_waited_for_slack_is_posted_once_by_one_worker(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    async with two_workers(tmp_path, fresh_postgres_url) as (a, b):
        a.slack.down = True
        await customer_hands_off(a, CHAT)
        for n, text in enumerate(("first", "second", "third", "fourth")):
            await (a, b)[n % 2].tg_send(CHAT, text)
            await until(lambda n=n: _queued(b, n + 1))  # (a webhook is answered before its turn)
        a.slack.down = False
        ts = str((await b.ticket())["ts"])
        thread = await a.thread_has(ts, 4)
        await asyncio.sleep(1.5)  # a second poster would have posted again by now
        assert len(a.tickets()) == 1
        assert (
            a.thread(ts)
            == thread
            == [f"*Alice Smith:* {text}" for text in ("first", "second", "third", "fourth")]
        )
        await until(lambda: _settled(b))


async def test_the_claim_of_a_worker_that_died_lapses_and_another_worker_posts(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    async with two_workers(tmp_path, fresh_postgres_url) as (a, b):
        a.slack.down = True
        await customer_hands_off(a, CHAT)
        await a.tg_send(CHAT, "are you there?")
        await until(lambda: _queued(a, 1))
        # Worker A dies while it posts them: its claim stays in the ticket, for a second more.
        await a.desk.stop()
        ticket = await a.ticket_record(CONVERSATION)
        ticket.poster, ticket.poster_until = "a-worker-that-died", time.time() + 1.0
        await a.agent.store.put_value("desk.ticket", CONVERSATION, ticket.to_json())
        a.slack.down = False
        await b.tg_send(CHAT, "hello?")  # B has something to post too: it waits for the claim
        await until(lambda: _queued(b, 2))
        await asyncio.sleep(0.3)
        assert b.tickets() == []
        ts = str((await b.ticket())["ts"])  # the claim lapsed: B posts everything, in order
        thread = await b.thread_has(ts, 2)
        assert thread == ["*Alice Smith:* are you there?", "*Alice Smith:* hello?"]
        await until(lambda: _settled(b))  # then B gave its claim up


async def test_a_ticket_posted_by_a_worker_whose_claim_lapsed_is_not_posted_again(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    async with two_workers(tmp_path, fresh_postgres_url) as (a, b):
        a.slack.down = True
        await customer_hands_off(a, CHAT)
        await until(lambda: len(a.slack.calls_to("chat.postMessage")) > 0)  # A tried
        await a.desk.stop()
        a.slack.down = False
        # A's post reached Slack, but A never recorded it (the database stayed away longer
        # than its claim on the ticket's posts, DESK_FLUSH_LEASE): its claim lapses.
        ticket = await a.ticket_record(CONVERSATION)
        assert ticket.post_tried and ticket.thread is None
        ts = await a.slack_channel.board.post_ticket(ticket)
        ticket.poster, ticket.poster_until = "a-worker-that-died", time.time() + 1.0
        await a.agent.store.put_value("desk.ticket", CONVERSATION, ticket.to_json())
        await b.tg_send(CHAT, "hello?")  # B takes over once the claim lapsed

        async def adopted() -> bool:
            return (await b.ticket_record(CONVERSATION)).thread == ts

        await until(adopted)  # found in the channel's history by its metadata
        assert await b.thread_has(ts, 1) == ["*Alice Smith:* hello?"]
        assert len(b.tickets()) == 1
        await until(lambda: _settled(b))


async def _queued(s: DeskShop, count: int) -> bool:
    return len((await s.ticket_record(CONVERSATION)).outbox) == count


async def _settled(s: DeskShop) -> bool:
    """Nothing waits to be posted and no worker claims the ticket's posts."""
    record = await s.ticket_record(CONVERSATION)
    return record.thread is not None and (record.outbox, record.poster) == ([], None)
