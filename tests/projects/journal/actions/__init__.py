"""The action journal tests' actions: each run is a line in the file ``KEFU_TEST_ACTION_LOG``
names (``<action>\\t<conversation>\\t<message>\\t<idempotency key>``), written with one ``write``
in append mode, which the kernel keeps whole between processes.

``action_receipt`` then waits while the file ``KEFU_TEST_HOLD`` names exists: the test kills the
worker there, after ``action_charge`` returned and before the turn was saved.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

HOLD_SECONDS = 20.0
"""The longest ``action_receipt`` waits for the hold file to go."""


def _record(action: str, tracker: Tracker) -> str:
    text = str(tracker.latest_message.get("text") or "")
    key = str(tracker.latest_message.get("idempotency_key"))
    line = f"{action}\t{tracker.sender_id}\t{text}\t{key}\n".encode()
    descriptor = os.open(
        os.environ["KEFU_TEST_ACTION_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return text


class ActionCharge(Action):
    """Records its run and answers ``charged <message>``."""

    def name(self) -> str:
        return "action_charge"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        text = _record(self.name(), tracker)
        dispatcher.utter_message(text=f"charged {text}")
        return [{"event": "slot", "name": "charged", "value": text}]


class ActionReceipt(Action):
    """Records its run, waits while the hold file exists, answers ``receipt <message>``."""

    def name(self) -> str:
        return "action_receipt"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        text = _record(self.name(), tracker)
        hold = os.environ.get("KEFU_TEST_HOLD", "")
        deadline = time.monotonic() + HOLD_SECONDS
        while hold and os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.02)
        dispatcher.utter_message(text=f"receipt {text}")
        return []
