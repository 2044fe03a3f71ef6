"""The recording core that kefu ships for testing a channel without the rest of kefu."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.channel import Channel
from bot.errors import BadRequestError
from bot.events import BotMessage, Button, UserMessage
from bot.testing.recording_core import RecordingCore


class LineChannel(Channel):
    """A platform that takes one line per call: ``deliveries`` cuts a text at its newlines."""

    name = "line"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[BotMessage] = []

    def deliveries(self, message: BotMessage) -> list[BotMessage]:
        lines = (message.text or "").split("\n")
        return [dataclasses.replace(message, text=line) for line in lines]

    async def send(self, message: BotMessage) -> None:
        self.sent.append(message)

    async def receive(self, chat: str, text: str) -> list[BotMessage]:
        message = UserMessage(
            channel=self.name, conversation_id=f"line:{chat}", sender_id=chat, text=text
        )
        return await self.handler(message)


async def test_replies_are_addressed_delivered_part_by_part_and_returned() -> None:
    channel = LineChannel()
    core = RecordingCore(
        channel,
        replies=["one\ntwo", BotMessage(conversation_id="", buttons=(Button("Yes", "/affirm"),))],
    )
    channel.attach(core)

    returned = await channel.receive("7", "hi")

    assert [m.conversation_id for m in returned] == ["line:7", "line:7"]
    assert [m.text for m in returned] == ["one\ntwo", None]
    assert returned[1].buttons == (Button("Yes", "/affirm"),)
    assert [m.text for m in channel.sent] == ["one", "two", ""]
    assert [m.text for m in core.received] == ["hi"]


async def test_a_scripted_function_answers_from_the_message() -> None:
    core = RecordingCore(replies=lambda message: [f"you said {message.text}"] * 2)
    channel = LineChannel()
    channel.attach(core)

    returned = await channel.receive("8", "hello")

    assert [m.text for m in returned] == ["you said hello"] * 2
    assert channel.sent == [], "without a channel to deliver through, replies are only returned"


async def test_wait_returns_once_enough_messages_arrived_and_times_out_otherwise() -> None:
    channel = LineChannel()
    core = RecordingCore(channel, replies=())
    channel.attach(core)
    waiting = asyncio.create_task(core.wait(2))
    await channel.receive("1", "first")
    assert not waiting.done()
    await channel.receive("2", "second")
    assert [m.text for m in await waiting] == ["first", "second"]
    with pytest.raises(TimeoutError):
        await core.wait(3, within=0.01)


async def test_a_failing_core_records_then_raises() -> None:
    channel = LineChannel()
    core = RecordingCore(channel)
    core.error = BadRequestError("attachments are not supported")
    channel.attach(core)
    with pytest.raises(BadRequestError):
        await channel.receive("9", "hi")
    assert [m.text for m in core.received] == ["hi"]
    assert channel.sent == []
