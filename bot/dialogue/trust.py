"""What outside input may decide: which payloads count, and which slots it may never set.

Everything a customer sends is data. Two rules keep it from becoming authority:

- **A payload counts only where the bot offered it.** The payloads of the buttons the bot
  sent in its latest turn are remembered on the conversation's state; a pressed (or typed,
  or forged) payload is read as a payload only when it is one of them, or when it is a plain
  ``/intent`` naming one of the domain's intents. Such a payload carries no data, only the
  meaning the same words typed as text could have had, so it stays typeable as Rasa
  documents button payloads to be. ``/intent{...}`` with entities and ``/SetSlots(...)``
  are never typeable. A payload that does not count is no authority: typed, it is answered
  as something the bot cannot do (``pattern_cannot_handle``); from a stale button whose
  title came along (Telegram, the shell), the title is understood as ordinary text.
- **A slot only actions fill is never set from outside.** A slot whose mappings are all
  ``controlled`` or ``custom`` (Rasa's action-filled kinds) is left alone by payloads,
  entities, answers, corrections, an LLM's commands and a live channel's fixtures; only
  custom actions and flows' own ``set_slots`` steps set it. Verification state (who proved
  which order is theirs) lives in such slots. This is stricter than Rasa, whose command
  payload reader may set a ``controlled`` slot from any button payload: an offered payload is
  still what the customer's client sent back.

Messages pushed outside a turn (a human agent's reply, a proactive notice) offer nothing.

:func:`outside_commands` is the one filter every source of commands (the offline command
generator, an LLM backend) passes through before its commands are applied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot import constants
from bot.dialogue import commands as cmd
from bot.domain import SlotDefinition
from bot.errors import BadRequestError
from bot.events import BotMessage
from bot.state import ConversationState

log = logging.getLogger(__name__)

ACTION_MAPPINGS = frozenset({"controlled", "custom"})
"""Slot mapping types that mean "an action fills this slot", never the customer."""
FIXTURE_CHANNELS = frozenset({"test"})
"""Channels whose conversations are conversation tests: their fixtures may set any slot."""

_PLAIN_INTENT = re.compile(r"^/(?P<intent>[\w.-]+)\s*$")


def action_owned(slot: SlotDefinition) -> bool:
    """Whether only actions (and flows' ``set_slots`` steps) may fill ``slot``."""
    return bool(slot.mappings) and all(m.type in ACTION_MAPPINGS for m in slot.mappings)


def settable_from_outside(slots: Mapping[str, SlotDefinition], name: str) -> bool:
    """Whether a customer's message (or a model reading it) may set slot ``name``."""
    slot = slots.get(name)
    return slot is not None and not action_owned(slot)


def outside_commands(
    slots: Mapping[str, SlotDefinition], commands: Sequence[cmd.Command]
) -> list[cmd.Command]:
    """``commands`` without the slot changes outside input may not make.

    A ``SetSlot`` of an unknown or action-owned slot is dropped; a ``CorrectSlots`` keeps the
    slots it may change and is dropped when none is left.
    """
    kept: list[cmd.Command] = []
    dropped: list[str] = []
    for command in commands:
        if isinstance(command, cmd.SetSlot):
            if settable_from_outside(slots, command.name):
                kept.append(command)
            else:
                dropped.append(command.name)
        elif isinstance(command, cmd.CorrectSlots):
            allowed = {k: v for k, v in command.slots.items() if settable_from_outside(slots, k)}
            dropped.extend(k for k in command.slots if k not in allowed)
            if allowed:
                kept.append(cmd.CorrectSlots(allowed))
        else:
            kept.append(command)
    if dropped:  # names only: the values are the customer's
        log.info("ignored outside input setting slot(s) %s", ", ".join(sorted(set(dropped))))
    return kept


def check_fixture_slots(
    slots: Mapping[str, SlotDefinition], channel: str, values: Mapping[str, Any]
) -> None:
    """Refuse to preset action-owned slots of a live channel's conversation.

    Conversation tests (channel ``test``) may preset any slot, as Rasa's e2e fixtures do;
    any other conversation is a real customer's, where a fixture would be a forged verification.
    """
    if channel in FIXTURE_CHANNELS:
        return
    owned = sorted(name for name in values if not settable_from_outside(slots, name))
    if owned:
        raise BadRequestError(
            f"slot(s) {', '.join(owned)} cannot be preset in a {channel!r} conversation: "
            "only actions fill them (or the slot is unknown)"
        )


def trusted_payload(
    state: ConversationState, payload: str | None, *, intents: Iterable[str]
) -> str | None:
    """``payload`` when it counts as one in this conversation (the module's rules), else None."""
    if not payload:
        return None
    stripped = payload.strip()
    if stripped in state.offered_payloads:
        return stripped
    match = _PLAIN_INTENT.match(stripped)
    if match is not None and match.group("intent") in set(intents):
        return stripped
    return None


def typed_payload_refused(sent: str | None, trusted: str | None, *, text: str) -> bool:
    """Whether the customer typed (or forged) payload syntax that does not count here.

    Such a message (or a forged button press with no title) is answered politely as
    something the bot cannot do. A pressed stale button whose title came as the text
    (Telegram, the shell) is read as that text instead.
    """
    if not sent or trusted is not None:
        return False
    return not text.strip() or sent.strip() == text.strip()


def remember_offers(state: ConversationState, messages: Sequence[BotMessage]) -> None:
    """Keep the payloads of this turn's buttons as the ones the customer may press next.

    A turn that said nothing (a message forwarded to a human agent) keeps the earlier offer;
    a turn that spoke without buttons withdraws it.
    """
    if not messages:
        return
    offered = dict.fromkeys(b.payload.strip() for m in messages for b in m.buttons if b.payload)
    state.offered_payloads = list(offered)[: constants.MAX_OFFERED_PAYLOADS]
