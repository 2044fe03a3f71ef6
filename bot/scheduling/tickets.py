"""What scheduled work needs of the handoff desk (``bot.desk.Desk``), through one port."""

from __future__ import annotations

from typing import Protocol

from bot.desk.desk import TicketWatcher
from bot.desk.tickets import Status, Ticket


class DeskTickets(Protocol):
    """The desk's tickets as the handoff timers and the survey see them."""

    def watch(self, watcher: TicketWatcher) -> None:
        """Be told of every change to a ticket."""
        ...

    async def ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's latest ticket."""
        ...

    async def escalate(
        self, conversation_id: str, *, number: int, text: str, mention: bool = True
    ) -> bool:
        """Say ``text`` in a waiting ticket's thread (``mention``: for every agent)."""
        ...

    async def remind_agent(self, conversation_id: str, *, number: int, text: str) -> bool:
        """Call the agent who has the ticket, in its thread."""
        ...

    def forget_cached(self) -> None:
        """Drop the tickets kept in memory (retention deleted conversations in the store)."""
        ...

    async def record_survey(
        self, conversation_id: str, *, score: int | None = None, comment: str | None = None
    ) -> None:
        """Show a survey answer (its ``score``, or then its ``comment``) on the
        conversation's resolved ticket."""
        ...


def is_waiting(ticket: Ticket | None, number: int) -> bool:
    """Whether ``ticket`` is handoff ``number`` and still waits for an agent."""
    return ticket is not None and ticket.number == number and ticket.status is Status.WAITING


def is_claimed(ticket: Ticket | None, number: int) -> bool:
    """Whether ``ticket`` is handoff ``number`` and an agent has it."""
    return (
        ticket is not None
        and ticket.number == number
        and ticket.status is Status.ACTIVE
        and ticket.agent is not None
    )
