"""A conversation's current state: what a turn loads instead of replaying its history.

The store keeps this snapshot beside the append-only event log, so a turn costs the same on
the 1,000th message as on the first.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bot import constants
from bot.dialogue.stack import Frame
from bot.events import BotMessage, Event, UserMessage


@dataclass(kw_only=True)
class ConversationState:
    """Mutable snapshot of one conversation, owned by the turn that holds its lock."""

    conversation_id: str
    channel: str
    sender_id: str
    slots: dict[str, Any] = field(default_factory=dict)
    stack: list[Frame] = field(default_factory=list)
    """The dialogue stack, bottom first (``bot.dialogue.stack``: typed dicts, stored as JSON)."""
    language: str | None = None
    latest_message: dict[str, Any] = field(default_factory=dict)
    """Parse data of the last user message (Rasa's shape: text, intent, entities)."""
    latest_action: str | None = None
    paused: bool = False
    """True while a human agent has the conversation (handoff)."""
    session_started_at: float = 0.0
    last_active_at: float = 0.0
    event_count: int = 0
    version: int = 0
    """Incremented by every save; the store refuses a save based on an older version."""
    transcript: list[tuple[str, str]] = field(default_factory=list)
    """The last few ``(speaker, text)`` utterances, speaker ``user`` or ``bot``, oldest first."""
    profile: dict[str, Any] = field(default_factory=dict)
    """What the channel knows of the customer (name, platform language code)."""
    not_understood: int = 0
    """Messages in a row the bot did not understand (a handoff trigger counts them)."""
    offered_payloads: list[str] = field(default_factory=list)
    """Payloads of the buttons the bot sent in its latest turn: the ones that count as
    payloads when they come back (``bot.dialogue.trust``)."""

    def remember(self, events: list[Event]) -> None:
        """Count ``events`` as appended to the log and the conversation as active now.

        The events themselves live only in the store's log: the state stays small, so a turn
        costs the same however long the conversation has been.
        """
        self.event_count += len(events)
        self.last_active_at = time.time()

    def note_utterances(self, events: list[Event]) -> None:
        """Keep what was said this turn in the bounded ``transcript``."""
        for event in events:
            if isinstance(event, UserMessage | BotMessage) and event.text:
                speaker = "user" if isinstance(event, UserMessage) else "bot"
                self.transcript.append((speaker, event.text[: constants.TRANSCRIPT_CHARS]))
        del self.transcript[: -constants.TRANSCRIPT_TURNS]

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (a deep copy), JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversationState:
        """The state :meth:`to_dict` wrote."""
        state = cls(**data)
        state.transcript = [(str(speaker), str(text)) for speaker, text in state.transcript]
        return state
