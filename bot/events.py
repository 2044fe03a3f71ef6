"""The common event format: every platform's traffic and every dialogue step as plain records.

Records are immutable, typed and JSON-serialisable. Where Rasa has the same event, the JSON
shape is Rasa's (``{"event": "slot", "name": ..., "value": ...}``) so that rasa-sdk actions
read the tracker they expect. ``event_from_dict`` turns any such dict back into a record and
keeps unknown Rasa events as :class:`UnknownEvent` rather than failing.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = [
    "PROFILE_KEYS",
    "ActionExecuted",
    "AgentJoined",
    "AgentLeft",
    "AgentMessage",
    "AgentNote",
    "AllSlotsReset",
    "Attachment",
    "BotMessage",
    "Button",
    "ConversationPaused",
    "ConversationResumed",
    "CsatAnswered",
    "CsatCommented",
    "Event",
    "FlowCancelled",
    "FlowCompleted",
    "FlowInterrupted",
    "FlowResumed",
    "FlowStarted",
    "FollowupAction",
    "HandoffRequested",
    "HandoffResolved",
    "Restarted",
    "SessionStarted",
    "SlotSet",
    "UnknownEvent",
    "UserMessage",
    "conversation_id_for",
    "event_from_dict",
    "profile_from",
]


def _now() -> float:
    return time.time()


PROFILE_KEYS = frozenset(
    {"first_name", "last_name", "username", "language_code", "chat_type", "name"}
)
"""What a channel may tell about the sender in :attr:`UserMessage.profile`."""


def profile_from(values: dict[str, Any]) -> dict[str, Any]:
    """The :data:`PROFILE_KEYS` of ``values`` (a client's metadata, say)."""
    return {k: v for k, v in values.items() if k in PROFILE_KEYS}


def conversation_id_for(channel: str, chat_id: str | int) -> str:
    """The conversation id used everywhere: ``<channel>:<the platform's chat id>``."""
    return f"{channel}:{chat_id}"


E = TypeVar("E", bound="Event")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every record. ``event`` is the JSON discriminator (Rasa's name where it has one)."""

    event: ClassVar[str] = ""
    timestamp: float = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the discriminator under ``"event"``."""
        data: dict[str, Any] = {"event": self.event}
        for name in _field_names(type(self)):
            data[name] = _to_json(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls: type[E], data: dict[str, Any]) -> E:
        """The record of a :meth:`to_dict` dict; keys it does not have are ignored."""
        names = _field_names(cls)
        return cls(**{k: _from_json(cls, k, v) for k, v in data.items() if k in names})


_SCALARS = frozenset({str, int, float, bool, type(None)})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _to_json(value: Any) -> Any:
    # Every event of every turn passes through here: the cheap checks come first.
    if type(value) in _SCALARS:
        return value
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _to_json(getattr(value, name)) for name in _field_names(type(value))}
    return value


def _from_json(cls: type[Event], name: str, value: Any) -> Any:
    if name == "buttons" and value is not None:
        return tuple(Button.from_dict(b) for b in value)
    if name == "attachments" and value is not None:
        return tuple(Attachment.from_dict(a) for a in value)
    return value


@dataclass(frozen=True)
class Button:
    """A quick-reply button: what the customer sees and the payload sent back when pressed."""

    title: str
    payload: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Button:
        """A button from Rasa's ``{"title", "payload"}`` (missing parts are empty)."""
        return cls(title=str(data.get("title", "")), payload=str(data.get("payload", "")))


@dataclass(frozen=True)
class Attachment:
    """A file, picture, voice note, location or contact the customer sent.

    ``kind`` is one of ``image``, ``document``, ``audio``, ``video``, ``location``, ``contact``;
    ``url`` or ``file_id`` says where the platform keeps it; ``data`` holds small structured
    content (coordinates, phone number).
    """

    kind: str
    url: str | None = None
    file_id: str | None = None
    name: str | None = None
    mime_type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        """The attachment of a :meth:`to_dict`-shaped dict; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --- inbound / outbound -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UserMessage(Event):
    """What a customer said, on any platform.

    ``payload`` is a pressed button's payload (``/intent{...}`` or ``/SetSlots(...)``), kept apart
    from ``text`` so that a channel can show the button's title. ``parse_data`` is filled in by
    understanding (Rasa's shape: intent, entities, text) before the event is stored.
    """

    event: ClassVar[str] = "user"
    channel: str
    conversation_id: str
    sender_id: str
    text: str = ""
    payload: str | None = None
    attachments: tuple[Attachment, ...] = ()
    language: str | None = None
    message_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the platform or client sent along that kefu does not interpret (stored as is)."""
    parse_data: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    """The platform command the message is, without its slash (Telegram's ``/help``: ``help``);
    set only by a channel whose platform has commands."""
    profile: dict[str, Any] = field(default_factory=dict)
    """Who wrote, in the platform's words (keys among :data:`PROFILE_KEYS`): kept in the
    conversation's profile, for the desk."""
    truncated: bool = False
    """True when the text was cut to ``constants.MAX_MESSAGE_CHARS`` on arrival."""

    @property
    def input_text(self) -> str:
        """The text understanding should read: the payload when a button was pressed."""
        return self.payload if self.payload else self.text


@dataclass(frozen=True, kw_only=True)
class BotMessage(Event):
    """What the bot (or a human agent through the bot) says to a conversation."""

    event: ClassVar[str] = "bot"
    conversation_id: str
    text: str | None = None
    buttons: tuple[Button, ...] = ()
    image: str | None = None
    custom: dict[str, Any] | None = None
    response: str | None = None
    """The domain response (``utter_*``) this message was rendered from, if any."""
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    """Files kept in kefu's store (``bot.files``) that go with the message: an agent's."""

    def to_rest(self, recipient_id: str) -> dict[str, Any]:
        """The Rasa REST channel shape of this message, addressed to ``recipient_id``."""
        out: dict[str, Any] = {"recipient_id": recipient_id}
        if self.text is not None:
            out["text"] = self.text
        if self.buttons:
            out["buttons"] = [{"title": b.title, "payload": b.payload} for b in self.buttons]
        if self.image:
            out["image"] = self.image
        if self.custom is not None:
            out["custom"] = self.custom
        return out


# --- dialogue -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SlotSet(Event):
    """A slot took a value (``None`` clears it); Rasa's ``slot`` event."""

    event: ClassVar[str] = "slot"
    name: str
    value: Any = None


@dataclass(frozen=True, kw_only=True)
class AllSlotsReset(Event):
    """Every slot went back to its initial value; Rasa's ``reset_slots``."""

    event: ClassVar[str] = "reset_slots"


@dataclass(frozen=True, kw_only=True)
class Restarted(Event):
    """The conversation starts over: its flows and slots are cleared; Rasa's ``restart``."""

    event: ClassVar[str] = "restart"


@dataclass(frozen=True, kw_only=True)
class FollowupAction(Event):
    """A custom action asked for another action to run next; Rasa's ``followup``."""

    event: ClassVar[str] = "followup"
    name: str


@dataclass(frozen=True, kw_only=True)
class ActionExecuted(Event):
    """An action ran (``action_listen`` ends the bot's turn); ``policy`` and ``confidence``
    say what chose it, as in Rasa's ``action`` event."""

    event: ClassVar[str] = "action"
    name: str
    policy: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, kw_only=True)
class SessionStarted(Event):
    """A new session began (the first message, or one after ``session_config``'s expiry)."""

    event: ClassVar[str] = "session_started"


@dataclass(frozen=True, kw_only=True)
class ConversationPaused(Event):
    """The bot stopped answering: a human agent has the conversation (handoff)."""

    event: ClassVar[str] = "pause"


@dataclass(frozen=True, kw_only=True)
class ConversationResumed(Event):
    """The bot answers again: the handoff is over."""

    event: ClassVar[str] = "resume"


@dataclass(frozen=True, kw_only=True)
class FlowStarted(Event):
    """A flow was pushed on the dialogue stack."""

    event: ClassVar[str] = "flow_started"
    flow_id: str


@dataclass(frozen=True, kw_only=True)
class FlowCompleted(Event):
    """A flow reached its end; ``step_id`` is its last step."""

    event: ClassVar[str] = "flow_completed"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class FlowCancelled(Event):
    """A flow was abandoned (the customer cancelled it) at ``step_id``."""

    event: ClassVar[str] = "flow_cancelled"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class FlowInterrupted(Event):
    """Another flow started on top of this one, paused at ``step_id``."""

    event: ClassVar[str] = "flow_interrupted"
    flow_id: str
    step_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class FlowResumed(Event):
    """An interrupted flow continues from ``step_id`` once the flow on top of it ended."""

    event: ClassVar[str] = "flow_resumed"
    flow_id: str
    step_id: str | None = None


# --- desk (human handoff) -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HandoffRequested(Event):
    """The conversation was queued for a human agent, with why (``reason``)."""

    event: ClassVar[str] = "handoff_requested"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentJoined(Event):
    """A human agent took the conversation (``agent``: their platform user id)."""

    event: ClassVar[str] = "agent_joined"
    agent: str


@dataclass(frozen=True, kw_only=True)
class AgentLeft(Event):
    """An agent gave the conversation up (released it, or transferred it to another)."""

    event: ClassVar[str] = "agent_left"
    agent: str


@dataclass(frozen=True, kw_only=True)
class AgentMessage(Event):
    """What an agent said to the customer, with the files they attached (``bot.files``)."""

    event: ClassVar[str] = "agent_message"
    agent: str
    text: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AgentNote(Event):
    """A note an agent left for colleagues; the customer never sees it."""

    event: ClassVar[str] = "agent_note"
    agent: str
    text: str


@dataclass(frozen=True, kw_only=True)
class HandoffResolved(Event):
    """An agent closed the handoff: the bot takes the conversation back."""

    event: ClassVar[str] = "handoff_resolved"
    agent: str | None = None


@dataclass(frozen=True, kw_only=True)
class CsatAnswered(Event):
    """The customer's satisfaction score after a handoff: one per answered survey.

    ``comment`` is only read from conversations stored before :class:`CsatCommented`: the
    survey then saved the score, and again the score with the comment."""

    event: ClassVar[str] = "csat_answer"
    score: int
    comment: str | None = None


@dataclass(frozen=True, kw_only=True)
class CsatCommented(Event):
    """What the customer added to their survey answer (after its :class:`CsatAnswered`)."""

    event: ClassVar[str] = "csat_comment"
    comment: str


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A Rasa event kefu does not model (``user_featurization``, ``entities``...), kept verbatim."""

    event: ClassVar[str] = "unknown"
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event exactly as it was read."""
        return dict(self.data)


_REGISTRY: dict[str, type[Event]] = {
    cls.event: cls
    for cls in (
        UserMessage,
        BotMessage,
        SlotSet,
        AllSlotsReset,
        Restarted,
        FollowupAction,
        ActionExecuted,
        SessionStarted,
        ConversationPaused,
        ConversationResumed,
        FlowStarted,
        FlowCompleted,
        FlowCancelled,
        FlowInterrupted,
        FlowResumed,
        HandoffRequested,
        AgentJoined,
        AgentLeft,
        AgentMessage,
        AgentNote,
        HandoffResolved,
        CsatAnswered,
        CsatCommented,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild a record from its dict. Accepts rasa-sdk's event dicts (``SlotSet(...)`` etc.).

    rasa-sdk's ``BotUttered`` carries buttons and images under ``data``; they are lifted into the
    :class:`BotMessage` fields. An event name kefu does not know becomes :class:`UnknownEvent`.
    """
    kind = data.get("event")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownEvent(data=dict(data), timestamp=_timestamp(data))
    fields = {k: v for k, v in data.items() if k != "event"}
    if fields.get("timestamp") is None:
        fields["timestamp"] = _now()
    if cls is BotMessage and isinstance(fields.get("data"), dict):
        extra = fields.pop("data")
        fields.setdefault("buttons", extra.get("buttons") or ())
        fields.setdefault("image", extra.get("image"))
        fields.setdefault("custom", extra.get("custom"))
        fields.setdefault("conversation_id", "")
    if cls is ActionExecuted and "name" not in fields:
        fields["name"] = ""
    return cls.from_dict(fields)


def _timestamp(data: dict[str, Any]) -> float:
    value = data.get("timestamp")
    return float(value) if isinstance(value, int | float) else _now()
