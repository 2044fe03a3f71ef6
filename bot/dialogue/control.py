"""The seam between the flow executor and the steps it runs: what a step's outcome is, and
what the engine's default actions may ask of the executor.

The executor runs default actions and default actions push patterns, start flows and speak
through the executor: :class:`FlowControl` is the narrow view they get of it, so that
``default_actions`` never imports the executor (which imports it).
"""

from __future__ import annotations

import enum
import random
from typing import TYPE_CHECKING, Any, Protocol, Unpack

if TYPE_CHECKING:
    from bot.dialogue.stack import Frame, PatternContext
    from bot.dialogue.turn import Turn
    from bot.events import BotMessage
    from bot.flows.model import Flow


class StepOutcome(enum.Enum):
    """What the executor does after a step: wait for the customer, or run the next step."""

    LISTEN = "listen"
    CONTINUE = "continue"


class FlowControl(Protocol):
    """What a default action may do to the dialogue besides changing the turn itself."""

    def utter(self, turn: Turn, name: str, frame: Frame | None = None, **extra: Any) -> bool:
        """Say response ``name`` in ``frame``'s context; False when the domain has none."""
        ...

    def render(
        self, turn: Turn, name: str, frame: Frame, *, rng: random.Random | None
    ) -> BotMessage | None:
        """Response ``name`` rendered in ``frame``'s context, not said; None when missing."""
        ...

    def push_pattern(self, turn: Turn, flow_id: str, **context: Unpack[PatternContext]) -> None:
        """Push pattern ``flow_id`` with this context (ignored when the pattern is missing)."""
        ...

    def start_flow(self, turn: Turn, flow_id: str) -> None:
        """Start the customer's flow ``flow_id`` (interrupting the running one, if any)."""
        ...

    def reset_flow_slots(self, turn: Turn, flow: Flow) -> None:
        """Forget what ``flow`` (and the flows it calls) collected, but its persisted slots."""
        ...
