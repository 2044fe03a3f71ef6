"""The workers test's action: it records each run in a file, so that the test can count them.

The file is named by ``KEFU_TEST_ACTION_LOG``: each run appends one line, written with a single
``write`` in append mode, which the kernel keeps whole between processes.
"""

from __future__ import annotations

import os
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher


class ActionCount(Action):
    """Records ``<conversation>\\t<message>`` and answers ``counted <message>``."""

    def name(self) -> str:
        return "action_count"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        text = str(tracker.latest_message.get("text") or "")
        line = f"{tracker.sender_id}\t{text}\n".encode()
        descriptor = os.open(
            os.environ["KEFU_TEST_ACTION_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
        dispatcher.utter_message(text=f"counted {text}")
        return []
