"""Commands: what understanding decided the customer wants, applied to the dialogue stack.

These mirror Rasa CALM's commands (``StartFlow``, ``SetSlot``, ``CancelFlow``...). The command
generator produces them from a parsed message; an LLM backend may produce them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """Base of every command."""


@dataclass(frozen=True)
class SetSlot(Command):
    """Set slot ``name`` to ``value``."""

    name: str
    value: Any


@dataclass(frozen=True)
class StartFlow(Command):
    """Start the customer's flow ``flow_id`` (interrupting the one running)."""

    flow_id: str


@dataclass(frozen=True)
class CancelFlow(Command):
    """Cancel the customer's current flow (``pattern_cancel_flow``)."""


@dataclass(frozen=True)
class CorrectSlots(Command):
    """Change slots already filled and go back to where the first was asked."""

    slots: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Clarify(Command):
    """Ask which of these flows the customer meant (``pattern_clarification``)."""

    options: tuple[str, ...]


@dataclass(frozen=True)
class ChitChat(Command):
    """Answer small talk (``pattern_chitchat``)."""

    intent: str | None = None
    """The intent whose ``utter_<intent>`` answers; None: the message's own intent."""


@dataclass(frozen=True)
class Search(Command):
    """Answer from the knowledge base or the LLM (``pattern_search``)."""


@dataclass(frozen=True)
class CannotHandle(Command):
    """Tell the customer the bot cannot help with that, for ``reason``."""

    reason: str = "cannot_handle_default"


@dataclass(frozen=True)
class HumanHandoff(Command):
    """Hand the conversation to a person, for ``reason``."""

    reason: str = "customer asked for a human"


@dataclass(frozen=True)
class RejectValue(Command):
    """The answer to the pending question did not fit the slot's type."""

    slot: str
    text: str


@dataclass(frozen=True)
class StartPattern(Command):
    """Start a pattern flow directly (a pattern's own ``nlu_trigger``: restart, session start)."""

    flow_id: str


@dataclass(frozen=True)
class InternalError(Command):
    """Report an input the bot refuses (``pattern_internal_error``), by ``error_type``."""

    error_type: str
