"""When a turn should end with a person taking over, beside the customer asking for one.

Three triggers, each with its reason kept on the handoff: an action paused the conversation
(rasa-sdk's ``ConversationPaused``), the bot failed to understand the customer N messages in a
row, and a message scored at or below the sentiment threshold. The sentiment score comes from
the message's parse data (``"sentiment"``) when understanding put one there, else from the
plugged-in :class:`~bot.ports.SentimentScorer`; with neither, that trigger stays off.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.events import BotMessage, ConversationPaused, Event, FlowStarted, HandoffRequested
from bot.ports import SentimentScorer
from bot.state import ConversationState

__all__ = ["NOT_UNDERSTOOD_RESPONSES", "HandoffTriggers"]

NOT_UNDERSTOOD_RESPONSES = frozenset(
    {"utter_cannot_handle", "utter_ask_rephrase", "utter_no_relevant_answer_found"}
)
"""Responses that mean the bot did not understand the message it answered."""


class HandoffTriggers:
    """Decides, after the dialogue ran, whether the turn should hand off and why."""

    def __init__(
        self,
        *,
        not_understood: int,
        sentiment_threshold: float | None = None,
        scorer: SentimentScorer | None = None,
    ) -> None:
        self.not_understood = not_understood
        self.sentiment_threshold = sentiment_threshold
        self.scorer = scorer

    def after_turn(self, state: ConversationState, events: Sequence[Event]) -> str | None:
        """The reason to hand off now, or None. Keeps the not-understood count in ``state``;
        a pause an action asked for is lifted here, for the handoff to pause properly."""
        if any(isinstance(e, HandoffRequested) for e in events):
            state.not_understood = 0
            return None
        if state.paused and any(isinstance(e, ConversationPaused) for e in events):
            state.paused = False
            return f"the action {state.latest_action or 'of the flow'} paused the conversation"
        if _missed(events):
            state.not_understood += 1
        else:
            state.not_understood = 0
        if self.not_understood and state.not_understood >= self.not_understood:
            state.not_understood = 0
            return f"the bot did not understand {self.not_understood} messages in a row"
        score = self._sentiment(state)
        if score is not None and score <= (self.sentiment_threshold or 0.0):
            return f"the customer's sentiment turned negative ({score:.2f})"
        return None

    def _sentiment(self, state: ConversationState) -> float | None:
        if self.sentiment_threshold is None:
            return None
        parsed = state.latest_message.get("sentiment")
        if isinstance(parsed, int | float) and not isinstance(parsed, bool):
            return float(parsed)
        text = state.latest_message.get("text")
        if self.scorer is None or not isinstance(text, str) or not text:
            return None
        return self.scorer.score(text, state.language or "en")


def _missed(events: Sequence[Event]) -> bool:
    return any(
        (isinstance(e, FlowStarted) and e.flow_id == "pattern_cannot_handle")
        or (isinstance(e, BotMessage) and e.response in NOT_UNDERSTOOD_RESPONSES)
        for e in events
    )
