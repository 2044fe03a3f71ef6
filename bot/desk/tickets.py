"""Tickets and where they are kept: the store's key-value space, so a restart loses none.

One record per conversation (its latest handoff) holds the ticket's status, agent, Slack
thread and what still waits to be posted (Slack down: the customer's messages are kept here,
in order). The desk runs in one process, which writes every ticket through this book: it
keeps the tickets it read or wrote in memory, so relaying a message reads no database.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from bot import constants
from bot.ports import KeyValueStore


class Status(StrEnum):
    """Where a ticket is in its life."""

    WAITING = "waiting"
    ACTIVE = "active"
    RESOLVED = "resolved"


@dataclass(kw_only=True)
class Ticket:
    """One handoff of one conversation."""

    conversation_id: str
    number: int
    channel: str
    customer: str
    language: str
    reason: str
    opened_at: float
    intent: str | None = None
    sentiment: float | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    status: Status = Status.WAITING
    agent: str | None = None
    """The Slack user id of the agent who has it."""
    agent_name: str | None = None
    claimed_at: float | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    thread: str | None = None
    """The ticket message's id (Slack ts); None until it was posted."""
    unreachable: bool = False
    """The customer's chat is gone (they blocked the bot)."""
    translate_replies: bool = False
    """``/kefu translate on``: agents write in the desk's language, the customer gets theirs."""
    window: list[tuple[str, str]] = field(default_factory=list)
    """What customer and agents said since the handoff, as ``(speaker, text)``, the latest
    :data:`~bot.constants.DESK_WINDOW_TURNS` (the copilot drafts from it)."""
    with_bot: bool = False
    """The customer stopped waiting (to leave a message): the bot answers them meanwhile,
    and the agent who claims the ticket takes the conversation back."""
    withdrawn: bool = False
    """The customer stopped waiting and went back to the bot: closed without an agent."""
    last_activity_at: float | None = None
    """When the customer or the agent last wrote (the agent's idle reminder counts from it)."""
    survey: bool = True
    """Whether the customer is asked to rate the handoff once it is resolved."""
    csat: int | None = None
    """The customer's rating (1 to 5) from the satisfaction survey."""
    csat_comment: str | None = None
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """What waits to be posted, oldest first: ``{"kind": "customer", "text", "attachments"}``
    or ``{"kind": "line", "text"}`` (a line from the desk; ``"mention"``: ``"channel"`` to raise
    it for every agent, ``"agent"`` to remind the one who has it) or ``{"kind": "translation",
    "text"}`` (the copilot's translation of a customer's message, posted after it) or
    ``{"kind": "show"}`` (the ticket's message shows its new state); the ticket itself is
    posted first when ``thread`` is None."""

    def said(self, speaker: str, text: str) -> None:
        """Keep ``text`` in the window (bounded), for the copilot."""
        if text:
            self.window.append((speaker, text[: constants.TRANSCRIPT_CHARS]))
            del self.window[: -constants.DESK_WINDOW_TURNS]

    @property
    def is_open(self) -> bool:
        """False once the ticket is resolved."""
        return self.status is not Status.RESOLVED

    def to_json(self) -> str:
        """The ticket as JSON, for the store's small values."""
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_json(cls, raw: str) -> Ticket:
        """The ticket :meth:`to_json` wrote; unknown keys are ignored."""
        data = orjson.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        ticket = cls(**{k: v for k, v in data.items() if k in names})
        ticket.status = Status(ticket.status)
        ticket.transcript = [(str(who), str(text)) for who, text in ticket.transcript]
        ticket.window = [(str(who), str(text)) for who, text in ticket.window]
        return ticket


_TICKETS = "desk.ticket"
_THREADS = "desk.thread"
_NUMBERS = "desk.number"
_INDEX = "desk.index"


class TicketBook:
    """Reads and writes tickets; the caller serialises writes per conversation."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._threads: dict[str, str] = {}
        self._tickets: OrderedDict[str, str] = OrderedDict()

    async def get(self, conversation_id: str) -> Ticket | None:
        """The conversation's ticket (open or resolved), or None."""
        raw = self._tickets.get(conversation_id)
        if raw is None:
            raw = await self._store.get_value(_TICKETS, conversation_id)
            if raw is None:
                return None
            self._remember(conversation_id, raw)
        return Ticket.from_json(raw)

    async def put(self, ticket: Ticket, *, new_thread: bool = False) -> None:
        """Save the ticket; ``new_thread`` when its message was just posted (indexes it)."""
        if new_thread and ticket.thread is not None:
            await self._store.put_value(_THREADS, ticket.thread, ticket.conversation_id)
        raw = ticket.to_json()
        await self._store.put_value(_TICKETS, ticket.conversation_id, raw)
        self._remember(ticket.conversation_id, raw)

    def _remember(self, conversation_id: str, raw: str) -> None:
        self._tickets[conversation_id] = raw
        self._tickets.move_to_end(conversation_id)
        if len(self._tickets) > constants.DESK_TICKET_CACHE:
            self._tickets.popitem(last=False)

    async def by_thread(self, thread: str) -> Ticket | None:
        """The ticket whose Slack thread is ``thread``, or None."""
        conversation_id = self._threads.get(thread)
        if conversation_id is None:
            conversation_id = await self._store.get_value(_THREADS, thread)
            if conversation_id is None:
                return None
            if len(self._threads) >= constants.DESK_THREAD_CACHE:
                self._threads.pop(next(iter(self._threads)))
            self._threads[thread] = conversation_id
        return await self.get(conversation_id)

    async def by_number(self, number: int) -> Ticket | None:
        """The ticket with number ``number``, or None."""
        conversation_id = await self._store.get_value(_NUMBERS, str(number))
        return await self.get(conversation_id) if conversation_id is not None else None

    async def new_number(self, conversation_id: str) -> int:
        """The next ticket number (the caller holds the desk-wide lock)."""
        index = await self._index()
        number = int(index.get("last_number", 0)) + 1
        index["last_number"] = number
        await self._store.put_value(_INDEX, "all", orjson.dumps(index).decode())
        await self._store.put_value(_NUMBERS, str(number), conversation_id)
        return number

    async def open_ids(self) -> list[str]:
        """The conversations with an open ticket, oldest first."""
        return [str(c) for c in (await self._index()).get("open", [])]

    async def set_open(self, conversation_id: str, is_open: bool) -> None:
        """Add a conversation to the open list or take it off (the caller holds the lock)."""
        index = await self._index()
        ids = [c for c in index.get("open", []) if c != conversation_id]
        if is_open:
            ids.append(conversation_id)
        index["open"] = ids
        await self._store.put_value(_INDEX, "all", orjson.dumps(index).decode())

    async def _index(self) -> dict[str, Any]:
        raw = await self._store.get_value(_INDEX, "all")
        return dict(orjson.loads(raw)) if raw is not None else {}
