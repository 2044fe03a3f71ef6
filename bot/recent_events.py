"""The latest events of recently active conversations, for rasa-sdk's ``tracker.events``.

Custom actions expect the tracker's recent events; reading them from the log on every action
would cost more than the rest of the turn. The tail kept here is checked against the
conversation's event count, so after another process wrote to the conversation (or a
restart), the tail is simply read again from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bot import constants
from bot.events import Event
from bot.ports import EventLog


@dataclass
class _Tail:
    count: int
    """The conversation's event count this tail is current for."""
    events: list[Event] = field(default_factory=list)
    """Immutable records: turned into Rasa dicts only when an action asks for them."""


class RecentEvents:
    """A bounded LRU of per-conversation event tails."""

    def __init__(
        self,
        store: EventLog,
        *,
        keep: int = constants.TRACKER_EVENTS,
        conversations: int = 1_000,
    ) -> None:
        self._store = store
        self._keep = keep
        self._capacity = conversations
        self._tails: OrderedDict[str, _Tail] = OrderedDict()

    async def get(self, conversation_id: str, event_count: int) -> list[dict[str, Any]]:
        """The latest stored events (at most ``keep``) of a conversation with ``event_count``."""
        tail = self._tails.get(conversation_id)
        if tail is None or tail.count != event_count:
            after = max(0, event_count - self._keep)
            stored = await self._store.events(conversation_id, after=after)
            tail = _Tail(count=event_count, events=[s.event for s in stored])
            self._tails[conversation_id] = tail
            while len(self._tails) > self._capacity:
                self._tails.popitem(last=False)
        self._tails.move_to_end(conversation_id)
        return [e.to_dict() for e in tail.events]

    def extend(self, conversation_id: str, count_before: int, events: list[Event]) -> None:
        """Record a saved turn's events; a tail that was not current is dropped instead."""
        tail = self._tails.get(conversation_id)
        if tail is None:
            return
        if tail.count != count_before:
            del self._tails[conversation_id]
            return
        tail.events.extend(events)
        del tail.events[: -self._keep]
        tail.count += len(events)
