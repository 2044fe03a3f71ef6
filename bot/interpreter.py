"""Offline understanding of one message: language, intent, entities, sentiment, and button
payloads.

Button payloads bypass the classifier: ``/intent{"slot": "value"}`` is that intent with
certainty and those entities; ``/SetSlots(slot=value, ...)`` sets slots directly. A message
no intent covers is offered to the description router (flows that have no NLU examples).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import constants
from bot.domain import BUILTIN_INTENTS
from bot.edge import parse_json
from bot.errors import BadRequestError, EncoderDeferredError
from bot.understanding.classifier import IntentClassifier
from bot.understanding.code_switch import in_chinese
from bot.understanding.encoder import cached_only
from bot.understanding.entities import EntityExtractor
from bot.understanding.flow_router import FlowRouter
from bot.understanding.hallmarks import Hallmarks
from bot.understanding.language import detect_language
from bot.understanding.spelling import SpellingCorrector
from bot.understanding.training_data import TrainingData

if TYPE_CHECKING:
    from bot.flows.model import Flow
    from bot.ports import SentimentScorer

_INTENT_PAYLOAD = re.compile(r"^/(?P<intent>[\w.-]+)(?P<entities>\{.*\})?\s*$", re.DOTALL)
_SET_SLOTS_PAYLOAD = re.compile(r"^/SetSlots\((?P<body>.*)\)\s*$", re.DOTALL)
_QUICK_CHARS = 300
"""Longer messages are not tried by `Interpreter.parse_if_quick` (lexicons and n-grams over
thousands of characters take milliseconds too)."""
_CLAUSE_BREAK = re.compile(
    r"[,.!?;]+(?=\s|$)|[，。！？；\n]+|\b(?:and also|also|btw|by the way|plus)\b|"
    r"另外|还有|顺便问一?下|顺便",
    re.IGNORECASE,
)
"""Where clauses meet; a dot or comma inside a token (an e-mail address, 1,299) is none."""
_WORDS = re.compile(r"[^\W\d_]{2,}|[\u4e00-\u9fff]")
MAX_CLAUSES = 4
"""Messages of more clauses are read as a whole only (each clause costs a classification)."""
_ASIDE = re.compile(r"[?？]|\b(?:also|btw|by the way)\b|另外|顺便|还有", re.IGNORECASE)
"""A task's message with one of these may ask a question beside it ("… and also do you ship
to Hong Kong?"): its clauses are read too."""


@dataclass(frozen=True)
class Parse:
    """What one message means, as far as offline understanding can tell."""

    text: str
    language: str
    intent: str | None
    confidence: float
    ranking: tuple[tuple[str, float], ...] = ()
    entities: tuple[dict[str, Any], ...] = ()
    set_slots: dict[str, Any] = field(default_factory=dict)
    """Slots a ``/SetSlots(...)`` payload sets."""
    from_payload: bool = False
    unknown_payload: bool = False
    flows: tuple[tuple[str, float], ...] = ()
    """Flows the description router matched (best first) when no intent did."""
    sentiment: float | None = None
    """How the customer feels in the message, -1 to 1; None for a button press or no text."""
    clauses: tuple[tuple[str, str, float], ...] = ()
    """``(clause, intent, confidence)`` for each clause of a message of several whose best
    intent as a whole starts no flow ("the earphones crackle, I want to return them, who
    pays the postage?"): a task asked for in one clause is not lost to a question in another."""

    @classmethod
    def refused(cls, text: str, *, language: str) -> Parse:
        """The understanding of a payload kefu will not act on (no intent knows it, or no
        button offered it): no intent, no entities, no slots."""
        return cls(
            text=text,
            language=language,
            intent=None,
            confidence=0.0,
            from_payload=True,
            unknown_payload=True,
        )

    def to_rasa(self) -> dict[str, Any]:
        """Rasa's ``parse_data`` shape, as stored on the user event and seen by actions, with
        kefu's ``"sentiment"`` when the message has a score."""
        data: dict[str, Any] = {
            "text": self.text,
            "intent": {"name": self.intent, "confidence": self.confidence},
            "intent_ranking": [{"name": n, "confidence": c} for n, c in self.ranking[:5]],
            "entities": list(self.entities),
            "language": self.language,
        }
        if self.sentiment is not None:
            data["sentiment"] = round(self.sentiment, 4)
        return data


class Interpreter:
    """Turns text into a :class:`Parse` with the project's classifier and entity extractor."""

    def __init__(
        self,
        *,
        classifier: IntentClassifier | None,
        extractor: EntityExtractor,
        intents: set[str],
        router: FlowRouter | None = None,
        sentiment: SentimentScorer | None = None,
        speller: SpellingCorrector | None = None,
        task_intents: frozenset[str] = frozenset(),
        hallmarks: Hallmarks | None = None,
    ) -> None:
        self.classifier = classifier
        self.extractor = extractor
        self.intents = intents | BUILTIN_INTENTS
        self.router = router
        self.sentiment = sentiment
        self.speller = speller
        self.task_intents = task_intents
        self.hallmarks = hallmarks
        """Decides between two close intents by the words their examples tell apart."""
        """Intents that start a flow: a message whose best intent is one is not split."""

    @classmethod
    def train(
        cls,
        nlu: TrainingData,
        *,
        entity_names: tuple[str, ...],
        intents: tuple[str, ...],
        cache_dir: Path,
        cache_keep: int = constants.DEFAULT_CACHE_KEEP,
        flows: Iterable[Flow] = (),
        questions: Iterable[tuple[str, str]] = (),
        sentiment: SentimentScorer | None = None,
    ) -> Interpreter:
        """Train (or load from ``cache_dir``, keyed by content hash) the project's models;
        ``flows`` that no trained intent starts get the description router, where the
        knowledge base's ``(question, language)`` pairs compete with them; ``cache_dir`` keeps
        the ``cache_keep`` classifiers used last. ``sentiment`` scores every message that has
        text. The classifier reads messages with typos corrected towards the examples' words."""
        flows = list(flows)
        examples = [(e.text, e.intent) for e in nlu.examples]
        classifier = None
        if len({intent for _, intent in examples}) >= 1 and examples:
            classifier = IntentClassifier.train_cached(
                examples, cache_dir=cache_dir, keep=cache_keep
            )
            classifier.load_encoders()
        extractor = EntityExtractor.from_training_data(nlu, entity_names)
        by_intent: dict[str, list[str]] = {}
        for text, intent in examples:
            by_intent.setdefault(intent, []).append(text)
        speller = SpellingCorrector.from_texts(text for text, _ in examples) if examples else None
        router = FlowRouter.for_flows(
            flows,
            trained_intents=set(by_intent) if classifier is not None else set(),
            examples=by_intent,
            questions=questions,
        )
        if router is not None:
            router.warm_up()
        return cls(
            classifier=classifier,
            extractor=extractor,
            intents=set(intents) | set(nlu.intents),
            router=router,
            sentiment=sentiment,
            speller=speller,
            task_intents=frozenset(
                t.intent for f in flows if not f.is_pattern for t in f.nlu_triggers if t.intent
            ),
            hallmarks=Hallmarks(examples) if examples else None,
        )

    def may_be_slow(self, text: str) -> bool:
        """Whether parsing ``text`` may take milliseconds rather than a fraction of one."""
        text = text[: constants.MAX_MESSAGE_CHARS]
        if self.router is not None:
            return True  # an encoder reads every message the classifier does not place
        if self.sentiment is not None and text.strip():
            return True  # English sentiment reads the message with an encoder
        return self.classifier is not None and self.classifier.may_be_slow(text)

    def parse_if_quick(self, text: str, *, language: str) -> Parse | None:
        """``parse`` of a typed message, unless that needs a sentence encoder to compute (2 ms
        of CPU for English, 10-20 ms for Chinese) or the message is long: None then, for the
        caller to parse it in a thread. A message an encoder has just read counts as quick."""
        if len(text) > _QUICK_CHARS:
            return None
        with cached_only():
            try:
                return self.parse(text, language=language)
            except EncoderDeferredError:
                return None

    def parse(self, text: str, *, payload: str | None = None, language: str) -> Parse:
        """Understand a message; ``language`` (the conversation's) is kept for text without
        letters and for button payloads, which carry no language of their own."""
        text = text[: constants.MAX_MESSAGE_CHARS]
        if payload:
            # A button press says nothing about the language: the conversation's is kept.
            parsed = self.parse_payload(payload, text=text or payload, language=language)
            if parsed is not None:
                return parsed
        lang = detect_language(text, default=language) if text else language
        entities = tuple(self.extractor.extract(text)) if text else ()
        if not text.strip():
            return Parse(text=text, language=lang, intent=None, confidence=0.0, entities=entities)
        read = self.wording(text)
        prediction = self.classifier.predict(read) if self.classifier is not None else None
        flows: tuple[tuple[str, float], ...] = ()
        if self.router is not None and (prediction is None or prediction.intent is None):
            routed = self.router.route(read, language=lang)
            flows = () if routed.out_of_scope else routed.ranking
        ranking = prediction.ranking if prediction else ()
        if prediction is not None and prediction.intent is not None and self.hallmarks:
            ranking = self.hallmarks.rerank(ranking, text, lang)
        clauses: tuple[tuple[str, str, float], ...] = ()
        if prediction is not None and (
            not ranking or ranking[0][0] not in self.task_intents or _ASIDE.search(text)
        ):
            clauses = self._clauses(text)
        return Parse(
            text=text,
            language=lang,
            intent=ranking[0][0] if prediction and prediction.intent else None,
            confidence=ranking[0][1] if prediction and prediction.intent else 0.0,
            ranking=ranking,
            entities=entities,
            flows=flows,
            sentiment=self.sentiment.score(text, lang) if self.sentiment is not None else None,
            clauses=clauses,
        )

    def _clauses(self, text: str) -> tuple[tuple[str, str, float], ...]:
        """Each clause's best intent, for a message of two to :data:`MAX_CLAUSES` clauses."""
        if self.classifier is None:
            return ()
        parts = [p.strip() for p in _CLAUSE_BREAK.split(text) if p and _WORDS.search(p)]
        if not 2 <= len(parts) <= MAX_CLAUSES:
            return ()
        read: list[tuple[str, str, float]] = []
        for part in parts:
            prediction = self.classifier.predict(self.wording(part))
            if prediction.intent is not None:
                read.append((part, prediction.intent, prediction.confidence))
        return tuple(read)

    def wording(self, text: str) -> str:
        """What the models read of a message: typos corrected, English shop words in a
        Chinese message put in Chinese (entities and slot values keep the original)."""
        corrected = self.speller.correct(text) if self.speller is not None else text
        return in_chinese(corrected)

    def parse_payload(self, payload: str, *, text: str, language: str) -> Parse | None:
        """Parse ``/intent{...}`` or ``/SetSlots(...)``; None when it is not a payload at all."""
        payload = payload.strip()
        match = _SET_SLOTS_PAYLOAD.match(payload)
        if match:
            return Parse(
                text=text,
                language=language,
                intent=None,
                confidence=1.0,
                set_slots=_parse_set_slots(match.group("body")),
                from_payload=True,
            )
        match = _INTENT_PAYLOAD.match(payload)
        if not match:
            return None
        intent = match.group("intent")
        if intent not in self.intents:
            return Parse.refused(text, language=language)
        entities = _payload_entities(match.group("entities"))
        return Parse(
            text=text,
            language=language,
            intent=intent,
            confidence=1.0,
            ranking=((intent, 1.0),),
            entities=entities,
            from_payload=True,
        )


def _payload_entities(raw: str | None) -> tuple[dict[str, Any], ...]:
    if not raw:
        return ()
    try:
        data = parse_json(raw.encode(errors="replace"))
    except BadRequestError:  # not JSON, or none a store can hold (too deep, huge integers)
        return ()
    if not isinstance(data, dict):
        return ()
    return tuple({"entity": str(k), "value": v, "extractor": "payload"} for k, v in data.items())


def set_slots_of(payload: str) -> dict[str, Any] | None:
    """The slots a ``/SetSlots(...)`` payload sets; None when it is not one."""
    match = _SET_SLOTS_PAYLOAD.match(payload.strip())
    return _parse_set_slots(match.group("body")) if match else None


def _parse_set_slots(body: str) -> dict[str, Any]:
    """``slot=value, other=value`` with Rasa's literals: true/false/null, numbers, quoted text."""
    slots: dict[str, Any] = {}
    for part in _split_arguments(body):
        name, sep, raw = part.partition("=")
        if not sep or not name.strip():
            continue
        slots[name.strip()] = _literal(raw.strip())
    return slots


def _split_arguments(body: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in body:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", ""):
        return None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    try:
        return parse_json(raw.encode(errors="replace"))
    except BadRequestError:
        return raw
