"""Rasa's tracker JSON for a conversation: what the ``ActionRunner`` port hands an action.

The executor builds it from the conversation's state (not its whole history) and the latest
stored events; either runner, in-process or remote, passes it on as rasa-sdk's ``Tracker``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.state import ConversationState

__all__ = ["tracker_for"]


def tracker_for(
    state: ConversationState,
    *,
    events: Sequence[dict[str, Any]] = (),
    domain_slots: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Rasa's tracker JSON for ``state``, as ``rasa_sdk.Tracker.from_dict`` reads it.

    Every slot in ``domain_slots`` is present (``None`` when unset), as Rasa sends it, so an
    action can tell "unset" from "not a slot". User events get Rasa's ``input_channel`` so that
    ``tracker.get_latest_input_channel()`` works.
    """
    slots: dict[str, Any] = dict.fromkeys(domain_slots or ())
    slots.update(state.slots)
    rasa_events = [_rasa_event(e) for e in events]
    latest_message: dict[str, Any] = {
        "text": None,
        "intent": {},
        "entities": [],
        "intent_ranking": [],
        **state.latest_message,
    }
    return {
        "sender_id": state.conversation_id,
        "slots": slots,
        "latest_message": latest_message,
        "latest_event_time": rasa_events[-1].get("timestamp") if rasa_events else None,
        "events": rasa_events,
        "paused": state.paused,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": state.latest_action,
        "latest_action": {"action_name": state.latest_action},
        "latest_input_channel": state.channel,
        "stack": state.stack,
    }


def _rasa_event(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("event") == "user" and "input_channel" not in event:
        return {**event, "input_channel": event.get("channel")}
    return event
