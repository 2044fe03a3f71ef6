"""A few rasa-sdk actions covering what kefu's action runners must carry faithfully."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection


class ActionRememberOrder(Action):
    """Sets slots and utters a domain response with text and buttons."""

    def name(self) -> str:
        return "action_remember_order"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(
            response="utter_order_saved",
            text="Order 42 saved.",
            buttons=[{"title": "Track it", "payload": "/track_order"}],
        )
        return [SlotSet("order_id", "42"), SlotSet("order_status", "shipped")]


class ActionEcho(Action):
    """Reports what it read from the tracker and the domain."""

    def name(self) -> str:
        return "action_echo"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        seen = [
            tracker.sender_id,
            str(tracker.get_slot("order_id")),
            tracker.latest_message["text"],
            str(tracker.latest_message["intent"].get("name")),
            str(tracker.get_latest_input_channel()),
            ",".join(sorted(domain.get("slots", {}))),
        ]
        dispatcher.utter_message(text="|".join(seen))
        return [SlotSet("echoed", True)]


class ActionFail(Action):
    def name(self) -> str:
        return "action_fail"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        raise RuntimeError("inventory database is down")


class ActionReject(Action):
    def name(self) -> str:
        return "action_reject"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        raise ActionExecutionRejection(self.name(), "not while an order is open")


class ActionNotJson(Action):
    """Returns a slot value no JSON encoder accepts."""

    def name(self) -> str:
        return "action_not_json"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return [SlotSet("when", object())]


class ActionReturnsNumber(Action):
    def name(self) -> str:
        return "action_returns_number"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> Any:
        return 42


class ActionSlow(Action):
    """Sleeps for the ``delay`` slot's seconds without blocking the loop."""

    def name(self) -> str:
        return "action_slow"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        await asyncio.sleep(float(tracker.get_slot("delay") or 0))
        dispatcher.utter_message(text="done")
        return []


class ActionSlowSync(Action):
    """Blocks for the ``delay`` slot's seconds, as a synchronous database call would."""

    def name(self) -> str:
        return "action_slow_sync"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        time.sleep(float(tracker.get_slot("delay") or 0))
        return []


class ActionSayKey(Action):
    """Says the idempotency key its call carries (``tracker.latest_message``)."""

    def name(self) -> str:
        return "action_say_key"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=str(tracker.latest_message.get("idempotency_key")))
        return []
