"""The domain: what the assistant knows about (intents, entities, slots, responses, actions).

These are the parsed, validated records of a Rasa 3.x ``domain.yml``; ``bot.project`` builds
them from YAML and ``bot.responses`` renders responses from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot import constants
from bot.events import Button

SLOT_TYPES = ("text", "bool", "categorical", "float", "list", "any")
BUILTIN_INTENTS = frozenset(
    {
        "session_start",
        "session_end",
        "silence_timeout",
        "restart",
        "human_handoff",
        "handoff_leave_message",
        "handoff_back_to_bot",
        "back",
        "out_of_scope",
        "nlu_fallback",
    }
)
"""Intents Rasa provides without declaration, and kefu's own (a waiting customer's choices
``handoff_leave_message`` / ``handoff_back_to_bot``): flows may name them and buttons send them."""


@dataclass(frozen=True)
class SlotMapping:
    """One way a slot gets filled (Rasa's ``mappings:`` entries).

    ``type`` is one of ``from_llm``, ``from_text``, ``from_entity``, ``from_intent``,
    ``from_trigger_intent``, ``controlled`` or ``custom``. ``conditions`` are Rasa's
    ``[{active_flow/active_loop: ..., requested_slot: ...}]`` restrictions.
    """

    type: str
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    intent: tuple[str, ...] = ()
    not_intent: tuple[str, ...] = ()
    value: Any = None
    action: str | None = None
    conditions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SlotDefinition:
    """A slot: a named piece of conversation memory with a type."""

    name: str
    type: str = "any"
    values: tuple[str, ...] = ()
    """Allowed values of a categorical slot."""
    mappings: tuple[SlotMapping, ...] = (SlotMapping(type="from_llm"),)
    initial_value: Any = None
    influence_conversation: bool = False
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class ResponseVariation:
    """One variation of a response (``utter_*``).

    ``channel`` restricts it to one channel; ``condition`` is Rasa's conditional-variation list
    (``[{"type": "slot", "name": ..., "value": ...}]``) or one predicate string kept as
    ``({"type": "predicate", "predicate": 'slots.x == "a"'},)``; ``translation`` maps a language
    code to the text in that language (``{"zh": "您好"}``), the main ``text`` being the default.
    """

    text: str | None = None
    buttons: tuple[Button, ...] = ()
    image: str | None = None
    custom: dict[str, Any] | None = None
    channel: str | None = None
    condition: tuple[dict[str, Any], ...] = ()
    translation: dict[str, str] = field(default_factory=dict)
    button_translations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Button titles per language, in button order (from each button's ``translation``)."""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionConfig:
    """Rasa's ``session_config``: when a quiet conversation starts a new session."""

    session_expiration_time: float = constants.DEFAULT_SESSION_EXPIRATION_MINUTES
    """Minutes of silence after which the next message starts a new session; 0 = never."""
    carry_over_slots_to_new_session: bool = True


@dataclass(frozen=True)
class Domain:
    """Everything ``domain.yml`` (or a ``domain/`` folder) declares."""

    intents: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    slots: dict[str, SlotDefinition] = field(default_factory=dict)
    responses: dict[str, tuple[ResponseVariation, ...]] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    session_config: SessionConfig = field(default_factory=SessionConfig)
    default_language: str = "en"
    raw: dict[str, Any] = field(default_factory=dict)
    """The merged YAML as loaded, handed to rasa-sdk actions as ``domain``."""

    def has_response(self, name: str) -> bool:
        """True if the domain defines the response ``name``."""
        return name in self.responses
