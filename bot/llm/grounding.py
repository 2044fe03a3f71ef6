"""What grounds a model's text in the shop's knowledge: the passages a prompt quotes.

The bot's answers (``bot.llm.answerer``) and the desk's drafted replies (``bot.desk.copilot``)
quote the same passages, chosen here once.
"""

from __future__ import annotations

from bot import constants
from bot.knowledge import KnowledgeBase, Passage

__all__ = ["LANGUAGE_NAMES", "grounding_passages"]

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese (简体中文)"}
"""Names the prompts give languages; other codes are named by their code."""
MIN_PASSAGE_RELEVANCE = 0.3
"""A passage less relevant than this (``Passage.relevance``) is not quoted."""


def grounding_passages(knowledge: KnowledgeBase, query: str, *, language: str) -> list[Passage]:
    """The best :data:`~bot.constants.LLM_PASSAGES` passages for ``query`` that are relevant
    enough, each cut to :data:`~bot.constants.LLM_PASSAGE_CHARS`. Ranking by meaning runs a
    sentence encoder: call it off the event loop when ``knowledge.ranks_by_meaning``."""
    found = knowledge.search(query, language=language, limit=constants.LLM_PASSAGES)
    return [
        Passage(
            title=p.title,
            text=p.text[: constants.LLM_PASSAGE_CHARS],
            source=p.source,
            score=p.score,
            relevance=p.relevance,
            coverage=p.coverage,
            language=p.language,
        )
        for p in found
        if p.relevance >= MIN_PASSAGE_RELEVANCE
    ]
