"""A stand-in for kefu's core, for testing a channel adapter on its own.

A channel hands each :class:`~bot.events.UserMessage` it translated to the core's
:class:`~bot.channel.MessageHandler`. :class:`RecordingCore` is such a handler: it records the
message and answers with scripted :class:`~bot.events.BotMessage` replies, without a project,
a model or a database. Like the real core, it delivers the replies through the channel's
``send`` (each part of :meth:`~bot.channel.Channel.deliveries` in turn) unless the channel
answers inline, and returns them::

    core = RecordingCore(channel, replies=["Your order ships tomorrow."])
    channel.attach(core)
    await channel.start()
    ...  # post a platform update to the channel
    [message] = await core.wait()
    assert message.text == "where is my order?"

Unlike the real core it does not retry: a failed ``send`` fails the turn, for the test to see.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence

from bot.channel import Channel
from bot.events import BotMessage, UserMessage

__all__ = ["RecordingCore", "Script"]

Script = Sequence[str | BotMessage] | Callable[[UserMessage], Sequence[str | BotMessage]]
"""Replies: the same for every message, or computed from the message. A text becomes a plain
``BotMessage``; a ``BotMessage`` is addressed to the message's conversation."""


class RecordingCore:
    """A :class:`~bot.channel.MessageHandler` that records messages and answers from a script.

    ``received`` holds every message in the order the channel handed them over; ``replies``
    may be changed between turns; ``delay`` seconds pass before each answer (a slow turn);
    while ``error`` is set, each turn records its message, then raises it (a failing core:
    ``BadRequestError``, ``ConcurrentUpdateError``...).
    """

    def __init__(
        self,
        channel: Channel | None = None,
        *,
        replies: Script = ("Hello!",),
        delay: float = 0.0,
    ) -> None:
        self.channel = channel
        self.replies = replies
        self.delay = delay
        self.error: Exception | None = None
        self.received: list[UserMessage] = []
        self._news = asyncio.Condition()

    async def __call__(self, message: UserMessage) -> list[BotMessage]:
        """Record ``message``; deliver and return the scripted replies."""
        async with self._news:
            self.received.append(message)
            self._news.notify_all()
        if self.error is not None:
            raise self.error
        if self.delay:
            await asyncio.sleep(self.delay)
        script = self.replies(message) if callable(self.replies) else self.replies
        out = [_addressed(reply, message.conversation_id) for reply in script]
        if self.channel is not None and not self.channel.replies_inline:
            for reply in out:
                for part in self.channel.deliveries(reply):
                    await self.channel.send(part)
        return out

    async def wait(self, count: int = 1, *, within: float = 5.0) -> list[UserMessage]:
        """Wait until ``count`` messages were received (``TimeoutError`` after ``within``
        seconds); all the messages received so far."""
        async with asyncio.timeout(within), self._news:
            await self._news.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


def _addressed(reply: str | BotMessage, conversation_id: str) -> BotMessage:
    if isinstance(reply, str):
        return BotMessage(conversation_id=conversation_id, text=reply)
    return dataclasses.replace(reply, conversation_id=conversation_id)
