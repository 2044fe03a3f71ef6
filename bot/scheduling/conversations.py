"""What scheduled work needs of the core: the conversation turn, reached through one port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from bot.events import BotMessage, Event, UserMessage
from bot.state import ConversationState

if TYPE_CHECKING:
    from bot.dialogue.turn import Turn

Change = Callable[["Turn"], Awaitable[None]]
"""A job's change to a conversation: edits ``turn.state``, emits events, says messages."""
TurnListener = Callable[[ConversationState, list[Event]], Awaitable[None]]
"""Told of every saved customer turn: the state after it and its events."""


class Conversations(Protocol):
    """The turn runner as scheduled work sees it (``bot.turns.TurnRunner``)."""

    async def update(
        self, conversation_id: str, change: Change, *, once_key: str | None = None
    ) -> list[BotMessage] | None:
        """Apply ``change`` under the conversation's lock, save it with its outbox, deliver;
        None when the conversation is unknown or ``once_key`` was applied before."""
        ...

    async def process(self, message: UserMessage, *, trusted: bool = False) -> Any:
        """Run a customer turn (a reminder's intent arrives as one, ``trusted``: its payload
        with entities counts though no button offered it)."""
        ...

    def add_listener(self, listener: TurnListener) -> None:
        """Be told of every saved customer turn."""
        ...
