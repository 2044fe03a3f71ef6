"""The dashboard's figures, computed from the rollup's rows: definitions live here, once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

from bot import constants

__all__ = ["FactRow", "Figures", "Period", "Query", "compute", "percentile"]


@dataclass(frozen=True)
class Query:
    """Which conversations the figures cover: started in [since, until), one channel or all."""

    since: float
    until: float
    channel: str = ""
    language: str = ""
    group: str = "day"
    """``day`` or ``week`` (weeks start on Monday)."""
    window: float = constants.DEFAULT_CONTAINMENT_WINDOW
    """Seconds of customer silence after which an answered conversation counts as resolved."""


class FactRow(NamedTuple):
    """The columns of one conversation the figures read."""

    day: str
    channel: str
    language: str
    last_active_at: float
    user_messages: int
    last_user_at: float | None
    last_bot_at: float | None
    confirmed: int
    last_not_understood: int
    open_flows: int
    handoff_at: float | None
    handoff_reason: str | None
    claimed_at: float | None
    resolved_at: float | None
    csat: int | None
    unknown_count: int


@dataclass
class Period:
    """The headline counts of one day or week."""

    label: str
    conversations: int = 0
    contained: int = 0
    settled: int = 0
    handoffs: int = 0

    @property
    def containment(self) -> float | None:
        return self.contained / self.settled if self.settled else None

    @property
    def handoff_rate(self) -> float | None:
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

    @property
    def containment(self) -> float | None:
        """Contained conversations over settled ones (contained, or known not to be)."""
        return self.contained / self.settled if self.settled else None

    @property
    def handoff_rate(self) -> float | None:
        return self.handoffs / self.conversations if self.conversations else None

    @property
    def csat_response_rate(self) -> float | None:
        """Survey answers over resolved handoffs (the survey follows a resolved handoff)."""
        return self.csat_answers / self.resolved_handoffs if self.resolved_handoffs else None

    @property
    def csat_average(self) -> float | None:
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
    rows: list[FactRow],
    named: dict[str, list[tuple[str, int]]],
    *,
    query: Query,
    now: float,
) -> Figures:
    """The figures of ``rows`` (one per conversation) and the summed counts ``named`` by kind."""
    out = Figures(conversations=len(rows))
    periods: dict[str, Period] = {}
    reasons: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    claims: list[float] = []
    handling: list[float] = []
    csat: Counter[int] = Counter()
    for row in rows:
        label = _period_label(row.day, query.group)
        period = periods.get(label) or periods.setdefault(label, Period(label))
        period.conversations += 1
        channels[row.channel] += 1
        languages[row.language or "?"] += 1
        out.not_understood += row.unknown_count
        if row.user_messages:
            out.with_messages += 1
        verdict = _contained(row, now=now, window=query.window)
        if verdict is None:
            if row.user_messages:
                out.pending += 1
        else:
            out.settled += 1
            period.settled += 1
            if verdict:
                out.contained += 1
                period.contained += 1
        if row.handoff_at is not None:
            out.handoffs += 1
            period.handoffs += 1
            reasons[row.handoff_reason or "asked"] += 1
            if row.claimed_at is not None:
                claims.append(row.claimed_at - row.handoff_at)
                if row.resolved_at is not None:
                    handling.append(row.resolved_at - row.claimed_at)
            if row.resolved_at is not None:
                out.resolved_handoffs += 1
        if row.csat is not None:
            csat[row.csat] += 1
    out.csat_answers = sum(csat.values())
    out.csat_distribution = dict(sorted(csat.items()))
    out.handoff_reasons = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    out.claim_seconds = (percentile(claims, 0.5), percentile(claims, 0.9))
    out.handling_seconds = (percentile(handling, 0.5), percentile(handling, 0.9))
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


def _contained(row: FactRow, *, now: float, window: float) -> bool | None:
    # Same rule as ConversationFacts.contained, on the stored columns.
    if row.handoff_at is not None:
        return False
    if row.user_messages == 0:
        return None
    answered = row.last_bot_at is not None and row.last_bot_at >= (row.last_user_at or 0)
    if row.confirmed and answered:
        return True
    if now - row.last_active_at < window:
        return None
    return answered and not row.last_not_understood and not row.open_flows


def _period_label(day: str, group: str) -> str:
    if group != "week":
        return day
    start = date.fromisoformat(day)
    return (start - timedelta(days=start.weekday())).isoformat()
