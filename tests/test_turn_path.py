"""The turn path's small parts: locks, the outbox's retry loop, inbound cleaning, the typed
message fields, sessions, languages, platform commands and the app's explicit lifecycle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot import constants
from bot.app import App
from bot.channel import Channel
from bot.delivery import Outbox
from bot.dialogue.language import base_language, initial_language
from bot.dialogue.platform_commands import command_payload, restarts_session
from bot.dialogue.session import session_expired, starts_session
from bot.events import BotMessage, UserMessage, event_from_dict, profile_from
from bot.inbound import message_key, sanitize
from bot.locks import LocalLocks
from bot.ports import ActionResult
from bot.project import load_project
from bot.settings import Settings
from bot.state import ConversationState
from bot.store import open_store

MINIMAL = Path(__file__).parent / "projects" / "minimal"


async def test_local_locks_hold_one_conversation_at_a_time() -> None:
    locks = LocalLocks()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("rest:a"):
            order.append("first in")
            inside.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await inside.wait()
        async with locks.hold("rest:a"):
            order.append("second in")

    async def other() -> None:
        await inside.wait()
        async with locks.hold("rest:b"):  # another conversation does not wait
            order.append("other in")
        release.set()

    await asyncio.gather(first(), second(), other())
    assert order == ["first in", "other in", "first out", "second in"]
    assert len(locks) == 0  # nothing kept for conversations no one holds


class _Flaky(Channel):
    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.sent: list[str | None] = []

    async def send(self, message: BotMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("platform hiccup")
        self.sent.append(message.text)


async def test_the_retry_loop_runs_at_its_injected_interval(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    outbox = Outbox(store, retry_interval=0.01)
    channel = _Flaky(failures=0)
    outbox.add_channel(channel)
    state = ConversationState(conversation_id="flaky:1", channel="flaky", sender_id="1")
    message = BotMessage(conversation_id="flaky:1", text="your parcel left")
    await store.save(state, [message], outbox=outbox.replies("flaky", [message]))
    await outbox.start()
    try:
        for _ in range(500):  # the loop, not this test, sends it
            if channel.sent:
                break
            await asyncio.sleep(0.01)
    finally:
        await outbox.close()
        await store.close()
    assert channel.sent == ["your parcel left"]


async def test_a_failed_delivery_holds_the_later_ones_and_is_queued(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    try:
        outbox = Outbox(store)
        channel = _Flaky(failures=1)
        outbox.add_channel(channel)
        state = ConversationState(conversation_id="flaky:2", channel="flaky", sender_id="2")
        messages = [BotMessage(conversation_id="flaky:2", text=t) for t in ("one", "two")]
        ids = await store.save(state, messages, outbox=messages)
        delivery = await outbox.deliver("flaky", list(zip(ids, messages, strict=True)))
        assert delivery.value == "queued"
        assert channel.sent == []  # "two" waits for "one"
        later = await store.pending_deliveries(now=time.time() + 3600)
        assert [p.message.text for p in later] == ["one", "two"]
    finally:
        await store.close()


def test_inbound_text_is_cleaned_cut_and_marked() -> None:
    long = "a\x00" * (constants.MAX_MESSAGE_CHARS + 5)
    message = UserMessage(channel="rest", conversation_id="rest:x", sender_id="x", text=long)
    cleaned = sanitize(message)
    assert cleaned.text == "a" * constants.MAX_MESSAGE_CHARS
    assert cleaned.truncated
    assert not sanitize(
        UserMessage(channel="rest", conversation_id="rest:x", sender_id="x")
    ).truncated
    numbered = UserMessage(channel="rest", conversation_id="rest:x", sender_id="x", message_id="7")
    assert message_key(numbered) == ("rest", "6:rest:x/7")
    assert message_key(message) is None


def test_typed_message_fields_round_trip_and_old_events_still_load() -> None:
    message = UserMessage(
        channel="telegram",
        conversation_id="telegram:5",
        sender_id="5",
        text="/help",
        command="help",
        profile={"first_name": "Mei"},
        truncated=True,
    )
    assert event_from_dict(message.to_dict()) == message
    old = {  # as kefu stored it when these rode in metadata
        "event": "user",
        "channel": "telegram",
        "conversation_id": "telegram:5",
        "sender_id": "5",
        "text": "/start",
        "metadata": {"command": "start", "first_name": "Mei"},
        "timestamp": 1.0,
    }
    loaded = event_from_dict(old)
    assert isinstance(loaded, UserMessage)
    assert loaded.metadata == {"command": "start", "first_name": "Mei"}
    assert loaded.command is None and loaded.profile == {} and not loaded.truncated
    assert profile_from({"name": "Ann", "command": "start", "page": "/"}) == {"name": "Ann"}


def test_sessions_languages_and_platform_commands() -> None:
    state = ConversationState(conversation_id="rest:s", channel="rest", sender_id="s")
    assert starts_session(state, 1000.0, expiration_minutes=60, restart=False)  # first message
    state.session_started_at = state.last_active_at = 1000.0
    assert not starts_session(state, 1000.0 + 59 * 60, expiration_minutes=60, restart=False)
    assert session_expired(state, 1000.0 + 61 * 60, expiration_minutes=60)
    assert not session_expired(state, 1000.0 + 10**9, expiration_minutes=0)  # 0: never
    assert starts_session(state, 1001.0, expiration_minutes=60, restart=True)
    state.paused = True  # an agent has it: nothing starts
    assert not starts_session(state, 1000.0 + 61 * 60, expiration_minutes=60, restart=True)
    assert [base_language(c) for c in ("zh-hans", "zh_CN", "en_GB", "pt-BR", "EN")] == [
        "zh",
        "zh",
        "en",
        "pt",
        "en",
    ]
    assert initial_language(None, "zh-hant", "en") == "zh"
    assert initial_language("en", "zh-hant", "en") == "en"
    assert initial_language(None, None, "en") == "en"
    assert restarts_session("start") and not restarts_session("help")
    assert command_payload("help") == "/help"
    assert command_payload("start") is None and command_payload(None) is None


class _RecordingRunner:
    """An action runner that records its lifecycle calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def knows(self, name: str) -> bool:
        return False

    async def run(
        self,
        name: str,
        *,
        tracker: dict[str, Any],
        domain: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> Any:
        return ActionResult()

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self) -> None:
        self.calls.append("close")


@pytest.mark.parametrize("started", [True, False])
async def test_the_app_starts_and_closes_its_parts_explicitly(
    tmp_path: Path, started: bool
) -> None:
    runner = _RecordingRunner()
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    app = await App.create(load_project(MINIMAL), settings=settings, action_runner=runner)
    if started:
        await app.start()
    await app.close()
    assert runner.calls == (["start", "close"] if started else ["close"])
