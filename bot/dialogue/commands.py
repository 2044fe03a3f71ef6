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
    name: str
    value: Any


@dataclass(frozen=True)
class StartFlow(Command):
    flow_id: str


@dataclass(frozen=True)
class CancelFlow(Command):
    pass


@dataclass(frozen=True)
class CorrectSlots(Command):
    slots: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Clarify(Command):
    options: tuple[str, ...]


@dataclass(frozen=True)
class ChitChat(Command):
    intent: str | None = None
    """The intent whose ``utter_<intent>`` answers; None: the message's own intent."""


@dataclass(frozen=True)
class Search(Command):
    pass


@dataclass(frozen=True)
class CannotHandle(Command):
    reason: str = "cannot_handle_default"


@dataclass(frozen=True)
class HumanHandoff(Command):
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
    error_type: str
