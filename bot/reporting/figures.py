"""The dashboard's figures, computed from the rollup's rows: definitions live here, once."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, NamedTuple

from bot import constants
from bot.reporting.facts import day_of

if TYPE_CHECKING:
    from bot.reporting.usage import LLMDay

__all__ = ["Bucket", "Figures", "Period", "Query", "compute", "percentile"]


@dataclass(frozen=True)
class Query:
    """Which conversations the figures cover: started in [since, until), one channel or all.

    The figures count whole UTC days (see :meth:`days`); the lists of conversations and of
    unknown messages keep the exact instants.
    """

    since: float
    until: float
    channel: str = ""
    language: str = ""
    group: str = "day"
    """``day`` or ``week`` (weeks start on Monday)."""
    window: float = constants.DEFAULT_CONTAINMENT_WINDOW
    """Seconds of customer silence after which an answered conversation counts as resolved."""

    def days(self) -> tuple[str, str]:
        """The first and last UTC days (``YYYY-MM-DD``) the period touches: the figures cover
        them whole (the dashboard's periods start at midnight UTC and end now)."""
        last = math.nextafter(self.until, -math.inf)  # ``until`` itself is excluded
        return day_of(self.since), day_of(max(self.since, last))


class Bucket(NamedTuple):
    """Conversations of one day, channel and language, counted by the database."""

    day: str
    channel: str
    language: str
    conversations: int
    with_messages: int
    settled: int
    """Contained, or known not to be (handed off, or left unresolved past the window)."""
    contained: int
    open: int
    handoffs: int
    resolved_handoffs: int
    not_understood: int


@dataclass
class Period:
    """The headline counts of one day or week."""

    label: str
    conversations: int = 0
    contained: int = 0
    settled: int = 0
    handoffs: int = 0
    llm_calls: int = 0
    llm_failures: int = 0
    llm_tokens: int = 0

    @property
    def containment(self) -> float | None:
        """Settled conversations the bot handled alone, as a share."""
        return self.contained / self.settled if self.settled else None

    @property
    def handoff_rate(self) -> float | None:
        """Conversations handed to an agent, as a share."""
        return self.handoffs / self.conversations if self.conversations else None


@dataclass
class Figures:
    """Everything the dashboard shows for one query. Rates are fractions (None: no data)."""

    conversations: int = 0
    with_messages: int = 0
    contained: int = 0
    settled: int = 0
    pending: int = 0
    handoffs: int = 0
    handoff_reasons: list[tuple[str, int]] = field(default_factory=list)
    claim_seconds: tuple[float | None, float | None] = (None, None)
    handling_seconds: tuple[float | None, float | None] = (None, None)
    resolved_handoffs: int = 0
    csat_answers: int = 0
    csat_distribution: dict[int, int] = field(default_factory=dict)
    not_understood: int = 0
    intents: list[tuple[str, int]] = field(default_factory=list)
    flows: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(flow, started, completed, cancelled), customer flows only (patterns apart)."""
    periods: list[Period] = field(default_factory=list)
    channels: list[tuple[str, int]] = field(default_factory=list)
    languages: list[tuple[str, int]] = field(default_factory=list)
    llm_calls: int = 0
    """Calls to the language model on the period's days (the language filter does not apply:
    a call is counted by the day it was made and its turn's channel)."""
    llm_failures: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0

    @property
    def llm_failure_rate(self) -> float | None:
        """LLM calls that failed, as a share; None without calls."""
        return self.llm_failures / self.llm_calls if self.llm_calls else None

    @property
    def containment(self) -> float | None:
        """Contained conversations over settled ones (contained, or known not to be)."""
        return self.contained / self.settled if self.settled else None

    @property
    def handoff_rate(self) -> float | None:
        """Conversations handed to an agent, as a share."""
        return self.handoffs / self.conversations if self.conversations else None

    @property
    def csat_response_rate(self) -> float | None:
        """Survey answers over resolved handoffs (the survey follows a resolved handoff)."""
        return self.csat_answers / self.resolved_handoffs if self.resolved_handoffs else None

    @property
    def csat_average(self) -> float | None:
        """The mean satisfaction score; None without answers."""
        total = sum(score * n for score, n in self.csat_distribution.items())
        return total / self.csat_answers if self.csat_answers else None


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` (0-1) percentile by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compute(
    buckets: list[Bucket],
    named: dict[str, list[tuple[str, int]]],
    *,
    query: Query,
    llm: Sequence[LLMDay] = (),
    claim_seconds: tuple[float | None, float | None],
    handling_seconds: tuple[float | None, float | None],
    reasons: dict[str, int],
    csat: dict[int, int],
) -> Figures:
    """Fold the database's counts into the figures: totals, periods, rankings, percentiles.

    ``claim_seconds`` and ``handling_seconds`` are the handoffs' p50 and p90 (seconds),
    ``named`` the summed intent and flow counts by kind, ``llm`` the LLM calls per day.
    """
    out = Figures()
    periods: dict[str, Period] = {}
    channels: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for b in buckets:
        label = _period_label(b.day, query.group)
        period = periods.get(label) or periods.setdefault(label, Period(label))
        period.conversations += b.conversations
        period.contained += b.contained
        period.settled += b.settled
        period.handoffs += b.handoffs
        channels[b.channel] += b.conversations
        languages[b.language or "?"] += b.conversations
        out.conversations += b.conversations
        out.with_messages += b.with_messages
        out.settled += b.settled
        out.contained += b.contained
        out.pending += b.open
        out.handoffs += b.handoffs
        out.resolved_handoffs += b.resolved_handoffs
        out.not_understood += b.not_understood or 0
    for day in llm:
        label = _period_label(day.day, query.group)
        period = periods.get(label) or periods.setdefault(label, Period(label))
        period.llm_calls += day.calls
        period.llm_failures += day.failures
        period.llm_tokens += day.prompt_tokens + day.completion_tokens
        out.llm_calls += day.calls
        out.llm_failures += day.failures
        out.llm_prompt_tokens += day.prompt_tokens
        out.llm_completion_tokens += day.completion_tokens
    out.csat_answers = sum(csat.values())
    out.csat_distribution = dict(sorted(csat.items()))
    out.handoff_reasons = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    out.claim_seconds = claim_seconds
    out.handling_seconds = handling_seconds
    out.periods = [periods[k] for k in sorted(periods)]
    out.channels = sorted(channels.items(), key=lambda kv: (-kv[1], kv[0]))
    out.languages = sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))
    out.intents = named.get("intent", [])
    completed = dict(named.get("flow_completed", []))
    cancelled = dict(named.get("flow_cancelled", []))
    out.flows = [
        (flow, n, completed.get(flow, 0), cancelled.get(flow, 0))
        for flow, n in named.get("flow_started", [])
        if not flow.startswith("pattern_")
    ]
    return out


def _period_label(day: str, group: str) -> str:
    if group != "week":
        return day
    start = date.fromisoformat(day)
    return (start - timedelta(days=start.weekday())).isoformat()
