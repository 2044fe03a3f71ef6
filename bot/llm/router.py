"""Routing into flows by the model's commands, when offline understanding cannot.

Asked only when understanding is unsure (a flow would start on an intent below the confidence
that lets it interrupt a question) or no flow matches (``unsure``, the default), or on every
typed message (``always``, Rasa CALM's way). Button payloads, platform commands and
messages trying to override the instructions never go to the model. The prompt lists the
flows with their descriptions and the slots they collect, the active flow and its slots, a
bounded window of the conversation, with personal data replaced by placeholders. The answer
is parsed and cleaned (``bot.llm.commands``); when nothing usable is left, or the model
fails, the offline commands stand.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from bot import constants
from bot.dialogue import commands as cmd
from bot.dialogue.command_generator import DIGRESSION_CONFIDENCE
from bot.dialogue.stack import collecting, top_user_frame
from bot.dialogue.turn import Turn
from bot.domain import Domain
from bot.errors import LLMError
from bot.flows.conditions import compile_condition
from bot.flows.model import FlowsList
from bot.interpreter import Parse
from bot.llm import guard
from bot.llm.client import LLMClient
from bot.llm.commands import clean, collected_slots, llm_fillable, parse_commands
from bot.llm.prompts import PromptTemplates
from bot.privacy import Redactor, personal_slot_values

log = logging.getLogger(__name__)

_UNSURE_KINDS = (cmd.Search, cmd.CannotHandle, cmd.Clarify, cmd.RejectValue)
"""Offline commands that mean understanding could not place the message."""


class LLMRouter:
    """Turns a message into commands with the model's help (the dialogue's command source)."""

    def __init__(
        self,
        *,
        client: LLMClient,
        flows: FlowsList,
        domain: Domain,
        templates: PromptTemplates,
        mode: str = "unsure",
    ) -> None:
        if mode not in constants.LLM_ROUTING_MODES:
            raise ValueError(f"routing mode must be one of {constants.LLM_ROUTING_MODES}")
        self.client = client
        self.flows = flows
        self.domain = domain
        self.templates = templates
        self.mode = mode
        self._descriptions = _slot_descriptions(flows)
        self._flow_slots = {
            flow.id: sorted(
                name
                for name in collected_slots(flows, flow)
                if name in domain.slots and llm_fillable(domain.slots[name])
            )
            for flow in flows.flows.values()
        }
        self._catalogue = [
            (
                flow.guard,
                {
                    "name": flow.id,
                    "description": " ".join((flow.description or flow.readable_name).split()),
                    "slots": [
                        {
                            "name": name,
                            "description": self._descriptions.get(name),
                            "allowed_values": list(domain.slots[name].values),
                        }
                        for name in self._flow_slots[flow.id]
                    ],
                },
            )
            for flow in flows.user_flows()
        ]

    def wanted(self, parse: Parse, offline: Sequence[cmd.Command]) -> bool:
        """Whether this message goes to the model at all."""
        if parse.from_payload or parse.unknown_payload or parse.set_slots or not parse.text.strip():
            return False
        if any(isinstance(c, cmd.InternalError) for c in offline):
            return False
        if self.mode == "always":
            return True
        if any(isinstance(c, cmd.StartFlow | cmd.Clarify) for c in offline):
            return parse.confidence < DIGRESSION_CONFIDENCE  # a flow started on a hunch
        return bool(offline) and all(isinstance(c, _UNSURE_KINDS) for c in offline)

    async def commands(
        self, turn: Turn, parse: Parse, offline: list[cmd.Command]
    ) -> list[cmd.Command]:
        """The model's cleaned commands, or ``offline`` when it has nothing usable."""
        typed = parse.text.strip() and not (parse.from_payload or parse.unknown_payload)
        if typed and guard.is_injection(parse.text):
            # Never sent to the model; the answer backend refuses it, whatever the mode.
            log.info("commands for %s: instructions-override attempt", turn.state.conversation_id)
            return self._decided(turn, [cmd.Search()])
        if not self.wanted(parse, offline):
            return offline
        if turn.llm_deadline is None:
            turn.llm_deadline = time.monotonic() + self.client.timeout
        messages, redactor = self.prompt(turn, parse)
        try:
            completion = await self.client.complete(
                messages, purpose="commands", deadline=turn.llm_deadline
            )
        except LLMError as err:
            log.warning("LLM commands for %s failed: %s", turn.state.conversation_id, err)
            return offline
        parsed = parse_commands(
            completion.text,
            [(call.name, call.arguments) for call in completion.tool_calls],
            restore=redactor.restore,
        )
        cleaned = clean(
            parsed,
            flows=self.flows,
            domain=self.domain,
            slots=turn.slots(),
            stack=turn.state.stack,
        )
        log.info(
            "LLM commands for %s: %d parsed, %d kept",
            turn.state.conversation_id,
            len(parsed),
            len(cleaned),
        )
        return self._decided(turn, cleaned) if cleaned else offline

    def _decided(self, turn: Turn, commands: list[cmd.Command]) -> list[cmd.Command]:
        """Record the model's commands on the message's parse data, as Rasa does."""
        turn.parse["commands"] = [
            {"command": type(c).__name__, **dataclasses.asdict(c)} for c in commands
        ]
        return commands

    def prompt(self, turn: Turn, parse: Parse) -> tuple[list[dict[str, str]], Redactor]:
        """The messages for the model (system: the rendered template; user: the message)."""
        slots = turn.slots()
        redactor = Redactor(personal_slot_values(slots))
        stack = turn.state.stack
        active = top_user_frame(stack)
        active_flow = self.flows.get(str(active["flow_id"])) if active else None
        pending = collecting(stack)
        current_slot = str(pending["collect"]) if pending else None
        history = turn.state.transcript[-constants.LLM_HISTORY_TURNS :]
        conversation = "\n".join(
            f"{'USER' if speaker == 'user' else 'AI'}: {redactor.redact(text)}"
            for speaker, text in history
        )
        user_message = redactor.redact(parse.text)
        system = self.templates.render(
            "commands",
            available_flows=self._available_flows(slots),
            current_flow=active_flow.id if active_flow else None,
            current_slot=current_slot,
            current_slot_description=self._descriptions.get(current_slot or ""),
            flow_slots=self._flow_slots_now(
                active_flow.id if active_flow else None, slots, redactor
            ),
            current_conversation=conversation,
            user_message=user_message,
            language=turn.language,
        )
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": user_message},
        ]
        return messages, redactor

    def _available_flows(self, slots: dict[str, Any]) -> list[dict[str, Any]]:
        """The flows the customer may start now (their guards hold), as the template wants them."""
        return [
            flow
            for guard_condition, flow in self._catalogue
            if guard_condition is None or compile_condition(guard_condition).evaluate(slots)
        ]

    def _flow_slots_now(
        self, flow_id: str | None, slots: dict[str, Any], redactor: Redactor
    ) -> list[dict[str, Any]]:
        out = []
        for name in self._flow_slots.get(flow_id or "", ()):
            definition = self.domain.slots[name]
            value = slots.get(name)
            out.append(
                {
                    "name": name,
                    "value": None
                    if value is None
                    else redactor.redact(str(value))[: constants.LLM_SLOT_CHARS],
                    "type": definition.type,
                    "allowed_values": list(definition.values),
                    "description": self._descriptions.get(name),
                }
            )
        return out


def _slot_descriptions(flows: FlowsList) -> dict[str, str]:
    """Each slot's description: that of the first collect step asking for it."""
    found: dict[str, str] = {}
    for flow in flows.user_flows():
        for step in flow.collect_steps():
            if step.description and step.collect not in found:
                found[step.collect] = " ".join(step.description.split())
    return found
