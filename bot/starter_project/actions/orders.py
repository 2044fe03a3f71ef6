"""Order look-up: replace ``ORDERS`` with a call to your shop's API."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

ORDERS = {"A-1001": "shipped", "A-1002": "processing"}


class ActionCheckOrderStatus(Action):
    """Sets ``order_status`` from the order number the customer gave."""

    def name(self) -> str:
        """The name flows use in their ``action`` steps."""
        return "action_check_order_status"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Read the slot, normalise the number (``a1001`` is ``A-1001``), set the status."""
        number = str(tracker.get_slot("order_number") or "").upper()
        if "-" not in number and len(number) > 1:
            number = f"{number[0]}-{number[1:]}"
        return [SlotSet("order_status", ORDERS.get(number, "unknown"))]
