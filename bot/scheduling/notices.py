"""Proactive notices (``POST /api/notify``) and rasa-sdk reminders, as scheduled jobs.

A notice is a text, or a domain response rendered in the customer's language, sent now or at
a time, through the conversation's outbox. A reminder is what a custom action returned as
rasa-sdk's ``ReminderScheduled``: when it fires, its intent (with its entities) runs as a turn
of the conversation, as Rasa documents; ``kill_on_user_msg`` drops it when the customer wrote
after it was set. ``ReminderCancelled`` removes reminders by name, or by intent and entities.
Both are stored jobs: they survive a restart, and each is applied once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import constants
from bot.dialogue.turn import Turn
from bot.events import BotMessage, Event, UnknownEvent, UserMessage
from bot.ports import ConversationRepository, ScheduledJob
from bot.responses import ResponseRenderer
from bot.scheduling.conversations import Conversations
from bot.scheduling.scheduler import Scheduler
from bot.state import ConversationState

log = logging.getLogger(__name__)

NOTICE = "notice"
REMINDER = "reminder"


@dataclass(frozen=True)
class Notice:
    """A notice as it was accepted: its job id, when it goes, and whether it went already."""

    id: str
    at: float
    sent: bool


class Notices:
    """Sends notices and fires reminders through the conversation's turn."""

    def __init__(
        self,
        conversations: Conversations,
        store: ConversationRepository,
        renderer: ResponseRenderer,
    ) -> None:
        self.conversations = conversations
        self.store = store
        self.renderer = renderer
        self.scheduler: Scheduler | None = None

    def install(self, scheduler: Scheduler) -> None:
        """Register the notice and reminder jobs; listen for reminders in customer turns."""
        self.scheduler = scheduler
        # An hour late (kefu was down) a notice or a reminder is still worth it; a day is not.
        grace = constants.NOTICE_MISFIRE_GRACE
        scheduler.register(NOTICE, self.send, misfire_grace=grace)
        scheduler.register(REMINDER, self.remind, misfire_grace=grace)
        self.conversations.add_listener(self.on_turn)

    # --- notices ------------------------------------------------------------------------

    async def notify(
        self,
        conversation_id: str,
        *,
        text: str | None = None,
        response: str | None = None,
        at: float | None = None,
    ) -> Notice:
        """Send now (``at`` None or past) or schedule a notice; one of ``text`` / ``response``."""
        job = ScheduledJob(
            id=f"notice:{uuid.uuid4().hex}",
            kind=NOTICE,
            run_at=time.time() if at is None else at,
            conversation_id=conversation_id,
            data={"text": text, "response": response},
        )
        if job.run_at > time.time() and self.scheduler is not None:
            await self.scheduler.schedule(job)
            return Notice(id=job.id, at=job.run_at, sent=False)
        await self.send(job)
        return Notice(id=job.id, at=time.time(), sent=True)

    async def send(self, job: ScheduledJob) -> None:
        """The notice job: say it in the conversation, once."""
        assert job.conversation_id is not None
        text, response = job.data.get("text"), job.data.get("response")

        async def say(turn: Turn) -> None:
            cid = turn.state.conversation_id
            if not response:
                turn.say(BotMessage(conversation_id=cid, text=str(text)))
                return
            message = self.renderer.render(
                str(response),
                conversation_id=cid,
                slots=turn.slots(),
                language=turn.language,
                channel=turn.channel,
                rng=turn.rng,
            )
            if message is None:
                log.warning("notice %s: response %s is not in the domain", job.id, response)
                return
            turn.say(message)

        said = await self.conversations.update(job.conversation_id, say, once_key=job.id)
        if said is None:
            log.info("notice %s: conversation gone or notice sent before; dropped", job.id)

    # --- reminders ----------------------------------------------------------------------

    async def on_turn(self, state: ConversationState, events: list[Event]) -> None:
        """Schedule or cancel what the turn's custom actions asked for."""
        for event in events:
            if not isinstance(event, UnknownEvent):
                continue
            kind = event.data.get("event")
            if kind == "reminder":
                await self.set_reminder(state, event.data)
            elif kind == "cancel_reminder":
                await self.cancel_reminders(state.conversation_id, event.data)

    async def set_reminder(self, state: ConversationState, data: dict[str, Any]) -> None:
        """Schedule a ``ReminderScheduled`` event's reminder (replacing one of its name)."""
        intent = data.get("intent")
        run_at = _timestamp(data.get("date_time"))
        if not isinstance(intent, str) or not intent or run_at is None or self.scheduler is None:
            log.warning("reminder in %s ignored: bad intent or time", state.conversation_id)
            return
        name = data.get("name") or uuid.uuid4().hex
        cid = state.conversation_id
        await self.scheduler.schedule(
            ScheduledJob(
                id=reminder_id(cid, str(name)),
                kind=REMINDER,
                run_at=run_at,
                conversation_id=cid,
                data={
                    "name": str(name),
                    "intent": intent,
                    "entities": _entities(data.get("entities")),
                    "kill_on_user_msg": data.get("kill_on_user_msg", True) is not False,
                    "channel": state.channel,
                    "sender_id": state.sender_id,
                    "after": state.event_count,
                },
            )
        )

    async def cancel_reminders(self, conversation_id: str, data: dict[str, Any]) -> None:
        """Remove the reminders a ``ReminderCancelled`` event names (by name, or intent and
        entities)."""
        if self.scheduler is None:
            return
        name, intent = data.get("name"), data.get("intent")
        entities = _entities(data.get("entities")) if data.get("entities") else None
        for job in await self.scheduler.jobs(kind=REMINDER, conversation_id=conversation_id):
            if name is not None:
                matches = job.data.get("name") == name
            else:
                matches = (intent is None or job.data.get("intent") == intent) and (
                    entities is None or job.data.get("entities") == entities
                )
            if matches:
                await self.scheduler.cancel(job.id)

    async def remind(self, job: ScheduledJob) -> None:
        """The reminder job: its intent runs as a turn, unless the customer wrote since."""
        assert job.conversation_id is not None
        data = job.data
        if data.get("kill_on_user_msg") and await self._customer_wrote(
            job.conversation_id, int(data.get("after", 0))
        ):
            log.info("reminder %s dropped: the customer wrote after it was set", job.id)
            return
        if await self.store.load(job.conversation_id) is None:
            log.info("reminder %s dropped: its conversation is gone", job.id)
            return
        entities = data.get("entities") or {}
        payload = f"/{data['intent']}" + (json.dumps(entities) if entities else "")
        await self.conversations.process(
            UserMessage(
                channel=str(data.get("channel")),
                conversation_id=job.conversation_id,
                sender_id=str(data.get("sender_id")),
                payload=payload,
                message_id=f"{job.id}@{job.run_at}",
                metadata={"reminder": data.get("name")},
            ),
            trusted=True,
        )

    async def _customer_wrote(self, conversation_id: str, after: int) -> bool:
        since = await self.store.events(conversation_id, after=after)
        return any(
            isinstance(stored.event, UserMessage) and "reminder" not in stored.event.metadata
            for stored in since
        )


def reminder_id(conversation_id: str, name: str) -> str:
    """A reminder's job id: one per name and conversation, a new one replacing the old."""
    return f"reminder:{conversation_id}:{name}"


def _timestamp(value: Any) -> float | None:
    """rasa-sdk's ``date_time`` (ISO 8601; without a zone, UTC) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _entities(value: Any) -> dict[str, Any]:
    """rasa-sdk's entities (a dict, or a list of ``{"entity", "value"}``) as one dict."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    found: dict[str, Any] = {}
    if isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("entity"), str):
                found[item["entity"]] = item.get("value")
    return found
