"""Tickets and where they are kept: the store's key-value space, so a restart loses none.

One record per conversation (its latest handoff) holds the ticket's status, agent, Slack
thread and what still waits to be posted (Slack down: the customer's messages are kept here,
in order). The caller changes a ticket under the conversation's lock (``ConversationLocks``:
one process's, or PostgreSQL's across workers). Ticket numbers come from one atomic counter
in the database and each open ticket is a row of its own, so workers never overwrite each
other's. With one process the book keeps the tickets it read or wrote in memory, so relaying
a message reads no database; with several workers it reads every ticket from the store.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from bot import constants
from bot.ports import SharedValues


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
    joined_by: str | None = None
    """How the agent who has the ticket claimed it, when their join may be unrecorded: the id
    of the Slack message that claimed it by replying (Slack's retry of that message joins
    again), or ``claim-<key>`` for the Claim button (the same agent's press again records the
    join when the first press failed to, once). None after a transfer or a reopen."""
    join_pause: bool | None = None
    """What that join does to the bot (True: pauses it, the customer had left a message)."""
    resolved_at: float | None = None
    resolved_by: str | None = None
    thread: str | None = None
    """The ticket message's id (Slack ts); None until it was posted."""
    post_tried: bool = False
    """A post of the ticket was tried: while ``thread`` is None, it may be in Slack all the
    same (the post's answer was never recorded), so the next post looks for it first."""
    unreachable: bool = False
    """The customer's chat is gone (they blocked the bot)."""
    translate_replies: bool = False
    """``/kefu translate on``: agents write in the desk's language, the customer gets theirs."""
    window: list[tuple[str, str]] = field(default_factory=list)
    """What customer and agents said since the handoff, as ``(speaker, text)``, the latest
    :data:`~bot.constants.DESK_WINDOW_TURNS` (the copilot drafts from it)."""
    said_ids: list[str] = field(default_factory=list)
    """The Slack ts of the agents' latest replies in the window (Slack may deliver a reply
    again: it is in the window once)."""
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
    forwarded: list[str] = field(default_factory=list)
    """The platform ids of the customer's latest messages queued for the thread (the last
    :data:`~bot.constants.DESK_FORWARDED_IDS`): a turn run again does not queue one twice."""
    poster: str | None = None
    """The worker posting what waits in the outbox (several workers: one at a time)."""
    poster_until: float | None = None
    """When that worker's claim lapses unless it renews it (it died: another takes over)."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """What waits to be posted, oldest first: ``{"kind": "customer", "text", "attachments"}``
    or ``{"kind": "line", "text"}`` (a line from the desk; ``"mention"``: ``"channel"`` to raise
    it for every agent, ``"agent"`` to remind the one who has it) or ``{"kind": "translation",
    "text"}`` (the copilot's translation of a customer's message, posted after it) or
    ``{"kind": "show"}`` (the ticket's message shows its new state); the ticket itself is
    posted first when ``thread`` is None."""

    def said(self, speaker: str, text: str, *, message_id: str | None = None) -> None:
        """Keep ``text`` in the window (bounded), for the copilot; ``message_id``: the Slack
        message it came from (kept in :attr:`said_ids`, so a retry of it is not added twice)."""
        if message_id is not None:
            self.said_ids.append(message_id)
            del self.said_ids[: -constants.DESK_WINDOW_TURNS]
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


_TICKETS = constants.DESK_TICKET_NAMESPACE
_THREADS = constants.DESK_THREAD_NAMESPACE
_NUMBERS = constants.DESK_NUMBER_NAMESPACE
_OPEN = constants.DESK_OPEN_NAMESPACE
_COUNTER = ("desk.counter", "ticket")
_OLD_INDEX = ("desk.index", "all")
"""Where one process kept the last number and the open list, before workers shared the desk."""


class TicketBook:
    """Reads and writes tickets; the caller serialises writes per conversation.

    ``cache``: keep tickets in memory (one process owns the desk); off when several workers
    share the store, where another worker may have changed the ticket since.
    """

    def __init__(self, store: SharedValues, *, cache: bool = True) -> None:
        self._store = store
        self._cache = cache
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

    async def put(self, ticket: Ticket, *, new: bool = False, new_thread: bool = False) -> bool:
        """Save the ticket: ``new`` when it was just opened, else only while it is still
        stored (retention may have deleted it meanwhile: it stays deleted, and False);
        ``new_thread`` when its message was just posted (indexes it)."""
        cid, raw = ticket.conversation_id, ticket.to_json()
        if new:
            await self._store.put_value(_TICKETS, cid, raw)
        elif not await self._store.update_value(_TICKETS, cid, raw):
            self._tickets.pop(cid, None)
            return False
        if new_thread and ticket.thread is not None:
            await self._store.put_value(_THREADS, ticket.thread, cid)
        self._remember(cid, raw)
        return True

    def _remember(self, conversation_id: str, raw: str) -> None:
        if not self._cache:
            return
        self._tickets[conversation_id] = raw
        self._tickets.move_to_end(conversation_id)
        if len(self._tickets) > constants.DESK_TICKET_CACHE:
            self._tickets.popitem(last=False)

    def forget_cached(self) -> None:
        """Drop every ticket and thread kept in memory; the store answers from now on."""
        self._tickets.clear()
        self._threads.clear()

    async def by_thread(self, thread: str) -> Ticket | None:
        """The ticket whose Slack thread is ``thread``, or None."""
        conversation_id = self._threads.get(thread)
        if conversation_id is None:
            conversation_id = await self._store.get_value(_THREADS, thread)
            if conversation_id is None:
                return None
            # A thread names one conversation for good (a new handoff gets a new thread):
            # safe to keep with several workers too.
            if len(self._threads) >= constants.DESK_THREAD_CACHE:
                self._threads.pop(next(iter(self._threads)))
            self._threads[thread] = conversation_id
        return await self.get(conversation_id)

    async def by_number(self, number: int) -> Ticket | None:
        """The ticket with number ``number``, or None."""
        conversation_id = await self._store.get_value(_NUMBERS, str(number))
        return await self.get(conversation_id) if conversation_id is not None else None

    async def new_number(self, conversation_id: str) -> int:
        """The next ticket number, unique across workers (one atomic increment)."""
        number = await self._store.increment(*_COUNTER)
        await self._store.put_value(_NUMBERS, str(number), conversation_id)
        return number

    async def open_ids(self) -> list[str]:
        """The conversations with an open ticket, oldest first."""
        rows = await self._store.values(_OPEN)
        return sorted(rows, key=lambda cid: int(rows[cid]))

    async def set_open(self, ticket: Ticket) -> None:
        """Put the ticket on the open list or take it off, as its status says (after
        :meth:`put` saved it)."""
        if ticket.is_open:
            await self._store.put_value(_OPEN, ticket.conversation_id, str(ticket.number))
        else:
            await self._store.delete_value(_OPEN, ticket.conversation_id)

    async def upgrade(self) -> None:
        """Take over the one-process index of an earlier kefu (its numbering and open list)."""
        raw = await self._store.get_value(*_OLD_INDEX)
        if raw is None:
            return
        index = orjson.loads(raw)
        if await self._store.get_value(*_COUNTER) is None:  # numbering goes on from there
            await self._store.put_value(*_COUNTER, str(int(index.get("last_number", 0))))
        for cid in index.get("open", []):
            ticket = await self.get(str(cid))
            if ticket is not None:
                await self.set_open(ticket)
        await self._store.delete_value(*_OLD_INDEX)
