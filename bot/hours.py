"""Business hours: when the shop's staff answer handoffs (days, hours, time zone, holidays).

Written as ``KEFU_BUSINESS_HOURS="mon-fri 09:00-18:00; sat 10:00-14:00"`` with
``KEFU_BUSINESS_TIMEZONE`` (an IANA name, default UTC) and ``KEFU_HOLIDAYS`` (ISO dates,
comma-separated). Outside them a handoff is still queued, and the customer is told when staff
are back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["BusinessHours", "HoursError"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(
    r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
    r"(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)
_LOOKAHEAD_DAYS = 400
"""How far ahead the next opening is looked for (a year of holidays and then some)."""


class HoursError(ValueError):
    """The business hours are written wrongly; ``part`` is ``hours``, ``timezone`` or
    ``holidays``, the message says what is wrong."""

    def __init__(self, message: str, *, part: str = "hours") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours per weekday (Monday = 0) in one time zone, closed on holidays."""

    timezone: str = "UTC"
    weekly: Mapping[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    """Weekday → its opening periods, start inclusive, end exclusive (``24:00`` = midnight)."""
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls, text: str, *, timezone: str = "UTC", holidays: Iterable[str] = ()
    ) -> BusinessHours:
        """Read ``"mon-fri 09:00-18:00; sat 10:00-14:00"``; ``HoursError`` names what is wrong."""
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise HoursError(f"unknown time zone {timezone!r}", part="timezone") from None
        weekly: dict[int, list[tuple[time, time]]] = {}
        for part in (p.strip().lower() for p in text.split(";")):
            if not part:
                continue
            match = _PART.match(part)
            if match is None:
                raise HoursError(f"{part!r} is not like 'mon-fri 09:00-18:00'")
            start, end = _clock(match["start"]), _clock(match["end"])
            if end != time(0) and end <= start:
                raise HoursError(f"{part!r}: the end must come after the start")
            for day in _days(match["days"]):
                weekly.setdefault(day, []).append((start, end))
        if not weekly:
            raise HoursError("no opening hours given")
        days_off: set[date] = set()
        for value in holidays:
            try:
                days_off.add(date.fromisoformat(value.strip()))
            except ValueError:
                raise HoursError(
                    f"holiday {value!r} is not a date like 2026-12-25", part="holidays"
                ) from None
        return cls(
            timezone=timezone,
            weekly={day: tuple(sorted(periods)) for day, periods in weekly.items()},
            holidays=frozenset(days_off),
        )

    @property
    def zone(self) -> ZoneInfo:
        """The shop's time zone."""
        return ZoneInfo(self.timezone)

    def is_open(self, at: float) -> bool:
        """Whether staff are at work at ``at`` (seconds since the epoch)."""
        moment = datetime.fromtimestamp(at, self.zone)
        if moment.date() in self.holidays:
            return False
        now = moment.time()
        return any(
            start <= now and (end == time(0) or now < end)
            for start, end in self.weekly.get(moment.weekday(), ())
        )

    def next_opening(self, at: float) -> datetime | None:
        """When staff are next at work after ``at`` (``at`` itself when open), in the shop's
        time zone; None when they never are."""
        if self.is_open(at):
            return datetime.fromtimestamp(at, self.zone)
        moment = datetime.fromtimestamp(at, self.zone)
        for offset in range(_LOOKAHEAD_DAYS):
            day = moment.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for start, _ in self.weekly.get(day.weekday(), ()):
                opening = datetime.combine(day, start, self.zone)
                if opening > moment:
                    return opening
        return None

    def describe_opening(self, at: float) -> str:
        """The next opening as ``2026-03-02 09:00 (Asia/Shanghai)``, for the customer."""
        opening = self.next_opening(at)
        if opening is None:
            return ""
        return f"{opening:%Y-%m-%d %H:%M} ({self.timezone})"


def _clock(text: str) -> time:
    hours, minutes = (int(n) for n in text.split(":"))
    if hours == 24 and minutes == 0:
        return time(0)
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise HoursError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def _days(spec: str) -> list[int]:
    days: list[int] = []
    for item in spec.split(","):
        first, _, last = item.partition("-")
        for name in (first, last or first):
            if name not in DAYS:
                raise HoursError(f"{name!r} is not a day (mon, tue, ... sun)")
        start, end = DAYS.index(first), DAYS.index(last or first)
        if end < start:
            raise HoursError(f"{item!r}: write the days in week order, mon to sun")
        days.extend(range(start, end + 1))
    return days
