"""The shop's dashboard and /metrics over real conversations.

The reference shop runs behind the real server with the REST channel and Telegram (pointed at
the local Bot API double); a desk that accepts every handoff stands in for the Slack desk,
and the desk's events (agent joined, handoff resolved, survey answer) are saved through the
store as a desk saves them, with chosen times. Every figure asserted below is worked out by
hand from the script in ``CONVERSATIONS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from bot.app import App, operations
from bot.events import (
    AgentJoined,
    AgentMessage,
    CsatAnswered,
    CsatCommented,
    Event,
    HandoffResolved,
    UserMessage,
)
from bot.project import load_project
from bot.server import create_app, running
from bot.settings import Settings
from bot.state import ConversationState
from bot.store import open_store
from bot.testing.telegram_double import TelegramBotApiDouble
from channels.rest import RestChannel
from channels.telegram import SECRET_HEADER, WEBHOOK_PATH, TelegramChannel
from tests import telegram_updates as tg

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "dashboard-t0ken"
METRICS_TOKEN = "metrics-t0ken"
SECRET = "dash-secret"
WAIT = 30.0
pytestmark = pytest.mark.asyncio(loop_scope="module")

# sender → what the customer writes, in order, on the REST channel.
CONVERSATIONS = {
    # Tracks an order, verifies, thanks the bot: resolved by the bot alone (confirmed).
    "alice": ["where is my order", "KF-10001", "alice@example.com", "thanks"],
    # Starts cancelling an order and stops: a cancelled flow, answered, nothing left open.
    "bob": ["I want to cancel my order", "stop"],
    # Something nothing understands, then asks for a person: handoff, claimed, resolved, CSAT 5.
    "carol": ["can you sing me a song about pineapples on mars", "human"],
    # Chinese order tracking left half done: an open flow, so not resolved.
    "dan": ["我的订单到哪了"],
}
TELEGRAM_CHAT = 4242100
TELEGRAM_TEXTS = ["hi", "/human"]  # handoff on Telegram: claimed, resolved, no survey answer
# Desk timings (seconds): handoff → agent joined → resolved.
CAROL_CLAIM, CAROL_HANDLING = 30.0, 120.0
TELEGRAM_CLAIM, TELEGRAM_HANDLING = 90.0, 300.0


class AcceptingDesk:
    """A desk that takes every handoff (the Slack desk's part in these tests)."""

    def __init__(self) -> None:
        self.forwarded: list[UserMessage] = []

    async def request_handoff(
        self, *, conversation_id: str, reason: str, state: ConversationState
    ) -> bool:
        return True

    async def forward(self, message: UserMessage) -> None:
        self.forwarded.append(message)


@dataclass
class Shop:
    agent: App
    url: str

    def client(self) -> httpx.AsyncClient:
        """A fresh client (its own cookie jar)."""
        return httpx.AsyncClient(base_url=self.url, timeout=60)

    @contextlib.asynccontextmanager
    async def signed_in(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client that signed in with the API token."""
        async with self.client() as http:
            answer = await http.post("/dashboard/login", data={"token": TOKEN})
            assert answer.status_code == 303
            assert "httponly" in answer.headers["set-cookie"].lower()
            assert "kefu_dashboard" in http.cookies
            yield http


async def save_desk_events(agent: App, conversation_id: str, events: list[Event]) -> None:
    state = await agent.store.load(conversation_id)
    assert state is not None
    state.remember(events)
    await agent.store.save(state, events)


async def handoff_time(agent: App, conversation_id: str) -> float:
    """When the conversation was handed off (Telegram's turns finish after the webhook answers)."""
    async with asyncio.timeout(WAIT):
        while True:
            stored = await agent.store.events(conversation_id)
            found = [s.event.timestamp for s in stored if s.event.event == "handoff_requested"]
            if found:
                return found[0]
            await asyncio.sleep(0.05)


async def desk_session(
    agent: App, conversation_id: str, claim: float, handling: float, csat: int | None
) -> None:
    start = await handoff_time(agent, conversation_id)
    events: list[Event] = [
        AgentJoined(agent="U_AGENT", timestamp=start + claim),
        AgentMessage(
            agent="U_AGENT", text="Hello, mail me at zoe@example.com", timestamp=start + claim + 1
        ),
        HandoffResolved(agent="U_AGENT", timestamp=start + claim + handling),
    ]
    if csat is not None:
        events.append(CsatAnswered(score=csat, timestamp=start + claim + handling + 5))
        events.append(
            CsatCommented(comment="mail zoe@example.com", timestamp=start + claim + handling + 9)
        )
    await save_desk_events(agent, conversation_id, events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    folder = tmp_path_factory.mktemp("dashboard")
    async with TelegramBotApiDouble(token=tg.TOKEN, username=tg.BOT_USERNAME) as api:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{folder / 'kefu.db'}",
            telegram_bot_token=tg.TOKEN,
            telegram_webhook_url="https://shop.example",
            telegram_webhook_secret=SECRET,
            telegram_api_base_url=api.base_url,
            api_token=TOKEN,
            metrics_token=METRICS_TOKEN,
            containment_window=0.0,
        )
        store = await open_store(settings.database_url)
        agent = await App.create(
            load_project(ROOT), settings=settings, store=store, desk=AcceptingDesk()
        )
        telegram = TelegramChannel.from_settings(settings, store)
        assert telegram is not None
        channels = [RestChannel(), telegram]
        for channel in channels:
            agent.add_channel(channel)
        routes, on_startup, on_shutdown = operations(settings, channels)
        app = create_app(
            channels=channels,
            on_startup=on_startup,
            on_shutdown=[*on_shutdown, agent.close],
            routes=routes,
        )
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            for sender, texts in CONVERSATIONS.items():
                for text in texts:
                    answer = await http.post(
                        "/webhooks/rest/webhook", json={"sender": sender, "message": text}
                    )
                    assert answer.status_code == 200, answer.text
            for update_id, text in enumerate(TELEGRAM_TEXTS, start=1):
                update = tg.message(
                    update_id,
                    text,
                    chat={"id": TELEGRAM_CHAT, "type": "private", "first_name": "Eve"},
                    sender={
                        "id": TELEGRAM_CHAT,
                        "is_bot": False,
                        "first_name": "Eve",
                        "language_code": "en",
                    },
                )
                answer = await http.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
                assert answer.status_code == 200
            await desk_session(agent, "rest:carol", CAROL_CLAIM, CAROL_HANDLING, csat=5)
            await desk_session(
                agent, f"telegram:{TELEGRAM_CHAT}", TELEGRAM_CLAIM, TELEGRAM_HANDLING, csat=None
            )
            yield Shop(agent, url)


def card(html: str, figure: str) -> str:
    match = re.search(rf'id="fig-{figure}".*?class="v">([^<]*)<', html, re.S)
    assert match, figure
    return match.group(1)


# --- figures --------------------------------------------------------------------------


async def test_the_page_shows_the_figures_computed_by_hand(shop: Shop) -> None:
    async with shop.signed_in() as http:
        page = await http.get("/dashboard")
        assert page.status_code == 200
        html = page.text
        # 5 conversations: alice, bob, carol, dan (REST) and one on Telegram.
        assert card(html, "conversations") == "5"
        # Resolved alone: alice (thanked) and bob (cancelled, answered, nothing open) → 2 of 5.
        assert card(html, "containment") == "40%"
        # Handoffs: carol and the Telegram customer → 2 of 5.
        assert card(html, "handoff-rate") == "40%"
        # Claim: 30 s and 90 s → median 60 s, p90 30 + 0.9 × 60 = 84 s.
        assert card(html, "claim") == "60 s / 84 s"
        # Handling: 120 s and 300 s → median 210 s = 4 min (shown rounded), p90 282 s = 5 min.
        assert card(html, "handling") == "4 min / 5 min"
        assert card(html, "csat") == "5.00"
        # One survey answer for two resolved handoffs.
        assert card(html, "csat-response") == "50%"
        # Only carol's pineapple song went to pattern_cannot_handle.
        assert card(html, "not-understood") == "1"
        assert "<svg" in html and "Definitions" in html
        # Nothing is loaded from elsewhere: no script, stylesheet or image from another host.
    assert not re.search(r'(src|href)="(https?:)?//', html)


async def test_figures_csv_holds_the_same_numbers(shop: Shop) -> None:
    async with shop.signed_in() as http:
        answer = await http.get("/dashboard/export/figures.csv?days=7")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        rows = {row[0]: row[1] for row in csv.reader(io.StringIO(answer.text)) if len(row) == 2}
        assert rows["conversations"] == "5"
        assert rows["contained"] == "2"
        assert rows["settled"] == "5"
        assert rows["containment"] == "0.4"
        assert rows["handoffs"] == "2"
        assert rows["time_to_claim_p50_s"] == "60"
        assert rows["time_to_claim_p90_s"] == "84"
        assert rows["handling_time_p50_s"] == "210"
        assert rows["handling_time_p90_s"] == "282"
        assert rows["csat_answers"] == "1"
        assert rows["csat_score:5"] == "1"
        assert rows["csat_response_rate"] == "0.5"
        assert rows["not_understood"] == "1"
        assert rows["flow_started:cancel_order"] == "1"
        assert rows["flow_cancelled:cancel_order"] == "1"
        # track_order: alice (completed) and dan (left open).
        assert rows["flow_started:track_order"] == "2"
        assert rows["flow_completed:track_order"] == "1"
        assert rows["handoff_reason:customer asked for a human"] == "2"


async def test_chinese_page_and_filters(shop: Shop) -> None:
    async with shop.signed_in() as http:
        zh = await http.get("/dashboard?ui=zh&channel=telegram")
        assert zh.status_code == 200
        assert "机器人独立解决率" in zh.text and 'lang="zh-CN"' in zh.text
        assert card(zh.text, "conversations") == "1"
        assert card(zh.text, "handoff-rate") == "100%"
        chinese = await http.get("/dashboard?language=zh")
        assert card(chinese.text, "conversations") == "1"
        assert card(chinese.text, "containment") == "0%"
        bad = await http.get("/dashboard?days=abc")
        assert bad.status_code == 400


# --- conversations -----------------------------------------------------------------------


async def test_conversation_search_and_transcript_are_masked(shop: Shop) -> None:
    async with shop.signed_in() as http:
        found = await http.get("/dashboard/conversations?q=ali")
        assert "rest:alice" in found.text and "rest:bob" not in found.text
        handed = await http.get("/dashboard/conversations?handoff=yes")
        assert "rest:carol" in handed.text and f"telegram:{TELEGRAM_CHAT}" in handed.text
        assert "rest:alice" not in handed.text
        by_intent = await http.get("/dashboard/conversations?intent=thanks")
        assert "rest:alice" in by_intent.text and "rest:carol" not in by_intent.text
        transcript = await http.get("/dashboard/conversations/rest%3Aalice")
        assert transcript.status_code == 200
        assert "alice@example.com" not in transcript.text
        assert "&lt;email&gt;" in transcript.text
        assert "flow_completed track_order" in transcript.text
        carol = await http.get("/dashboard/conversations/rest:carol")
        assert "handoff requested" in carol.text and carol.text.count("CSAT 5") == 1
        assert "CSAT comment: mail &lt;email&gt;" in carol.text
        assert "zoe@example.com" not in carol.text
        missing = await http.get("/dashboard/conversations/rest:nobody")
        assert missing.status_code == 404


async def test_conversations_csv(shop: Shop) -> None:
    async with shop.signed_in() as http:
        answer = await http.get("/dashboard/export/conversations.csv")
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows[0][0] == "conversation_id"
        ids = {row[0]: row for row in rows[1:]}
        assert set(ids) == {
            "rest:alice",
            "rest:bob",
            "rest:carol",
            "rest:dan",
            f"telegram:{TELEGRAM_CHAT}",
        }
        assert ids["rest:carol"][7] == "5"
        assert ids["rest:alice"][5] == "4"


# --- what nothing understood ---------------------------------------------------------------


async def test_unknown_messages_are_grouped_and_exported(shop: Shop) -> None:
    async with shop.signed_in() as http:
        page = await http.get("/dashboard/unknown")
        assert page.status_code == 200
        assert page.text.count('class="panel unknown-group"') == 1
        assert "pineapples on mars" in page.text
        export = await http.post(
            "/dashboard/unknown/export",
            data={"intent": "ask_songs", "text": ["sing me a song", "a song about mars"]},
        )
        assert export.status_code == 200
        data = yaml.safe_load(export.text)
        assert data["nlu"] == [
            {"intent": "ask_songs", "examples": "- sing me a song\n- a song about mars\n"}
        ]
        bad = await http.post("/dashboard/unknown/export", data={"intent": "x: y", "text": "a"})
        assert bad.status_code == 400


# --- access --------------------------------------------------------------------------------


ROUTES = [
    "/dashboard",
    "/dashboard/conversations",
    "/dashboard/conversations/rest:alice",
    "/dashboard/unknown",
    "/dashboard/export/figures.csv",
    "/dashboard/export/conversations.csv",
]


async def test_without_a_session_nothing_is_shown(shop: Shop) -> None:
    async with shop.client() as http:
        await _check_anonymous(http)


async def _check_anonymous(http: httpx.AsyncClient) -> None:
    for path in ROUTES:
        answer = await http.get(path)
        if path.endswith(".csv"):
            assert answer.status_code == 401, path
        else:
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/dashboard/login")
    http.cookies.set("kefu_dashboard", "9999999999.forged")
    assert (await http.get("/dashboard")).status_code == 303
    http.cookies.clear()
    export = await http.post("/dashboard/unknown/export", data={"intent": "a", "text": "b"})
    assert export.status_code == 401
    wrong = await http.post("/dashboard/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert (await http.get("/metrics")).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await http.get("/metrics", headers=bearer)).status_code == 401


async def test_without_tokens_there_is_no_dashboard(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'kefu.db'}")
    routes, on_startup, on_shutdown = operations(settings, [])
    app = create_app(channels=[], on_startup=on_startup, on_shutdown=on_shutdown, routes=routes)
    async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
        for path in [*ROUTES, "/dashboard/login", "/metrics"]:
            assert (await http.get(path)).status_code == 404, path


# --- metrics -------------------------------------------------------------------------------


async def test_metrics(shop: Shop) -> None:
    async with shop.client() as http:
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    text = answer.text
    rest_turns = sum(len(texts) for texts in CONVERSATIONS.values())
    assert re.search(
        rf'kefu_turn_seconds_count\{{channel="rest",worker="\d+"\}} {rest_turns}\.0', text
    )
    assert re.search(r'kefu_turn_seconds_count\{channel="telegram",worker="\d+"\} 2\.0', text)
    assert re.search(r'kefu_outbox_messages\{status="failed",worker="\d+"\} 0\.0', text)
    assert re.search(r'kefu_desk_waiting_conversations\{worker="\d+"\} 0\.0', text)
    assert re.search(r'kefu_desk_oldest_waiting_seconds\{worker="\d+"\} 0\.0', text)
    # Each handoff's time to claim and handling time, as the desk's events gave them.
    for channel, claim, handling in (
        ("rest", CAROL_CLAIM, CAROL_HANDLING),
        ("telegram", TELEGRAM_CLAIM, TELEGRAM_HANDLING),
    ):
        labels = rf'\{{channel="{channel}",worker="\d+"\}}'
        assert re.search(rf"kefu_desk_claim_seconds_count{labels} 1\.0", text)
        assert re.search(rf"kefu_desk_claim_seconds_sum{labels} {claim}", text)
        assert re.search(rf"kefu_desk_handling_seconds_sum{labels} {handling}", text)


# --- in a browser --------------------------------------------------------------------------


async def test_in_headless_chromium(shop: Shop, tmp_path: Path) -> None:
    """Sign in, read the figures, open a conversation and export a group, at 1280 and 390 px."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium: apt-get install chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for width, height in ((1280, 900), (390, 844)):
                context = await browser.new_context(viewport={"width": width, "height": height})
                page = await context.new_page()
                await page.goto(f"{shop.url}/dashboard")
                assert "/dashboard/login" in page.url
                await page.fill("input[name=token]", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{shop.url}/dashboard?ui=en")
                assert (await page.inner_text("#fig-conversations .v")) == "5"
                assert (await page.inner_text("#fig-containment .v")) == "40%"
                # Nothing wider than the screen: the page is usable on a phone.
                scroll = await page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width
                await page.screenshot(path=tmp_path / f"dashboard-{width}.png", full_page=True)
                await page.click("text=Conversations")
                await page.click("a:text('rest:carol')")
                await page.wait_for_selector("#transcript")
                assert "CSAT 5" in await page.inner_text("#transcript")
                await page.screenshot(path=tmp_path / f"conversation-{width}.png", full_page=True)
                await page.click("text=Not understood")
                await page.fill(".unknown-group input[name=intent]", "ask_songs")
                async with page.expect_download() as download_info:
                    await page.click(".unknown-group button")
                download = await download_info.value
                saved = tmp_path / f"nlu-{width}.yml"
                await download.save_as(saved)
                examples = yaml.safe_load(saved.read_text())["nlu"][0]["examples"]
                assert "pineapples on mars" in examples
                await context.close()
        finally:
            await browser.close()
    for name in ("dashboard-1280", "dashboard-390", "conversation-1280", "conversation-390"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
