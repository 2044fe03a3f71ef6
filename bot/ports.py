"""The narrow interfaces through which the core reaches outside systems.

Each is a ``typing.Protocol``: anything with these methods plugs in. The channel interface,
which carries shared behaviour, is the ABC in ``bot.channel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from bot.events import BotMessage, Button, Event, UserMessage
from bot.state import ConversationState

if TYPE_CHECKING:
    from bot.dialogue.commands import Command
    from bot.dialogue.turn import Turn
    from bot.interpreter import Parse


@dataclass(frozen=True)
class StoredEvent:
    """An event as the store returns it: its position in the conversation's log and the record."""

    seq: int
    event: Event


@dataclass(frozen=True)
class PendingDelivery:
    """An outbound message waiting in the outbox for its channel to deliver it."""

    id: int
    channel: str
    message: BotMessage
    attempts: int


@dataclass(frozen=True)
class ScheduledJob:
    """A one-shot job waiting in the database for its time (see ``bot.scheduling``).

    ``id`` is stable: scheduling a job with an existing id replaces it. ``data`` is JSON.
    """

    id: str
    kind: str
    run_at: float
    """When it is due, in seconds since the epoch."""
    conversation_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class JobStore(Protocol):
    """Where scheduled jobs wait, in the conversations' database."""

    async def save_job(self, job: ScheduledJob) -> None:
        """Store ``job``, replacing the one with the same id."""
        ...

    async def delete_job(self, job_id: str, *, run_at: float | None = None) -> bool:
        """Delete the job (with ``run_at``: only if it is due no later than that, i.e. it was
        not rescheduled for later meanwhile); True if it was deleted."""
        ...

    async def jobs(
        self,
        *,
        kind: str | None = None,
        conversation_id: str | None = None,
        due_before: float | None = None,
    ) -> list[ScheduledJob]:
        """The stored jobs, soonest first: of one kind, one conversation, due before a time,
        as far as these are given."""
        ...


class EventLog(Protocol):
    """Reading a conversation's append-only event log (the web chat's history, the events a
    custom action's tracker carries, what a reminder checks)."""

    async def events(
        self, conversation_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """The log from ``seq > after``, oldest first, at most ``limit`` events; [] for an
        unknown conversation. An unreadable entry raises ``StoreError``."""
        ...

    async def turn_events(self, conversation_id: str, message_id: str) -> list[Event]:
        """The events of the saved turn that holds the customer's message ``message_id``, in
        order; [] when no such turn is stored (deleted, or another conversation's)."""
        ...


@dataclass(frozen=True)
class ActionResult:
    """What a custom action returned: events (rasa-sdk dicts) and responses to utter."""

    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedAction:
    """A custom action's result in the action journal (``bot.journal``): the ``step``-th custom
    action its message's turn ran, by name."""

    step: int
    name: str
    result: ActionResult


class ActionJournalStore(Protocol):
    """Custom actions' results, each written the moment it returns, under the customer
    message's key (the ``message_key`` its turn claims), until that turn is saved."""

    async def recorded_actions(self, channel: str, message_id: str) -> list[RecordedAction] | None:
        """What the turns of message ``(channel, message_id)`` recorded and did not save, in
        step order; None once a turn of it was saved (its key claimed, as ``is_processed``)."""
        ...

    async def record_action(
        self, channel: str, message_id: str, *, conversation_id: str, action: RecordedAction
    ) -> None:
        """Write ``action`` durably, replacing what an earlier attempt recorded at its step.
        A record that arrives after its message's turn was saved is never read (retention
        deletes it with its conversation)."""
        ...


class ConversationRepository(EventLog, ActionJournalStore, Protocol):
    """Conversations: the current state of each, and its event log, written one turn at a time.

    ``save`` is atomic: the state, the new events, the outbox entries and the claimed platform
    message id are written together or not at all. It raises ``ConcurrentUpdateError`` when the
    stored version is not ``state.version`` (another writer won) and ``DuplicateMessageError``
    when ``message_key`` was claimed before. A ``journaled`` save drops, in the same write,
    the action journal kept under ``message_key``: the claimed key answers a retry from now on.
    """

    async def load(self, conversation_id: str) -> ConversationState | None:
        """The latest saved state (the caller's own copy); None for a new conversation."""
        ...

    async def save(
        self,
        state: ConversationState,
        events: Sequence[Event],
        *,
        outbox: Sequence[BotMessage] = (),
        outbox_due_at: float | None = None,
        message_key: tuple[str, str] | None = None,
        journaled: bool = False,
    ) -> list[int]:
        """Persist a turn; bump ``state.version``; return the outbox ids of ``outbox``.

        ``outbox_due_at`` is when the retry loop may first pick the new entries up (default:
        now); a caller that delivers them itself right away leases them until then.
        """
        ...

    async def is_processed(self, channel: str, message_id: str) -> bool:
        """True when a saved turn claimed ``message_id`` on ``channel`` (its ``message_key``)."""
        ...


class OutboxStore(Protocol):
    """Messages waiting to reach customers, written by ``save`` and worked off by delivery.

    An entry is pending until it is marked delivered, or failed for good; a claim leases a due
    entry to one sender for one attempt.
    """

    async def pending_deliveries(self, *, now: float, limit: int = 100) -> list[PendingDelivery]:
        """Pending entries due by ``now``, oldest first."""
        ...

    async def claim_delivery(self, delivery_id: int, *, now: float, until: float) -> bool:
        """Take a due pending entry for one attempt (no other sender may pick it up before
        ``until``); False when it is no longer due or pending."""
        ...

    async def mark_delivered(self, *delivery_ids: int) -> None:
        """Record that these messages went out (one write for a whole turn's replies); an
        unknown id raises ``StoreError``."""
        ...

    async def mark_failed(self, delivery_id: int, *, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at=None`` gives up for good. An unknown id raises
        ``StoreError``."""
        ...


class KeyValueStore(Protocol):
    """Small string values under ``(namespace, key)``, for a part that needs nothing else (the
    desk, stored files, a channel's button keys)."""

    async def get_value(self, namespace: str, key: str) -> str | None:
        """The value stored under ``(namespace, key)``, or None."""
        ...

    async def put_value(self, namespace: str, key: str, value: str) -> None:
        """Store ``value`` under ``(namespace, key)``, replacing any previous one; values that
        are not strings raise ``StoreError``."""
        ...


class SharedValues(KeyValueStore, Protocol):
    """Small values that several workers change at once: each operation is one atomic
    statement, so no worker overwrites another's (the desk's ticket numbers and open list)."""

    async def increment(self, namespace: str, key: str) -> int:
        """Add one to the counter under ``(namespace, key)`` (missing: 0) and return the new
        value; two callers never get the same one."""
        ...

    async def update_value(self, namespace: str, key: str, value: str) -> bool:
        """Replace the value under ``(namespace, key)`` only if there is one; False when there
        is none (deleted meanwhile: it stays deleted)."""
        ...

    async def delete_value(self, namespace: str, key: str) -> None:
        """Remove the value under ``(namespace, key)``, if any."""
        ...

    async def values(self, namespace: str) -> dict[str, str]:
        """Every key of ``namespace`` with its value (for small namespaces)."""
        ...


class RetentionStore(Protocol):
    """Forgetting conversations nobody needs any more (``KEFU_RETENTION_DAYS``)."""

    async def delete_conversations_before(self, cutoff: float) -> int:
        """Delete conversations last active before ``cutoff`` (retention) with their events,
        outbox rows, claimed message ids, journaled actions, scheduled jobs, stored files and
        the small values kept under its id (``constants.CONVERSATION_NAMESPACES``) or naming it
        (``constants.CONVERSATION_VALUE_NAMESPACES``); return how many."""
        ...


class ConversationStore(
    ConversationRepository, OutboxStore, SharedValues, RetentionStore, JobStore, Protocol
):
    """Everything kept in the conversations' database, as one object implements it
    (``bot.store.SqlStore``, ``bot.testing.memory_store.MemoryStore``).

    Only the composition root needs the whole of it; every other part asks for the narrow
    protocol it uses.
    """

    async def close(self) -> None:
        """Finish the writes already asked for, then release the connections."""
        ...


class ActionRunner(Protocol):
    """Runs custom actions: in-process through rasa-sdk, or on a remote rasa-sdk server."""

    def knows(self, name: str) -> bool:
        """True if ``name`` is an action this runner can run."""
        ...

    async def run(
        self,
        name: str,
        *,
        tracker: dict[str, Any],
        domain: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Run ``name``; raise ``ActionError`` when it fails for any reason.

        ``idempotency_key`` is the same for every attempt at this call (this action, at this
        step of the turn of one customer message): the action sees it as
        ``tracker.latest_message["idempotency_key"]``, an action server also as the
        ``Idempotency-Key`` header, to recognise a call made again.
        """
        ...

    async def start(self) -> None:
        """Get ready before the first turn (a remote server's runner learns its actions)."""
        ...

    async def close(self) -> None:
        """Release connections; called once, at shutdown."""
        ...


@dataclass(frozen=True)
class AnswerRequest:
    """A turn no flow covers, handed to the answer backend (knowledge base or LLM)."""

    text: str
    language: str
    kind: str
    """``search`` (a question about the shop), ``chitchat`` or ``cannot_handle``."""
    conversation_id: str
    history: tuple[tuple[str, str], ...] = ()
    """Recent turns as ``(speaker, text)``, speaker ``user`` or ``bot``, oldest first."""
    slots: dict[str, Any] = field(default_factory=dict)
    sentiment: float | None = None
    """The customer's mood from -1 (angry) to 1 (happy), when understanding scored it."""
    deadline: float | None = None
    """``time.monotonic()`` instant by which the turn must have its answer (None: the
    backend's own timeout)."""


@dataclass(frozen=True)
class Answer:
    """The backend's reply. ``text`` None means it has nothing grounded to say."""

    text: str | None
    sources: tuple[str, ...] = ()
    start_flow: str | None = None
    """A flow the backend thinks the customer wants started."""
    handoff: bool = False
    """The backend thinks a human should take over."""
    buttons: tuple[Button, ...] = ()
    """Buttons to offer with ``text`` (e.g. "connect me with a colleague")."""
    response: str | None = None
    """The domain response ``text`` was rendered from, when it was one."""


class AnswerBackend(Protocol):
    """Answers what no flow covers: the offline knowledge answerer, or an LLM."""

    async def answer(self, request: AnswerRequest) -> Answer:
        """Answer or return ``Answer(text=None)``; raise ``LLMError`` when the backend failed."""
        ...


class CommandSource(Protocol):
    """A second opinion on what a message means (the LLM router), after offline understanding."""

    async def commands(self, turn: Turn, parse: Parse, offline: list[Command]) -> list[Command]:
        """The commands to apply for this message; ``offline`` when it has nothing better.
        Never raises for a failure of its own backend."""
        ...


class HandoffDesk(Protocol):
    """Where human agents work (the Slack desk). Without one, handoff is unavailable.

    Both methods are called inside the customer's turn, with the conversation's lock held:
    they record what must reach the agents and return; posting happens after.
    """

    async def request_handoff(
        self, *, conversation_id: str, reason: str, state: ConversationState
    ) -> bool:
        """Queue the conversation for an agent; False when no one can take it."""
        ...

    async def forward(self, message: UserMessage) -> bool:
        """Pass a customer's message to the agents of the paused conversation; False when no
        open handoff holds it, or when it is the waiting customer's choice to leave a message
        or go back to the bot (the bot then takes the conversation back)."""
        ...


class Delivery(Enum):
    """How the customer-facing messages of a desk intervention went out."""

    NONE = "none"
    """There was nothing to send."""
    SENT = "sent"
    QUEUED = "queued"
    """Sending failed for now; the outbox retries."""
    UNREACHABLE = "unreachable"
    """The customer's chat is gone (they blocked the bot): nothing more will reach them."""


@dataclass(frozen=True)
class Intervention:
    """What :meth:`ConversationControl.intervene` did."""

    known: bool
    """False when the conversation does not exist: nothing was recorded."""
    delivery: Delivery = Delivery.NONE
    duplicate: bool = False
    """The ``message_key`` was recorded before (a platform's retry): nothing was done."""


class ConversationControl(Protocol):
    """How the desk changes a conversation outside the customer's turns (the turn runner
    implements it, under the same per-conversation lock as a turn)."""

    async def intervene(
        self,
        conversation_id: str,
        *,
        events: Sequence[Event] = (),
        utter: Sequence[tuple[str, Mapping[str, Any]]] = (),
        pause: bool | None = None,
        message_key: tuple[str, str] | None = None,
    ) -> Intervention:
        """Append ``events`` to the conversation and deliver to the customer what they say.

        Each ``AgentMessage`` in ``events`` reaches the customer as a message; each ``utter``
        is a domain response (with its template context) rendered in the customer's language.
        ``pause=True`` pauses the bot; ``pause=False`` resumes it at a clean point: a task the
        handoff interrupted is offered again. ``message_key`` (platform, message id) is
        recorded in the same write, once: an intervention whose key was recorded before
        (the platform retried its event) does nothing and says it is a ``duplicate``.
        """
        ...


class SentimentScorer(Protocol):
    """Scores how a customer feels in one message; plugged in by the composition root."""

    def score(self, text: str, language: str) -> float:
        """From -1 (very negative) to 1 (very positive); 0 when neutral or unsure."""
        ...
