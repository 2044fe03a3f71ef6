"""The workers test's action: it records each call and each effect in files, so that the test
can count them.

Each call appends ``<conversation>\\t<message>\\t<idempotency key>`` to the file
``KEFU_TEST_ACTION_LOG`` names, with a single ``write`` in append mode, which the kernel keeps
whole between processes. Its effect happens once per idempotency key, as an action that
dedupes by the key does (``README``, "Custom actions run once"): a file named by the key in
the folder ``<log>.effects``, created by an atomic ``link`` that fails when it exists.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
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
        key = str(tracker.latest_message.get("idempotency_key") or uuid.uuid4().hex)
        log = Path(os.environ["KEFU_TEST_ACTION_LOG"])
        line = f"{tracker.sender_id}\t{text}\t{key}\n".encode()
        descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
        effects = log.with_name(f"{log.name}.effects")
        effects.mkdir(exist_ok=True)
        draft = effects / f".{uuid.uuid4().hex}"
        draft.write_text(f"{tracker.sender_id}\t{text}")
        with contextlib.suppress(FileExistsError):  # done before: a call made again
            os.link(draft, effects / key)
        draft.unlink()
        dispatcher.utter_message(text=f"counted {text}")
        return []
