"""The desk's copilot: translations between customer and agent, and drafted replies.

With an LLM configured, a customer who writes in another language than the agents'
(``KEFU_DESK_LANGUAGE``) has each message mirrored into the ticket's thread with a
translation; an agent who turns ``/kefu translate on`` for a ticket writes in their own
language and the customer receives the translation; ``/kefu suggest`` drafts a reply grounded
in the shop's knowledge passages and the conversation window, for the agent to edit and send.

Everything that leaves for the model is redacted first (``bot.privacy``), its placeholders
restored in what comes back. A failing model returns None: the desk then posts the original
alone (the mirror never waits on it) and tells the agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot import constants
from bot.dialogue.language import base_language
from bot.errors import LLMError
from bot.knowledge import KnowledgeBase, Passage, excerpt
from bot.llm.grounding import LANGUAGE_NAMES, grounding_passages
from bot.llm.prompts import PromptTemplates
from bot.privacy import Redactor, personal_slot_values
from bot.understanding.language import detect_language

__all__ = ["ChatModel", "DeskCopilot"]

log = logging.getLogger(__name__)


class _Said(Protocol):
    @property
    def text(self) -> str: ...


class ChatModel(Protocol):
    """The LLM client as the copilot uses it (``bot.llm.client.LLMClient`` is one)."""

    async def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        purpose: str,
        deadline: float | None = None,
        max_tokens: int | None = None,
    ) -> _Said:
        """The model's answer; raises ``LLMError`` on anything but a usable one."""
        ...


class DeskCopilot:
    """Translates and drafts for the desk's agents; every method returns None on failure."""

    def __init__(
        self,
        *,
        client: ChatModel,
        templates: PromptTemplates,
        desk_language: str,
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        self.client = client
        self.templates = templates
        self.desk_language = desk_language
        self.knowledge = knowledge

    def translates(self, language: str) -> bool:
        """Whether a customer writing in ``language`` needs translating for the agents."""
        return base_language(language) != base_language(self.desk_language)

    async def translate(
        self,
        text: str,
        *,
        source: str,
        target: str,
        slots: Mapping[str, Any] | None = None,
    ) -> str | None:
        """``text`` from ``source`` into ``target``; None when the model failed."""
        if not text.strip():
            return None
        redactor = Redactor(personal_slot_values(slots or {}))
        system = self.templates.render(
            "translate", source_name=_name(source), target_name=_name(target)
        )
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": redactor.redact(text)},
        ]
        try:
            said = await self.client.complete(messages, purpose="desk:translate")
        except LLMError as err:
            log.warning("the desk's translation failed: %s", err)
            return None
        translated = said.text.strip()
        if not translated:
            return None
        return redactor.restore(translated[: constants.DESK_COPILOT_MAX_CHARS])

    async def suggest(
        self,
        *,
        language: str,
        history: Sequence[tuple[str, str]],
        slots: Mapping[str, Any] | None = None,
    ) -> str | None:
        """A draft of the agent's next reply in ``language``; None when the model failed.

        ``history`` is the conversation window as ``(speaker, text)``, speaker ``Customer``,
        ``Assistant`` or ``Agent``, oldest first.
        """
        slots = slots or {}
        redactor = Redactor(personal_slot_values(slots))
        window = [
            (speaker, redactor.redact(text))
            for speaker, text in history[-constants.LLM_HISTORY_TURNS :]
        ]
        asked = next((text for speaker, text in reversed(history) if speaker == "Customer"), "")
        # The customer's question finds passages in the customer's language; the draft is
        # written in ``language`` (the desk's, with translation on).
        passages = await self._passages(asked, detect_language(asked))
        facts = {
            name: redactor.redact(str(value))[: constants.LLM_SLOT_CHARS]
            for name, value in slots.items()
            if value is not None and not isinstance(value, dict | list)
        }
        system = self.templates.render(
            "suggest",
            language_name=_name(language),
            passages=passages,
            facts=facts,
            history=window,
            max_sentences=3,
        )
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": "Draft the agent's reply now."},
        ]
        try:
            said = await self.client.complete(messages, purpose="desk:suggest")
        except LLMError as err:
            log.warning("the desk's suggestion failed: %s", err)
            return None
        draft = said.text.strip()
        if not draft:
            return None
        return redactor.restore(excerpt(draft, constants.DESK_COPILOT_MAX_CHARS))

    async def _passages(self, query: str, language: str) -> list[Passage]:
        if self.knowledge is None or not query.strip():
            return []
        # Ranking by meaning runs a sentence encoder: off the event loop.
        return await asyncio.to_thread(grounding_passages, self.knowledge, query, language=language)


def _name(language: str) -> str:
    return LANGUAGE_NAMES.get(base_language(language), language)
