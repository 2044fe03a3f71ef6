"""Custom actions of the minimal test project."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ActionCheckOrder(Action):
    """Orders whose number starts with A have shipped; the others are pending."""

    def name(self) -> str:
        return "action_check_order"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        order_id = str(tracker.get_slot("order_id") or "")
        return [SlotSet("order_status", "shipped" if order_id.startswith("A") else "pending")]
