"""A running shop with the Slack desk, for the desk's end-to-end tests and its benchmark.

kefu is built as ``kefu run`` builds it (``bot.app.build``), with Telegram pointed at the
Telegram double and Slack at the Slack double, and served by the real server. Slack requests
are Slack's own payload shapes, signed with the signing secret as Slack signs them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.app import App, build, scheduled_work
from bot.desk import Desk, Ticket
from bot.events import Event
from bot.scaling import open_workers
from bot.scheduling.work import ScheduledWork
from bot.server import create_app, running
from bot.settings import Settings
from bot.testing import slack_double as sd
from bot.testing.slack_double import SlackApiDouble
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.slack import EVENTS_PATH, SlackDeskChannel
from channels.telegram import SECRET_HEADER, WEBHOOK_PATH
from tests import telegram_updates as tg

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TELEGRAM_SECRET = "desk-e2e-secret"
DESK = "C0DESK"
AGENT = "U0DANA"
SECOND_AGENT = "U0SAM"
OUTSIDER = "U0NOTSTAFF"
USERS = {
    AGENT: {
        "id": AGENT,
        "name": "dana",
        "real_name": "Dana Lee",
        "profile": {"real_name": "Dana Lee"},
    },
    SECOND_AGENT: {"id": SECOND_AGENT, "name": "sam", "profile": {"real_name": "Sam Wu"}},
    OUTSIDER: {"id": OUTSIDER, "name": "guest", "profile": {"real_name": "Guest User"}},
}
WAIT = 15.0
REDELIVERIES = 20
"""How many times a test delivers a request refused with 503 before it gives up."""
_UPDATE_IDS = itertools.count(1)
"""Telegram update (and message) ids, unique across the shops a test restarts."""


@dataclass
class DeskShop:
    """kefu with the desk, the two doubles, and helpers to act as Slack and as a customer."""

    agent: App
    desk: Desk
    slack_channel: SlackDeskChannel
    slack: SlackApiDouble
    telegram: TelegramBotApiDouble
    http: httpx.AsyncClient
    db_path: Path
    work: ScheduledWork | None = None
    """The scheduler and its jobs, when the shop was started with them."""
    update_ids: Iterator[int] = field(default_factory=lambda: _UPDATE_IDS)

    # --- Slack, signed --------------------------------------------------------------------

    async def slack_post(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        retry: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> httpx.Response:
        headers = sd.signed(secret, body, timestamp=timestamp)
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return await self.http.post(EVENTS_PATH, content=body, headers=headers)

    async def reply(
        self,
        ticket_ts: str,
        text: str,
        *,
        user: str = AGENT,
        ts: str | None = None,
        retry: int | None = None,
    ) -> dict[str, Any]:
        event = sd.thread_reply(channel=DESK, user=user, text=text, thread_ts=ticket_ts, ts=ts)
        response = await self.slack_post(sd.event_callback(event), retry=retry)
        assert response.status_code == 200, response.text
        return event

    async def press(self, ticket_ts: str, action_id: str, *, user: str = AGENT) -> None:
        body = sd.block_action(
            user=user,
            channel=DESK,
            message_ts=ticket_ts,
            action_id=action_id,
            response_url=f"{self.slack.root}/respond/action",
        )
        response = await self.slack_post(body)
        assert response.status_code == 200, response.text

    async def command(self, text: str, *, user: str = AGENT) -> str:
        count = len(self.slack.responses)
        body = sd.slash_command(
            user=user, channel=DESK, text=text, response_url=f"{self.slack.root}/respond/cmd"
        )
        response = await self.slack_post(body)
        assert response.status_code == 200, response.text
        await self.slack.wait_until(lambda: len(self.slack.responses) > count, WAIT)
        return str(self.slack.responses[-1]["text"])

    # --- what Slack shows -----------------------------------------------------------------

    def tickets(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages if m["channel"] == DESK and not m.get("thread_ts")]

    async def ticket(self, count: int = 1) -> dict[str, Any]:
        await self.slack.wait_until(lambda: len(self.tickets()) >= count, WAIT)
        return self.tickets()[count - 1]

    def thread(self, ticket_ts: str) -> list[str]:
        return [str(m.get("text")) for m in self.slack.thread(DESK, ticket_ts)]

    async def thread_has(self, ticket_ts: str, count: int) -> list[str]:
        await self.slack.wait_until(lambda: len(self.thread(ticket_ts)) >= count, WAIT)
        return self.thread(ticket_ts)

    def ephemerals_to(self, user: str) -> list[str]:
        return [str(e["text"]) for e in self.slack.ephemerals if e["user"] == user]

    async def ephemeral(self, user: str, count: int) -> list[str]:
        await self.slack.wait_until(lambda: len(self.ephemerals_to(user)) >= count, WAIT)
        return self.ephemerals_to(user)

    def ticket_text(self, ticket_ts: str) -> str:
        message = next(m for m in self.slack.messages if m["ts"] == ticket_ts)
        return json.dumps(message.get("blocks"), ensure_ascii=False) + str(message.get("text"))

    async def ticket_record(self, conversation_id: str) -> Ticket:
        raw = await self.agent.store.get_value("desk.ticket", conversation_id)
        assert raw is not None
        return Ticket.from_json(raw)

    async def events(self, conversation_id: str) -> list[Event]:
        return [s.event for s in await self.agent.store.events(conversation_id)]

    # --- a Telegram customer --------------------------------------------------------------

    async def tg_send(self, chat: int, text: str | None = None, **content: Any) -> None:
        response = await self.tg_post(self.tg_update(chat, text, **content))
        assert response.status_code == 200

    def tg_update(self, chat: int, text: str | None = None, **content: Any) -> dict[str, Any]:
        """A new update: the customer in ``chat`` writes ``text``."""
        return tg.message(
            next(self.update_ids),
            text,
            chat={"id": chat, "type": "private", "first_name": "Alice"},
            sender={**tg.CUSTOMER, "id": chat, "first_name": "Alice", "last_name": "Smith"},
            **content,
        )

    async def tg_post(self, update: dict[str, Any]) -> httpx.Response:
        """Deliver ``update`` to the webhook as Telegram does (again, for a redelivery)."""
        return await self.http.post(
            WEBHOOK_PATH, json=update, headers={SECRET_HEADER: TELEGRAM_SECRET}
        )

    def tg_sent(self, chat: int) -> list[str]:
        return [
            str(m.get("text", "")) for m in self.telegram.sent_messages if m["chat"]["id"] == chat
        ]

    async def tg_replies(self, chat: int, count: int) -> list[str]:
        await until(lambda: len(self.tg_sent(chat)) >= count)
        return self.tg_sent(chat)


async def accepted(post: Callable[[], Awaitable[httpx.Response]]) -> int:
    """Deliver until acknowledged, as a platform redelivers; the refusals (each a 503)."""
    for refusals in range(REDELIVERIES):
        response = await post()
        if response.status_code == 200:
            return refusals
        assert response.status_code == 503, (response.status_code, response.text)
        await asyncio.sleep(0.2)
    raise AssertionError(f"not acknowledged after {REDELIVERIES} deliveries")


async def until(check: Callable[[], Any], limit: float = WAIT) -> None:
    """Wait until ``check()`` (sync or async) is true."""
    async with asyncio.timeout(limit):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


@asynccontextmanager
async def desk_doubles() -> AsyncIterator[tuple[SlackApiDouble, TelegramBotApiDouble]]:
    """The Slack double (the desk channel, its two agents) and the Telegram double, running."""
    async with (
        SlackApiDouble(members={DESK: [AGENT, SECOND_AGENT]}, users=USERS) as slack,
        TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as telegram,
    ):
        yield slack, telegram


@asynccontextmanager
async def desk_shop(
    tmp_path: Path,
    *,
    socket_mode: bool = False,
    not_understood: int = 3,
    agent_ids: frozenset[str] = frozenset(),
    sentiment: float | None = None,
    llm_base_url: str | None = None,
    desk_language: str = "en",
    scheduled: bool = False,
    doubles: tuple[SlackApiDouble, TelegramBotApiDouble] | None = None,
    database_url: str | None = None,
    workers: bool = False,
    **overrides: Any,
) -> AsyncIterator[DeskShop]:
    """The reference shop with Telegram (webhook mode) and the Slack desk, running.

    ``llm_base_url``: an OpenAI-compatible LLM (the double) behind it and the desk's copilot.
    ``scheduled``: with the scheduler and its jobs, as ``kefu run`` starts them (the test
    fires due jobs itself). ``doubles``: Slack and Telegram doubles that outlive the shop, to
    restart kefu against them. ``workers``: one of several workers on ``database_url``
    (PostgreSQL), with their shared locks, as ``kefu run`` wires them there. ``overrides``:
    more settings.
    """
    db_path = tmp_path / "kefu.db"
    async with AsyncExitStack() as stack:
        if doubles is None:
            doubles = await stack.enter_async_context(desk_doubles())
        slack, telegram = doubles
        settings = Settings(
            database_url=database_url or f"sqlite+aiosqlite:///{db_path}",
            telegram_bot_token=tg.TOKEN,
            telegram_webhook_url="https://shop.example",
            telegram_webhook_secret=TELEGRAM_SECRET,
            telegram_api_base_url=telegram.base_url,
            slack_bot_token=slack.token,
            slack_signing_secret=None if socket_mode else SIGNING_SECRET,
            slack_app_token=slack.app_token if socket_mode else None,
            slack_handoff_channel=DESK,
            slack_api_base_url=slack.base_url.rstrip("/"),
            handoff_not_understood=not_understood,
            handoff_sentiment=sentiment,
            slack_agent_ids=agent_ids,
            desk_language=desk_language,
            openai_base_url=llm_base_url,
            llm_model="desk-model" if llm_base_url else None,
            llm_timeout=3.0,
            **overrides,
        )
        shared = open_workers(settings) if workers else None
        agent, channels = await build(ROOT, settings, workers=shared)
        slack_channel = next(c for c in channels if isinstance(c, SlackDeskChannel))
        work = scheduled_work(agent) if scheduled else None
        app = create_app(
            channels=channels,
            on_startup=[
                *([shared.connections.open] if shared is not None else []),
                *([work.start] if work is not None else []),
            ],
            on_shutdown=[
                *([work.shutdown] if work is not None else []),
                *([shared.connections.close] if shared is not None else []),
                agent.close,
            ],
        )
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield DeskShop(
                agent, slack_channel.desk, slack_channel, slack, telegram, http, db_path, work
            )
