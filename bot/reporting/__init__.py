"""The shop's figures: per-conversation facts kept from the event log, and what is asked of them."""

from bot.reporting.facts import ConversationFacts, UnknownMessage, summarize
from bot.reporting.figures import Figures, Query
from bot.reporting.rollup import Reporting

__all__ = ["ConversationFacts", "Figures", "Query", "Reporting", "UnknownMessage", "summarize"]
