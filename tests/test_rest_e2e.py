"""The REST channel over HTTP with the real agent: the contract, bad input, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.agent import Agent
from bot.project import load_project
from bot.server import create_app, running
from bot.settings import Settings
from bot.store import open_store
from channels.rest import RestChannel

PROJECT = Path(__file__).resolve().parent / "projects" / "minimal"
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, Agent]]:
    database = tmp_path_factory.mktemp("rest") / "kefu.db"
    settings = Settings.from_env(
        {"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}, env_file=None
    )
    store = await open_store(settings.database_url)
    agent = await Agent.create(load_project(PROJECT), settings=settings, store=store)
    rest = RestChannel()
    agent.add_channel(rest)
    app = create_app(channels=[rest], on_shutdown=[agent.close])
    async with running(app) as base:
        yield base, agent


async def post(base: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/webhooks/rest/webhook", json=body) as response,
    ):
        return response.status, await response.json()


async def user_texts(agent: Agent, conversation_id: str) -> list[str]:
    stored = await agent.store.events(conversation_id)
    return [e.event.text for e in stored if e.event.event == "user"]  # type: ignore[attr-defined]


async def test_a_flow_over_http(server: tuple[str, Agent]) -> None:
    base, _ = server
    status, replies = await post(base, {"sender": "ann", "message": "where is my order"})
    assert status == 200
    assert replies == [{"recipient_id": "ann", "text": "What is your order number?"}]
    status, replies = await post(base, {"sender": "ann", "message": "it is A123"})
    assert status == 200
    assert any("A123" in r.get("text", "") for r in replies)


async def test_malformed_bodies_get_400_with_a_reason(server: tuple[str, Agent]) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as http:
        for raw in (b"{not json", b"[]", b'{"sender": 5, "message": "hi"}', b'{"message": "hi"}'):
            async with http.post(f"{base}/webhooks/rest/webhook", data=raw) as response:
                assert response.status == 400
                assert "error" in await response.json()


async def test_a_one_megabyte_message_gets_a_polite_answer(server: tuple[str, Agent]) -> None:
    base, agent = server
    status, replies = await post(base, {"sender": "big", "message": "a" * 1_000_000})
    assert status == 200
    assert "too long" in replies[-1]["text"]
    stored = await user_texts(agent, "rest:big")
    assert len(stored) == 1 and len(stored[0]) <= 4000


async def test_control_characters_are_stripped_not_fatal(server: tuple[str, Agent]) -> None:
    base, agent = server
    status, replies = await post(base, {"sender": "ctl", "message": "hel\x07lo\x1b[31m"})
    assert status == 200 and replies
    assert await user_texts(agent, "rest:ctl") == ["hello[31m"]


async def test_unknown_button_payload_and_empty_text_are_answered_politely(
    server: tuple[str, Agent],
) -> None:
    base, _ = server
    status, replies = await post(base, {"sender": "odd", "message": "/no_such_intent"})
    assert status == 200 and replies[0]["text"]
    status, replies = await post(base, {"sender": "odd", "message": "   "})
    assert status == 200
    assert "empty" in replies[0]["text"]


async def test_bad_input_mid_flow_loses_nothing(server: tuple[str, Agent]) -> None:
    base, agent = server
    await post(base, {"sender": "keep", "message": "where is my order"})
    for noise in ("/SetSlots(", "x" * 50_000, "\x01\x02"):
        status, _ = await post(base, {"sender": "keep", "message": noise})
        assert status == 200
    status, refused = await post(base, {"sender": "keep", "message": "nul \x00 byte"})
    assert status == 400 and "error" in refused  # PostgreSQL cannot store NUL: refused up front
    state = await agent.store.load("rest:keep")
    assert state is not None and state.stack[0]["flow_id"] == "track_order"
    status, replies = await post(base, {"sender": "keep", "message": "B456"})
    assert any("B456" in r.get("text", "") for r in replies)


async def test_a_redelivered_message_id_is_processed_once(server: tuple[str, Agent]) -> None:
    base, agent = server
    body = {"sender": "dup", "message": "hello", "message_id": "m-1"}
    first = await post(base, body)
    second = await post(base, body)
    assert first[0] == second[0] == 200
    assert first[1] and second[1] == []
    assert await user_texts(agent, "rest:dup") == ["hello"]


async def test_concurrent_messages_of_one_conversation_are_serialised(
    server: tuple[str, Agent],
) -> None:
    base, agent = server
    results = await asyncio.gather(
        *(post(base, {"sender": "many", "message": f"hello {i}"}) for i in range(20))
    )
    assert all(status == 200 for status, _ in results)
    texts = await user_texts(agent, "rest:many")
    assert sorted(texts) == sorted(f"hello {i}" for i in range(20))
    state = await agent.store.load("rest:many")
    assert state is not None and state.version >= 20


async def test_an_engine_bug_costs_one_answer_not_the_conversation(
    server: tuple[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, agent = server
    await post(base, {"sender": "bug", "message": "where is my order"})
    before = await agent.store.load("rest:bug")
    assert before is not None

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(agent.executor, "advance", broken)
    status, replies = await post(base, {"sender": "bug", "message": "A123"})
    assert status == 200
    assert "went wrong" in replies[0]["text"]
    monkeypatch.undo()

    after = await agent.store.load("rest:bug")
    assert after is not None and after.stack == before.stack and after.slots == before.slots
    assert (await user_texts(agent, "rest:bug"))[-1] == "A123"
    status, replies = await post(base, {"sender": "bug", "message": "A123"})
    assert any("A123" in r.get("text", "") for r in replies)


async def test_a_card_number_never_reaches_the_store(server: tuple[str, Agent]) -> None:
    base, agent = server
    status, _ = await post(base, {"sender": "card", "message": "card 4111 1111 1111 1111 failed"})
    assert status == 200
    stored = await agent.store.events("rest:card")
    dumped = " ".join(str(s.event.to_dict()) for s in stored)
    assert "**** 1111" in dumped and "4111 1111" not in dumped
