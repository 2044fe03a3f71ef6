"""The one small interface every platform adapter implements.

A channel only translates: platform payloads into :class:`~bot.events.UserMessage` records
handed to the core's :class:`MessageHandler`, and :class:`~bot.events.BotMessage` records into
platform calls. It decides nothing about the dialogue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Protocol

from starlette.routing import BaseRoute

from bot.errors import KefuError
from bot.events import BotMessage, UserMessage


class MessageHandler(Protocol):
    """The core's entry point (``bot.turns.TurnRunner.handle``).

    Runs one turn and returns the bot's replies. For a channel with ``replies_inline`` the
    channel returns them itself (REST answers in the HTTP response); for the others the core
    delivers them through :meth:`Channel.send`, from its outbox, and the channel may ignore
    the return value. A message whose ``message_id`` was processed before is not run again:
    it returns that first turn's replies (``[]`` when they are no longer stored).
    """

    async def __call__(self, message: UserMessage) -> list[BotMessage]:
        """Run one turn for ``message``; the bot's replies."""
        ...


class Channel(ABC):
    """Base of every channel adapter."""

    name: ClassVar[str]
    """Prefix of this channel's conversation ids (``telegram``, ``rest``...)."""
    replies_inline: ClassVar[bool] = False
    """True when replies travel back in the inbound request's response (REST, web chat)."""
    sends_files: ClassVar[bool] = False
    """True when :meth:`send` delivers a message's ``attachments`` (files kept by
    ``bot.files``): an agent's files then reach the customer."""
    pushes: ClassVar[bool] = True
    """True when :meth:`send` reaches the customer outside their own turns (an agent's
    reply during a handoff): Telegram, and the web chat's live stream; not REST."""

    def __init__(self) -> None:
        self._handler: MessageHandler | None = None

    def attach(self, handler: MessageHandler) -> None:
        """Connect the channel to the core; called once, before :meth:`start`."""
        self._handler = handler

    @property
    def handler(self) -> MessageHandler:
        """The core's entry point; ``KefuError`` before :meth:`attach`."""
        if self._handler is None:
            raise KefuError(f"channel {self.name!r} is not attached to a message handler")
        return self._handler

    def routes(self) -> Sequence[BaseRoute]:
        """HTTP routes this channel mounts in kefu's server (webhooks, pages)."""
        return ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin receiving (register a webhook, start polling). Default: nothing to do."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop receiving and release connections. Default: nothing to do."""

    def deliveries(self, message: BotMessage) -> list[BotMessage]:
        """The parts of ``message`` this platform takes in separate calls (a long text cut
        in pieces, say). The core stores and retries each part on its own, so a retry never
        repeats a part that went out. Default: the message whole."""
        return [message]

    @abstractmethod
    async def send(self, message: BotMessage) -> None:
        """Deliver one message to the platform.

        Raise ``TransientDeliveryError`` (with ``retry_after`` when the platform gave one) for
        failures worth retrying, ``PermanentDeliveryError`` for those that are not.
        """
