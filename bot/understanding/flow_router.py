"""Offline routing by flow descriptions: the message compared with what each flow says it does.

A Rasa CALM project has no NLU examples; its flows are chosen by an LLM reading their
``description``. With no LLM, kefu compares the message with each such flow's name,
description and ``nlu_trigger`` examples (where the project has some) using the same sentence
encoders as the classifier's second step (`bot.understanding.encoder`: MiniLM for English,
multilingual-e5-small for Chinese, which also reads English descriptions). A flow's score is
its best cosine similarity; the answer is an :class:`IntentPrediction` over flow ids, so the
out-of-scope decision reaches the dialogue exactly as the classifier's does: out of scope, the
message goes on to small talk or the knowledge base.

Flows the router considers: user flows that no trained intent starts, that are not always
guarded off (``if: False``) and that no other flow calls (a called flow is a step of others).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from bot.flows.model import CallStep, Flow
from bot.understanding.classifier import IntentPrediction
from bot.understanding.encoder import LANGUAGES, encoder
from bot.understanding.language import detect_language

# Calibrated on the user messages of Rasa Pro 3.21's project templates and kefu's own
# description-router test set (tests/test_flow_router.py). MiniLM cosines of a message and
# the text of the flow it means lie around 0.35-0.75, unrelated ones below 0.3; short
# answers ("yes", "April") land near 0.35 with no clear winner. multilingual-e5's cosines are
# compressed towards 1 (0.85-0.9 for nearly anything), so in Chinese what counts is how far
# the best flow stands above the average flow: 0.03-0.15 when meant, 0.02-0.025 when not.
THRESHOLDS = {"en": 0.3, "zh": 0.85}
"""Best similarity below this: out of scope."""
UNSURE_BAND = {"en": 0.1, "zh": 0.0}
"""English: best similarity less than this above the threshold ..."""
MARGIN = {"en": 0.1, "zh": 0.0}
"""... and less than this above the runner-up: out of scope too ("yes", "April")."""
LIFT = {"en": 0.0, "zh": 0.03}
"""Chinese: the best flow must stand this far above the average of the others (given two
others or more)."""
RANKING_SIZE = 5
SEARCH = "pattern_search"
"""The knowledge base competes as if it were a flow: a message clearly closer to one of its
questions than to any flow is out of scope for flows (and goes on to the knowledge base)."""
SEARCH_MARGIN = {"en": 0.05, "zh": 0.02}
"""How much closer to a knowledge question than to the best flow "clearly" is."""
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；])\s+|\s+-\s+")
_BOILERPLATE = re.compile(
    r"\b(?:(?:this|a|the) )?(?:conversation )?flow (?:for|to|that|which)\b|"
    r"\b(?:the |a )?users?(?:'s?)?\b",
    re.IGNORECASE,
)


class FlowRouter:
    """Ranks the project's description-only flows for a message; build with :meth:`for_flows`."""

    def __init__(self, texts: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """``texts``: per flow id, per encoder language (``en``, ``zh``), what the flow is for."""
        self._flow_ids = tuple(texts)
        self._texts: dict[str, list[str]] = {}
        self._owner: dict[str, np.ndarray] = {}
        for language in LANGUAGES:
            owners = []
            for index, flow_id in enumerate(self._flow_ids):
                for text in texts[flow_id].get(language, ()):
                    self._texts.setdefault(language, []).append(text)
                    owners.append(index)
            self._owner[language] = np.array(owners, dtype=np.intp)
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_flows(
        cls,
        flows: Iterable[Flow],
        *,
        trained_intents: set[str],
        examples: Mapping[str, list[str]],
        questions: Iterable[tuple[str, str]] = (),
    ) -> FlowRouter | None:
        """The router for the flows that need it; None when every flow has training examples.

        ``examples`` maps an intent to its NLU examples: a routed flow's ``nlu_trigger``
        intents lend it their examples. ``questions`` are the knowledge base's ``(question,
        language)`` pairs, which compete with the flows.
        """
        flows = list(flows)
        called = {s.call for f in flows for s in f.steps if isinstance(s, CallStep)}
        texts: dict[str, dict[str, list[str]]] = {}
        for flow in flows:
            if flow.is_pattern or flow.guard is False or flow.id in called:
                continue
            if any(t.intent in trained_intents for t in flow.nlu_triggers):
                continue
            texts[flow.id] = {lang: _flow_texts(flow, examples, lang) for lang in LANGUAGES}
        if not texts:
            return None
        searched: dict[str, list[str]] = {}
        for question, language in questions:
            searched.setdefault(_encoder_language(language), []).append(question)
        if searched:
            texts[SEARCH] = searched
        return cls(texts)

    @property
    def flow_ids(self) -> tuple[str, ...]:
        """The flows this router may choose."""
        return self._flow_ids[:-1] if self._flow_ids[-1:] == (SEARCH,) else self._flow_ids

    def warm_up(self, language: str = "en") -> None:
        """Embed the flows' texts for ``language`` now rather than on the first message."""
        self._flow_vectors(_encoder_language(language))

    def route(self, text: str, *, language: str | None = None) -> IntentPrediction:
        """Flows ranked by similarity to ``text``; out of scope below the language's threshold."""
        if not text.strip():
            return IntentPrediction(ranking=(), out_of_scope=True)
        lang = _encoder_language(language or detect_language(text, default="en"))
        vector = encoder(lang).embed_one(text)
        similarities = self._flow_vectors(lang) @ vector
        best = np.full(len(self._flow_ids), 0.0, dtype=np.float32)
        np.maximum.at(best, self._owner[lang], similarities)
        searched = 0.0
        if self._flow_ids[-1] == SEARCH:
            searched, best = float(best[-1]), best[:-1]
        order = np.argsort(-best)[:RANKING_SIZE]
        ranking = tuple((self._flow_ids[i], float(best[i])) for i in order)
        others = np.delete(best, order[0])
        lift = float(best[order[0]] - others.mean()) if len(others) >= 2 else 1.0
        out_of_scope = searched > ranking[0][1] + SEARCH_MARGIN[lang] or _out_of_scope(
            ranking, lift, lang
        )
        return IntentPrediction(ranking=ranking, out_of_scope=out_of_scope)

    def _flow_vectors(self, language: str) -> np.ndarray:
        with self._lock:
            vectors = self._vectors.get(language)
            if vectors is None:
                texts = self._texts.get(language, [])
                vectors = self._vectors[language] = encoder(language).embed(texts)
            return vectors


def _out_of_scope(ranking: tuple[tuple[str, float], ...], lift: float, language: str) -> bool:
    best = ranking[0][1]
    second = ranking[1][1] if len(ranking) > 1 else 0.0
    threshold = THRESHOLDS[language]
    unsure = best < threshold + UNSURE_BAND[language] and best - second < MARGIN[language]
    return best < threshold or unsure or lift < LIFT[language]


def _encoder_language(language: str) -> str:
    return "zh" if language.split("-")[0] == "zh" else "en"


def _flow_texts(flow: Flow, examples: Mapping[str, list[str]], language: str) -> list[str]:
    """What a flow says it is for: its id and name as words, its description (without
    "flow for", "the user") and each of its sentences, its trigger intents' examples, and
    for Chinese its ``translation``'s name and description for ``zh``."""
    texts = [flow.id.replace("_", " "), flow.readable_name.replace("_", " ")]
    descriptions = [flow.description]
    if language == "zh":
        translated = flow.translation.get("zh", {})
        texts.extend(t for t in (translated.get("name"),) if t)
        descriptions.append(translated.get("description", ""))
    for text in descriptions:
        description = " ".join(_BOILERPLATE.sub(" ", text).split())
        if description:
            texts.append(description)
            sentences = _SENTENCE_END.split(description)
            if len(sentences) > 1:
                texts.extend(sentences)
    for trigger in flow.nlu_triggers:
        texts.extend(examples.get(trigger.intent, ()))
    return list(dict.fromkeys(t for t in texts if t.strip()))
