"""One turn's working set: the state it mutates and the events and messages it produces."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.domain import Domain
from bot.events import AllSlotsReset, BotMessage, Event, SlotSet
from bot.flows.model import FlowsList
from bot.journal import TurnJournal
from bot.privacy import redact, redact_bot_message
from bot.state import ConversationState


@dataclass
class Turn:
    """Everything the dialogue manager touches during one turn.

    Slot changes go through :meth:`set_slot` so the state, the event log and the conditions
    always agree.
    """

    state: ConversationState
    domain: Domain
    flows: FlowsList
    parse: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    messages: list[BotMessage] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    earlier_events: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None
    """Loads the conversation's latest stored events, for actions that read ``tracker.events``."""
    journal: TurnJournal | None = None
    """Where the turn of a customer message with an id records its custom actions' results."""
    llm_deadline: float | None = None
    """``time.monotonic()`` instant by which this turn's LLM calls must be done (set by the
    first one, so a turn asking twice still answers within the LLM timeout)."""

    async def recent_events(self) -> list[dict[str, Any]]:
        """The latest events as Rasa dicts: stored ones, then this turn's so far."""
        earlier = await self.earlier_events() if self.earlier_events is not None else []
        return earlier + [e.to_dict() for e in self.events]

    @property
    def language(self) -> str:
        """The conversation's language, the domain's default until one is chosen."""
        return self.state.language or self.domain.default_language

    @property
    def channel(self) -> str:
        """The channel the conversation is on."""
        return self.state.channel

    def slots(self) -> dict[str, Any]:
        """Every domain slot (None when unset) overlaid with the conversation's values."""
        values = {name: slot.initial_value for name, slot in self.domain.slots.items()}
        values.update(self.state.slots)
        return values

    def set_slot(self, name: str, value: Any) -> None:
        """Set a slot (card numbers masked), recording ``SlotSet`` only when it changes."""
        value = redact(value)
        if self.state.slots.get(name) == value and name in self.state.slots:
            return
        self.state.slots[name] = value
        self.events.append(SlotSet(name=name, value=value))

    def reset_all_slots(self) -> None:
        """Put every slot back to its initial value, recording ``AllSlotsReset``."""
        self.state.slots = {
            name: slot.initial_value
            for name, slot in self.domain.slots.items()
            if slot.initial_value is not None
        }
        self.events.append(AllSlotsReset())

    def emit(self, event: Event) -> None:
        """Add an event (an action's, say) to the turn, card numbers masked."""
        self.events.append(redact(event))

    def say(self, message: BotMessage) -> None:
        """Add a message to the turn, card numbers masked: it is stored and sent as it is here."""
        message = redact_bot_message(message)
        self.messages.append(message)
        self.events.append(message)
