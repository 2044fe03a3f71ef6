"""Custom actions of the scheduled-work test project: they set and cancel a reminder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ReminderCancelled, ReminderScheduled
from rasa_sdk.executor import CollectingDispatcher

REMINDER_DELAY = timedelta(minutes=10)


class ActionSetReminder(Action):
    """Reminds the customer of their basket ten minutes from now."""

    def name(self) -> str:
        return "action_set_reminder"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        when = datetime.now(UTC) + REMINDER_DELAY
        return [
            ReminderScheduled(
                "reminder_due",
                when,
                entities={"order_id": "KF-7"},
                name="basket",
                kill_on_user_message=False,
            )
        ]


class ActionForgetReminder(Action):
    """Cancels the basket reminder."""

    def name(self) -> str:
        return "action_forget_reminder"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return [ReminderCancelled(name="basket")]


class ActionSetSoftReminder(Action):
    """Rasa's default reminder: a message from the customer before it fires cancels it."""

    def name(self) -> str:
        return "action_set_soft_reminder"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        when = datetime.now(UTC) + REMINDER_DELAY
        return [ReminderScheduled("reminder_due", when, name="soft")]
