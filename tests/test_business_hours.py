"""Business hours: parsing, opening times across zones and holidays, and a handoff outside them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from bot.app import App
from bot.errors import SettingsError
from bot.events import HandoffRequested, UserMessage
from bot.hours import BusinessHours, HoursError
from bot.project import load_project
from bot.settings import Settings
from bot.state import ConversationState

SHANGHAI = "Asia/Shanghai"
WEEKDAYS = "mon-fri 09:00-18:00; sat 10:00-14:00"


def at(text: str) -> float:
    """An instant written in Shanghai time."""
    return datetime.fromisoformat(f"{text}+08:00").timestamp()


@pytest.fixture
def hours() -> BusinessHours:
    return BusinessHours.parse(WEEKDAYS, timezone=SHANGHAI, holidays=["2026-03-04"])


def test_open_and_closed_in_the_shops_time_zone(hours: BusinessHours) -> None:
    assert hours.is_open(at("2026-03-02T09:00"))  # Monday, opening minute
    assert hours.is_open(at("2026-03-02T17:59"))
    assert not hours.is_open(at("2026-03-02T18:00"))  # the end is exclusive
    assert not hours.is_open(at("2026-03-02T08:59"))
    assert hours.is_open(at("2026-03-07T13:00"))  # Saturday
    assert not hours.is_open(at("2026-03-07T15:00"))
    assert not hours.is_open(at("2026-03-08T12:00"))  # Sunday
    assert not hours.is_open(at("2026-03-04T12:00"))  # a holiday on a Wednesday
    # 02:00 UTC on Monday is 10:00 in Shanghai
    assert hours.is_open(datetime(2026, 3, 2, 2, 0, tzinfo=UTC).timestamp())


def test_next_opening_skips_nights_weekends_and_holidays(hours: BusinessHours) -> None:
    assert hours.describe_opening(at("2026-03-02T20:00")) == "2026-03-03 09:00 (Asia/Shanghai)"
    assert hours.describe_opening(at("2026-03-03T19:00")) == "2026-03-05 09:00 (Asia/Shanghai)"
    assert hours.describe_opening(at("2026-03-07T15:00")) == "2026-03-09 09:00 (Asia/Shanghai)"
    assert hours.describe_opening(at("2026-03-06T07:00")) == "2026-03-06 09:00 (Asia/Shanghai)"
    opening = hours.next_opening(at("2026-03-02T10:00"))
    assert opening is not None and opening.timestamp() == at("2026-03-02T10:00")


def test_all_day_and_until_midnight() -> None:
    always = BusinessHours.parse("mon-sun 00:00-24:00")
    assert always.is_open(at("2026-03-08T23:59"))
    evenings = BusinessHours.parse("fri 18:00-00:00", timezone=SHANGHAI)
    assert evenings.is_open(at("2026-03-06T23:30"))
    assert not evenings.is_open(at("2026-03-06T17:00"))


@pytest.mark.parametrize(
    ("text", "zone", "holidays", "part", "message"),
    [
        ("mon-fri 9-18", "UTC", [], "hours", "not like"),
        ("mon-fri 18:00-09:00", "UTC", [], "hours", "after the start"),
        ("fri-mon 09:00-18:00", "UTC", [], "hours", "week order"),
        ("mo 09:00-18:00", "UTC", [], "hours", "not like"),
        ("xyz 09:00-18:00", "UTC", [], "hours", "not a day"),
        ("mon 09:00-25:00", "UTC", [], "hours", "time of day"),
        ("", "UTC", [], "hours", "no opening hours"),
        ("mon 09:00-18:00", "Mars/Olympus", [], "timezone", "unknown time zone"),
        ("mon 09:00-18:00", "UTC", ["Christmas"], "holidays", "not a date"),
    ],
)
def test_bad_hours_say_what_is_wrong(
    text: str, zone: str, holidays: list[str], part: str, message: str
) -> None:
    with pytest.raises(HoursError, match=message) as caught:
        BusinessHours.parse(text, timezone=zone, holidays=holidays)
    assert caught.value.part == part


def test_settings_read_business_hours_and_name_a_bad_one() -> None:
    settings = Settings.from_env(
        {
            "KEFU_BUSINESS_HOURS": WEEKDAYS,
            "KEFU_BUSINESS_TIMEZONE": SHANGHAI,
            "KEFU_HOLIDAYS": "2026-03-04, 2026-10-01",
        },
        env_file=None,
    )
    assert settings.business_hours is not None
    assert not settings.business_hours.is_open(at("2026-10-01T12:00"))
    assert Settings.from_env({}, env_file=None).business_hours is None
    for environ, name in [
        ({"KEFU_BUSINESS_HOURS": "weekdays"}, "KEFU_BUSINESS_HOURS"),
        ({"KEFU_BUSINESS_HOURS": WEEKDAYS, "KEFU_BUSINESS_TIMEZONE": "Nowhere"}, "TIMEZONE"),
        ({"KEFU_BUSINESS_HOURS": WEEKDAYS, "KEFU_HOLIDAYS": "someday"}, "KEFU_HOLIDAYS"),
        ({"KEFU_HOLIDAYS": "2026-01-01"}, "KEFU_BUSINESS_HOURS"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env(environ, env_file=None)


# --- a handoff outside business hours ---------------------------------------------------------


class QueueingDesk:
    """A desk that queues every handoff (the ``HandoffDesk`` port), recording what it got."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.forwarded: list[str] = []

    async def request_handoff(
        self, *, conversation_id: str, reason: str, state: ConversationState
    ) -> bool:
        self.queued.append(conversation_id)
        return True

    async def forward(self, message: UserMessage) -> None:
        self.forwarded.append(message.text)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(at("2026-03-07T20:00"), tick=False) as traveller:  # Saturday night
        yield traveller


async def test_a_handoff_outside_hours_is_queued_and_told_when_staff_are_back(
    tmp_path: Path, hours: BusinessHours, clock: time_machine.Coordinates
) -> None:
    root = tmp_path / "project"
    shutil.copytree(Path(__file__).parent / "projects" / "scheduled", root)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'kefu.db'}", business_hours=hours)
    desk = QueueingDesk()
    agent = await App.create(load_project(root), settings=settings, desk=desk)
    try:
        message = {"channel": "rest", "conversation_id": "rest:night", "sender_id": "night"}
        await agent.turns.process(UserMessage(text="hi", **message))
        result = await agent.turns.process(UserMessage(text="human", **message))
        assert any(isinstance(e, HandoffRequested) for e in result.events)
        assert [m.text for m in result.messages] == [
            "Our team is away right now and back at 2026-03-09 09:00 (Asia/Shanghai). Your "
            "request is in their queue: write your message here and they will read it when "
            "they are back."
        ]
        assert desk.queued == ["rest:night"]
        await agent.turns.process(UserMessage(text="My parcel KF-9 arrived broken.", **message))
        assert desk.forwarded == ["My parcel KF-9 arrived broken."]

        clock.move_to(datetime.fromtimestamp(at("2026-03-09T10:00"), UTC))  # Monday morning
        other = {"channel": "rest", "conversation_id": "rest:day", "sender_id": "day"}
        await agent.turns.process(UserMessage(text="hi", **other))
        result = await agent.turns.process(UserMessage(text="human", **other))
        assert [m.response for m in result.messages] == ["utter_human_handoff_requested"]
    finally:
        await agent.close()
