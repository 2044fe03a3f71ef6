"""The desk's seams: the workspace agents work in, and where customers' files come from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from bot.events import Attachment
from bot.files import FileBlob

if TYPE_CHECKING:
    from bot.desk.tickets import Ticket

Mention = Literal["channel", "agent"]
"""Whom a desk line calls: every agent in the handoff channel, or the ticket's agent."""


@dataclass(frozen=True)
class FileRef:
    """A file an agent attached in the workspace, not yet downloaded."""

    name: str
    mime_type: str
    url: str
    size: int


class DeskBoard(Protocol):
    """Where tickets are shown and agents write (a Slack channel and its threads).

    Every method raises ``TransientDeliveryError`` when the workspace is down or rate-limits
    for longer than the call may wait, and ``PermanentDeliveryError`` when it refuses for good.
    """

    async def post_ticket(self, ticket: Ticket) -> str:
        """Post a new ticket; return its id (the Slack message ts), which names its thread."""
        ...

    async def find_ticket(self, ticket: Ticket) -> str | None:
        """The id of the ticket's message if it was posted already (a post whose answer was
        never recorded: the database went away, the worker died), else None."""
        ...

    async def update_ticket(self, ticket: Ticket) -> None:
        """Show the ticket's current status, agent and outcome."""
        ...

    async def post_in_thread(
        self,
        ticket: Ticket,
        text: str,
        *,
        from_customer: bool = False,
        files: Sequence[FileBlob] = (),
        mention: Mention | None = None,
    ) -> None:
        """Post in the ticket's thread: what the customer wrote, or a line from the desk;
        ``mention="channel"`` raises it for every agent (shown in the channel too),
        ``mention="agent"`` calls the agent who has the ticket."""
        ...

    async def tell(self, user: str, text: str, *, thread: str | None = None) -> None:
        """Tell one agent something only they see."""
        ...

    async def is_agent(self, user: str) -> bool:
        """Whether ``user`` may act on tickets."""
        ...

    async def display_name(self, user: str) -> str:
        """The name the customer is told (the agent's first name)."""
        ...

    async def download(self, ref: FileRef) -> FileBlob:
        """The bytes of a file an agent attached."""
        ...


class FileSource(Protocol):
    """A customer channel that can fetch the bytes of a file a customer sent."""

    async def fetch(self, attachment: Attachment) -> FileBlob:
        """The attachment's bytes; ``TransientError`` to retry later, ``PermanentError`` if gone."""
        ...
