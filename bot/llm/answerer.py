"""Grounded answers from a language model, behind the ``AnswerBackend`` port.

The prompt carries the persona and rules, the knowledge passages that match the customer's
message, a bounded window of the conversation and the conversation's slots, all with personal
data replaced by placeholders. The answer is checked (guard rails), cut to a bounded length
and has its placeholders restored. When the passages cannot answer, the customer gets an
honest "not sure" with a button to reach a colleague. When the model fails in any way, the
offline knowledge answer is used if there is one, else an apology with the same offer: the
customer is never left without a reply.

In approved-response mode the model only picks one of the domain's responses or a passage to
quote; its own words never reach the customer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from bot import constants
from bot.domain import Domain
from bot.errors import LLMError
from bot.events import BotMessage
from bot.knowledge import KnowledgeBase, Passage, excerpt
from bot.llm import guard
from bot.llm.client import LLMClient
from bot.llm.grounding import LANGUAGE_NAMES, grounding_passages
from bot.llm.prompts import PromptTemplates
from bot.ports import Answer, AnswerBackend, AnswerRequest
from bot.privacy import Redactor, personal_slot_values
from bot.responses import ResponseRenderer

log = logging.getLogger(__name__)

NOT_SURE_MARKER = "NOT_SURE"
UTTER_NOT_SURE = "utter_llm_not_sure"
"""The honest answer when the passages cannot answer (with a button to reach a colleague)."""
UTTER_UNAVAILABLE = "utter_llm_unavailable"
"""The apology when the model failed and the offline answerer has nothing either."""
UTTER_REFUSE = "utter_llm_refuse"
"""The reply to an attempt to change or reveal the assistant's instructions."""

UPSET_BELOW = -0.3
"""A sentiment score (-1 to 1) below this makes the answer calm and apologetic."""
_APPROVED_LINE = re.compile(
    r"^\W*(?:(response)\s+[`'\"]?(?P<response>[\w-]+)|(passage)\s*\[?(?P<passage>\d+)\]?|(?P<none>none))\W*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Prompt:
    """What goes to the model for one answer, and what checking the answer needs."""

    messages: list[dict[str, str]]
    instructions: str
    passages: list[Passage]
    redactor: Redactor


class LLMAnswerer:
    """``AnswerBackend`` that asks a language model, falling back to ``offline``."""

    def __init__(
        self,
        *,
        client: LLMClient,
        domain: Domain,
        templates: PromptTemplates,
        knowledge: KnowledgeBase | None = None,
        offline: AnswerBackend | None = None,
        approved_only: bool = False,
    ) -> None:
        self.client = client
        self.domain = domain
        self.templates = templates
        self.knowledge = knowledge
        self.offline = offline
        self.approved_only = approved_only
        self.renderer = ResponseRenderer(domain)
        self._instructions: str | None = None

    async def answer(self, request: AnswerRequest) -> Answer:
        """An answer for the customer; never raises and never returns silence on failure."""
        if guard.is_injection(request.text):
            log.info(
                "answer for %s: instructions-override attempt refused", request.conversation_id
            )
            return self._response(UTTER_REFUSE, request) or await self._fallback(request)
        try:
            if self.approved_only:
                return await self._approved(request)
            return await self._grounded(request)
        except LLMError as err:
            log.warning("LLM answer for %s failed: %s", request.conversation_id, err)
            return await self._fallback(request)

    # --- free answers ---------------------------------------------------------------------

    async def _grounded(self, request: AnswerRequest) -> Answer:
        prompt = self.prompt("answer", request, passages=await self.passages(request))
        completion = await self.client.complete(
            prompt.messages, purpose=f"answer:{request.kind}", deadline=request.deadline
        )
        text = completion.text.strip().strip('"').strip()
        if not text:
            raise LLMError("LLM answered with tool calls, not text")
        if text.upper().startswith(NOT_SURE_MARKER) or text.upper().endswith(NOT_SURE_MARKER):
            return self._not_sure(request)
        texts = [p.text for p in prompt.passages]
        if guard.leaks(text, prompt.instructions):
            log.warning("LLM answer for %s repeated its instructions", request.conversation_id)
            return self._response(UTTER_REFUSE, request) or self._not_sure(request)
        if guard.promises(text, texts):
            log.warning(
                "LLM answer for %s promised what no passage states", request.conversation_id
            )
            return self._not_sure(request)
        if NOT_SURE_MARKER in text:
            raise LLMError("LLM answer mixes an answer with the not-sure marker")
        text = prompt.redactor.restore(excerpt(text, constants.LLM_MAX_ANSWER_CHARS))
        return Answer(text=text, sources=tuple(p.reference for p in prompt.passages))

    # --- approved responses only ----------------------------------------------------------

    async def _approved(self, request: AnswerRequest) -> Answer:
        choices = self._approved_responses(request)
        passages = await self.passages(request)
        prompt = self.prompt("approved", request, passages=passages, responses=choices)
        completion = await self.client.complete(
            prompt.messages, purpose=f"approved:{request.kind}", deadline=request.deadline
        )
        lines = [line for line in completion.text.strip("`\n ").splitlines() if line.strip()]
        match = _APPROVED_LINE.match(lines[0].strip()) if len(lines) == 1 else None
        if match is None:
            raise LLMError("LLM did not pick an approved reply")
        if match.group("none"):
            return self._not_sure(request)
        name = match.group("response")
        if name is not None:
            answer = self._response(name, request) if name in {c["name"] for c in choices} else None
            if answer is None:
                raise LLMError("LLM picked a response that is not approved")
            return answer
        index = int(match.group("passage")) - 1
        if not 0 <= index < len(prompt.passages):
            raise LLMError("LLM picked a passage it was not given")
        passage = prompt.passages[index]
        return Answer(text=excerpt(passage.text), sources=(passage.reference,))

    def _approved_responses(self, request: AnswerRequest) -> list[dict[str, str]]:
        """Responses that answer on their own: not questions a flow asks, not the engine's."""
        choices = []
        for name in self.domain.responses:
            if (
                name.startswith("utter_ask_")
                or name.endswith("_rasa")
                or name.startswith("utter_llm_")
            ):
                continue
            message = self._render(name, request)
            if message is not None and message.text:
                choices.append({"name": name, "text": " ".join(message.text.split())[:300]})
        return choices

    # --- shared -----------------------------------------------------------------------------

    def prompt(
        self,
        template: str,
        request: AnswerRequest,
        *,
        passages: list[Passage] | None = None,
        **extra: Any,
    ) -> Prompt:
        """The messages for ``template`` (system: rendered; user: the redacted message), with
        ``passages`` (default: retrieved here, on the caller's thread)."""
        redactor = Redactor(personal_slot_values(request.slots))
        if passages is None:
            passages = self._passages(request)
        history = [
            (speaker, redactor.redact(text))
            for speaker, text in request.history[-constants.LLM_HISTORY_TURNS :]
        ]
        facts = {
            name: redactor.redact(str(value))[: constants.LLM_SLOT_CHARS]
            for name, value in request.slots.items()
            if value is not None and not isinstance(value, dict | list)
        }
        variables = {
            "kind": request.kind,
            "language": request.language,
            "language_name": LANGUAGE_NAMES.get(request.language, request.language),
            "tone": _tone(request.sentiment),
            "passages": passages,
            "facts": facts,
            "history": history,
            "not_sure_marker": NOT_SURE_MARKER,
            "max_sentences": 3,
            **extra,
        }
        system = self.templates.render(template, **variables)
        instructions = self.instructions
        user = redactor.redact(request.text)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return Prompt(messages, instructions, passages, redactor)

    async def passages(self, request: AnswerRequest) -> list[Passage]:
        """The passages for ``request``; ranking by meaning runs a sentence encoder (a few
        milliseconds of CPU), so then off the event loop: other conversations go on."""
        if self.knowledge is not None and self.knowledge.ranks_by_meaning:
            return await asyncio.to_thread(self._passages, request)
        return self._passages(request)

    @property
    def instructions(self) -> str:
        """The persona and rules (rendered once): an answer repeating them is a leak."""
        if self._instructions is None:
            rules, persona = self.templates.render("rules"), self.templates.render("persona")
            self._instructions = rules + "\n" + persona
        return self._instructions

    def _passages(self, request: AnswerRequest) -> list[Passage]:
        if self.knowledge is None or request.kind == "chitchat":
            return []
        return grounding_passages(self.knowledge, request.text, language=request.language)

    async def _fallback(self, request: AnswerRequest) -> Answer:
        if self.offline is not None:
            try:
                offline = await self.offline.answer(request)
            except LLMError:
                offline = Answer(text=None)
            if offline.text:
                return offline
        if request.kind == "cannot_handle":
            return Answer(text=None)  # the pattern's own responses are the offline answer
        return self._response(UTTER_UNAVAILABLE, request) or Answer(text=None, handoff=True)

    def _not_sure(self, request: AnswerRequest) -> Answer:
        return self._response(UTTER_NOT_SURE, request) or Answer(text=None)

    def _response(self, name: str, request: AnswerRequest) -> Answer | None:
        message = self._render(name, request)
        if message is None or not message.text:
            return None
        return Answer(text=message.text, buttons=message.buttons, response=name)

    def _render(self, name: str, request: AnswerRequest) -> BotMessage | None:
        return self.renderer.render(
            name,
            conversation_id=request.conversation_id,
            slots=request.slots,
            language=request.language,
            channel=request.conversation_id.partition(":")[0] or None,
        )


def _tone(sentiment: float | None) -> str | None:
    if sentiment is None:
        return None
    if sentiment < UPSET_BELOW:
        return (
            "the customer is upset. Be calm and apologetic: acknowledge the trouble first, "
            "no exclamation marks, no jokes."
        )
    return None
