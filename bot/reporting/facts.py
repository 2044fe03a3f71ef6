"""One conversation's facts, read from its events: what the figures are computed from.

Works on the stored JSON dicts (Rasa's shapes), not on records: the rollup reads many
conversations at once and needs only a few fields of each event. The event names are the
records' own (``CsatAnswered.event``...), so the figures follow ``bot/events.py``. A
conversation's CSAT is its last answer. A survey saves one ``csat_answer`` (its comment is a
``csat_comment`` of its own, not an answer); a conversation stored before that has the comment
as a second ``csat_answer`` with the same score, which changes nothing here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.events import (
    AgentJoined,
    BotMessage,
    CsatAnswered,
    FlowCancelled,
    FlowCompleted,
    FlowStarted,
    HandoffRequested,
    HandoffResolved,
    UserMessage,
)
from bot.privacy import mask_personal_data

UNKNOWN_INTENTS = frozenset({"out_of_scope", "nlu_fallback"})
"""Intents that mean nothing understood the message."""
CANNOT_HANDLE = "pattern_cannot_handle"
CONFIRM_INTENTS = frozenset({"affirm", "thank", "thanks", "thank_you", "goodbye", "bye"})
"""A customer's last message with one of these intents confirms the bot's answer helped."""
ASKED = "asked"
"""The handoff reason recorded when the desk event gives none."""


@dataclass(frozen=True)
class UnknownMessage:
    """A customer message nothing understood (masked), with where and when it was said."""

    conversation_id: str
    timestamp: float
    text: str
    language: str


@dataclass
class ConversationFacts:
    """What the figures need of one conversation (times are epoch seconds)."""

    conversation_id: str
    channel: str
    language: str = ""
    started_at: float = 0.0
    last_active_at: float = 0.0
    user_messages: int = 0
    last_user_at: float | None = None
    last_bot_at: float | None = None
    confirmed: bool = False
    last_not_understood: bool = False
    open_flows: set[str] = field(default_factory=set)
    """Customer flows started and neither completed nor cancelled: the customer gave up mid-task."""
    handoff_at: float | None = None
    handoff_reason: str | None = None
    claimed_at: float | None = None
    resolved_at: float | None = None
    csat: int | None = None
    intents: Counter[str] = field(default_factory=Counter)
    flows_started: Counter[str] = field(default_factory=Counter)
    flows_completed: Counter[str] = field(default_factory=Counter)
    flows_cancelled: Counter[str] = field(default_factory=Counter)
    unknown: list[UnknownMessage] = field(default_factory=list)

    @property
    def day(self) -> str:
        """The UTC day the conversation started, ``YYYY-MM-DD``."""
        return day_of(self.started_at)


def day_of(timestamp: float) -> str:
    """The UTC day of ``timestamp`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def midnight(day: str) -> float:
    """The epoch seconds at which the UTC day ``YYYY-MM-DD`` begins."""
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def summarize(
    conversation_id: str, channel: str, events: Iterable[dict[str, Any]]
) -> ConversationFacts:
    """The facts of one conversation from its events in order."""
    facts = ConversationFacts(conversation_id=conversation_id, channel=channel)
    pending: dict[str, Any] | None = None  # the last customer message, until its turn ends
    for event in events:
        kind = event.get("event")
        ts = float(event.get("timestamp") or 0.0)
        if not facts.started_at:
            facts.started_at = ts
        facts.last_active_at = max(facts.last_active_at, ts)
        if kind == UserMessage.event:
            pending = _user(facts, event, ts)
        elif kind == BotMessage.event:
            facts.last_bot_at = ts
        elif kind == FlowStarted.event:
            flow = str(event.get("flow_id", ""))
            facts.flows_started[flow] += 1
            if not flow.startswith("pattern_"):
                facts.open_flows.add(flow)
            if flow == CANNOT_HANDLE and pending is not None:
                _not_understood(facts, pending)
                pending = None
        elif kind == FlowCompleted.event:
            flow = str(event.get("flow_id", ""))
            facts.flows_completed[flow] += 1
            facts.open_flows.discard(flow)
        elif kind == FlowCancelled.event:
            flow = str(event.get("flow_id", ""))
            facts.flows_cancelled[flow] += 1
            facts.open_flows.discard(flow)
        elif kind == HandoffRequested.event and facts.handoff_at is None:
            facts.handoff_at = ts
            facts.handoff_reason = str(event.get("reason") or ASKED)
        elif kind == AgentJoined.event and facts.handoff_at is not None:
            if facts.claimed_at is None:
                facts.claimed_at = ts
        elif kind == HandoffResolved.event and facts.handoff_at is not None:
            facts.resolved_at = ts
        elif kind == CsatAnswered.event and isinstance(event.get("score"), int):
            facts.csat = int(event["score"])
    return facts


def _user(facts: ConversationFacts, event: dict[str, Any], ts: float) -> dict[str, Any] | None:
    facts.user_messages += 1
    facts.last_user_at = ts
    facts.last_not_understood = False
    language = event.get("language")
    if language and not facts.language:
        facts.language = str(language)
    intent = (event.get("parse_data") or {}).get("intent") or {}
    name = intent.get("name") if isinstance(intent, dict) else None
    facts.confirmed = name in CONFIRM_INTENTS
    if isinstance(name, str) and name:
        facts.intents[name] += 1
        if name in UNKNOWN_INTENTS:
            _not_understood(facts, event)
            return None
    return event


def _not_understood(facts: ConversationFacts, event: dict[str, Any]) -> None:
    facts.last_not_understood = True
    text = str(event.get("text") or "").strip()
    if text:
        facts.unknown.append(
            UnknownMessage(
                conversation_id=facts.conversation_id,
                timestamp=float(event.get("timestamp") or 0.0),
                text=mask_personal_data(text),
                language=str(event.get("language") or facts.language or ""),
            )
        )
