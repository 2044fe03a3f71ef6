"""How a customer feels in one message: a score from -1 (very negative) to 1, offline.

Chinese: kefu's own lexicon (``data/sentiment_zh.txt``) read clause by clause, longest word
first, with negators, intensifiers, downtoners and contrast words ("但是": what follows weighs
more). About 0.05 ms a message (a long review, a few ms).

English: VADER's general lexicon (PyPI ``vaderSentiment``, MIT, its lexicon inside the wheel),
kefu's own customer-service phrases (``data/sentiment_en.txt``: delays, lost parcels, being
kept waiting...) and the shape of the message (a question, a request, its length), with a
sentence embedding read through a logistic regression taught by kefu's own labelled messages
(``data/sentiment_examples_en.tsv``); a second logistic regression, also taught only by those
messages, weighs the parts. Two stages: first the static embedding the intent classifier has
already made of the message (WordLlama: nothing more to compute); only when that stage is near
the boundary (``CASCADE_BAND``) or the message negates an affect word, the MiniLM encoder
(about 2 ms a message, shared with the rest of the turn through its cache); a message of
codes, numbers and addresses alone that the first stage is unsure of scores 0 (the encoder has
nothing to read in it either: half of a flow's turns). The encoder reads about a third of the
airline tweets ``bench/sentiment.py`` scores; a caller on an event loop moves to a thread only
for those (``bot.understanding.encoder.cached_only``).

Nothing here was trained on the public sentiment data sets (their licences forbid shipping
such a model); each language's boundary between "negative" and "not" (one number each) was
tuned on them. ``bench/sentiment.py`` measures the result. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from vaderSentiment.vaderSentiment import NEGATE, SentimentIntensityAnalyzer

from bot.understanding.encoder import encoder
from bot.understanding.features import embedder, has_words, normalize

__all__ = [
    "CASCADE_BAND",
    "ENCODER_C",
    "NEGATIVE_BELOW",
    "STATIC_C",
    "ChineseLexicon",
    "EnglishScorer",
    "LogisticStage",
    "SentimentAnalyzer",
    "analyzer",
    "encoded_vectors",
    "examples",
    "phrases",
    "static_vectors",
]

NEGATIVE_BELOW = 0.0
"""A message scoring below this counts as negative (the boundary each language was tuned to)."""

ZH_BOUNDARY = 0.1
"""Chinese lexicon sums below this are negative: a review with no sentiment word leans negative."""

ZH_SCALE = 3.0
"""Lexicon units for a Chinese score of tanh(1) ≈ 0.76 away from the boundary."""

EN_BOUNDARY = -0.5
"""Log-odds of "negative" (the English combination's) above which a message is negative."""

EN_SCALE = 2.0
"""Log-odds for an English score of tanh(1) ≈ 0.76 away from the boundary."""

MAX_CHARS = 2000
"""Longer messages are scored on their first this many characters."""

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def _data(name: str) -> str:
    return (importlib.resources.files(__package__) / "data" / name).read_text(encoding="utf-8")


# --- Chinese ------------------------------------------------------------------------------

_CLAUSE = re.compile(r"[，,。.!！?？;；~～\s、…]+")
_NEGATED_POSITIVE = 0.8
"""A negated positive word ("不满意" aside, which the lexicon has) counts this much negative."""
_NEGATED_NEGATIVE = 0.5
"""A negated negative word ("不差") counts only this much positive."""
_AFTER_CONTRAST = 1.5
_BEFORE_CONTRAST = 0.7
_MODIFIER_REACH = 3
"""A negator or intensifier reaches a sentiment word at most this many characters on."""


@dataclass(frozen=True)
class ChineseLexicon:
    """Words with weights, and the modifiers that act on them."""

    words: dict[str, float]
    modifiers: dict[str, str]
    """Modifier word → kind: ``NEG``, ``INT``, ``DOWN`` or ``BUT``."""
    longest: int
    """Characters in the longest word or modifier."""

    @classmethod
    def parse(cls, text: str) -> ChineseLexicon:
        """Read the lexicon file's format (see ``data/sentiment_zh.txt``)."""
        words: dict[str, float] = {}
        modifiers: dict[str, str] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                kind, *members = line[1:].split()
                for member in members:
                    modifiers.setdefault(member, kind)
                continue
            word, weight = line.rsplit(None, 1)
            words[word] = float(weight)
        longest = max(map(len, [*words, *modifiers]), default=1)
        return cls(words=words, modifiers=modifiers, longest=longest)

    def polarity(self, text: str) -> float:
        """The message's sum in lexicon units: positive words minus negative ones."""
        positive = negative = 0.0
        after_contrast = False
        for clause in _CLAUSE.split(text[:MAX_CHARS]):
            negated, multiplier, gap = False, 1.0, 0
            i = 0
            while i < len(clause):
                for n in range(min(self.longest, len(clause) - i), 0, -1):
                    piece = clause[i : i + n]
                    if piece in self.words or piece in self.modifiers:
                        break
                else:
                    piece, n = clause[i], 1
                i += n
                weight = self.words.get(piece)
                kind = None if weight is not None else self.modifiers.get(piece)
                if weight is not None:
                    value = weight * multiplier
                    if negated:
                        value = -value * (_NEGATED_POSITIVE if weight > 0 else _NEGATED_NEGATIVE)
                    factor = _AFTER_CONTRAST if after_contrast else 1.0
                    if value > 0:
                        positive += value * factor
                    else:
                        negative -= value * factor
                    negated, multiplier, gap = False, 1.0, 0
                elif kind == "NEG":
                    negated, gap = not negated, 0
                elif kind == "INT":
                    multiplier, gap = multiplier * 1.5, 0
                elif kind == "DOWN":
                    multiplier, gap = multiplier * 0.7, 0
                elif kind == "BUT":
                    after_contrast = True
                    positive, negative = positive * _BEFORE_CONTRAST, negative * _BEFORE_CONTRAST
                else:
                    gap += 1
                    if gap > _MODIFIER_REACH:
                        negated, multiplier = False, 1.0
        return positive - negative

    def score(self, text: str) -> float:
        """The message's score, -1 to 1."""
        return math.tanh((self.polarity(text) - ZH_BOUNDARY) / ZH_SCALE)


# --- English ------------------------------------------------------------------------------

_NOISE = re.compile(r"@\w+|https?://\S+")
_QUESTION_START = re.compile(
    r"^(do|does|did|can|could|would|will|is|are|was|were|how|what|when|where|which|who|any|"
    r"may|should)\b"
)
_REQUEST = re.compile(
    r"\b(please|pls|plz|could you|can you|would you|can i|could i|how do i|how can i|is there|"
    r"are there|do you|does|what time|when will|when is|where is|where can|what is|what's the|"
    r"any chance|is it possible)\b"
)
_SENTENCE = re.compile(r"[.!?]+\s*")
_WORD = re.compile(r"[a-z']+")
_NEGATORS = frozenset(NEGATE)
_NEGATION_REACH = 3
"""A negator reaches an affect word at most this many words on ("not at all bad")."""
STATIC_C = 3.0
"""Inverse regularisation of the static embedding's logistic regression (first stage)."""
ENCODER_C = 3.0
"""Inverse regularisation of the encoder's logistic regression (kefu's examples are few)."""

CASCADE_BAND = 1.25
"""The encoder reads a message only when the first stage's log-odds lie closer than this to
``EN_BOUNDARY``. Chosen on kefu's own examples (``bench/sentiment_cascade.py``, 10-fold
cross-validation, three shuffles): the smallest band whose cascade stays within one point of
the encoder's accuracy on the held-out examples (0.919 against 0.929; it agrees with the
encoder on 98% of them) while the encoder reads 26% of them. A negated affect word ("not
bad") goes to the encoder whatever the first stage says: an average of word vectors cannot
read the negation."""


@dataclass(frozen=True)
class LogisticStage:
    """One stage of the English scorer: a logistic regression over a sentence embedding, whose
    log-odds a second logistic regression weighs with the lexicon and shape features."""

    embedding_weights: np.ndarray
    embedding_bias: float
    weights: np.ndarray
    """One weight per shape feature (see ``EnglishScorer.shape``), then the embedding's."""
    bias: float

    @classmethod
    def fit(
        cls, vectors: np.ndarray, shapes: np.ndarray, negative: np.ndarray, *, c: float
    ) -> LogisticStage:
        """Teach both regressions; the second learns from the first's held-out log-odds (10
        folds), so that it does not trust the embedding more than unseen messages would."""
        embedding = LogisticRegression(C=c, max_iter=5000).fit(vectors, negative)
        held_out = cross_val_predict(
            LogisticRegression(C=c, max_iter=5000),
            vectors,
            negative,
            cv=StratifiedKFold(n_splits=10, shuffle=True, random_state=0),
            method="decision_function",
        )
        combiner = LogisticRegression(max_iter=5000).fit(
            np.column_stack([shapes, held_out]), negative
        )
        # Kept as plain weights: for one message at a time, sklearn's input checks would cost
        # more than the arithmetic.
        return cls(
            embedding_weights=embedding.coef_[0].astype(np.float32),
            embedding_bias=float(embedding.intercept_[0]),
            weights=combiner.coef_[0],
            bias=float(combiner.intercept_[0]),
        )

    def log_odds(self, vector: np.ndarray, shape: np.ndarray) -> float:
        """Log-odds that the message of this embedding ``vector`` and ``shape`` is negative."""
        embedded = float(vector @ self.embedding_weights) + self.embedding_bias
        return float(shape @ self.weights[:-1]) + float(self.weights[-1]) * embedded + self.bias


class EnglishScorer:
    """A cascade: VADER, kefu's phrases and the message's shape with the static embedding the
    intent classifier already made of the message; the same with the encoder instead when the
    first stage is close to the boundary."""

    def __init__(self, phrases: dict[str, float], examples: list[tuple[str, str]]) -> None:
        self._vader = SentimentIntensityAnalyzer()
        self._affect_words = frozenset(self._vader.lexicon)
        self._phrases = phrases
        ordered = sorted(phrases, key=len, reverse=True)
        self._phrase_pattern = re.compile(
            "|".join(
                r"(?<![\w'])" + re.escape(p) + (r"(?![\w'])" if p[-1].isalnum() else "")
                for p in ordered
            )
        )
        texts = [text for _, text in examples]
        negative = np.array([label == "negative" for label, _ in examples], dtype=np.int64)
        shapes = np.array([self.shape(text) for text in texts])
        self._first = LogisticStage.fit(static_vectors(texts), shapes, negative, c=STATIC_C)
        self._second = LogisticStage.fit(encoded_vectors(texts), shapes, negative, c=ENCODER_C)
        self.encoder_reads = 0
        """Messages the encoder read since the scorer was built (``bench/sentiment.py`` prints
        the share; not exact when threads score at once)."""

    def shape(self, text: str) -> np.ndarray:
        """What the lexicons and the message's form say (no embedding)."""
        clean = _clean(text).lower()
        vader = self._vader.polarity_scores(clean)
        good = bad = 0.0
        for match in self._phrase_pattern.finditer(clean):
            weight = self._phrases[match.group(0)]
            if weight > 0:
                good += weight
            else:
                bad -= weight
        sentences = [s.strip() for s in _SENTENCE.split(clean) if s.strip()]
        return np.array(
            [
                vader["compound"],
                vader["pos"],
                vader["neg"],
                good,
                bad,
                float("?" in clean),
                float(any(_QUESTION_START.match(s) for s in sentences)),
                float(len(_REQUEST.findall(clean))),
                float(clean.count("!")),
                min(len(clean), 200) / 100,
            ]
        )

    def negative_log_odds(self, text: str) -> float:
        """The cascade's log-odds that ``text`` is negative."""
        text = text[:MAX_CHARS]
        shape = self.shape(text)
        first = self._first.log_odds(static_vectors([text])[0], shape)
        if abs(first - EN_BOUNDARY) >= CASCADE_BAND and not self.negates_affect(text):
            return first
        if not has_words(normalize(text)):
            return EN_BOUNDARY  # codes, numbers, addresses: nothing to read, so neutral (0)
        vector = encoder("en").embed_one(_clean(text))
        self.encoder_reads += 1
        return self._second.log_odds(vector, shape)

    def negates_affect(self, text: str) -> bool:
        """Whether a negator comes shortly before one of VADER's affect words."""
        words = _WORD.findall(_clean(text).lower())
        return any(
            word in self._affect_words
            and any(
                other in _NEGATORS or other.endswith("n't")
                for other in words[max(0, i - _NEGATION_REACH) : i]
            )
            for i, word in enumerate(words)
        )

    def score(self, text: str) -> float:
        """The message's score, -1 to 1."""
        return math.tanh((EN_BOUNDARY - self.negative_log_odds(text)) / EN_SCALE)


def static_vectors(texts: list[str]) -> np.ndarray:
    """The first stage's view of messages: the intent classifier's static embedding of each
    (the same normalised text, so that a message just classified is not embedded again)."""
    return np.array([embedder().embed_one(normalize(text)) for text in texts])


def encoded_vectors(texts: list[str]) -> np.ndarray:
    """The second stage's view of messages: MiniLM's vector of each, links and mentions left out."""
    return encoder("en").embed([_clean(text) for text in texts])


def _clean(text: str) -> str:
    """Without @mentions and links (they say nothing of the mood), HTML's ``&amp;`` undone."""
    return _NOISE.sub("", text).replace("&amp;", "&").strip()


# --- both ---------------------------------------------------------------------------------


class SentimentAnalyzer:
    """kefu's :class:`~bot.ports.SentimentScorer`: Chinese text by the Chinese lexicon, any
    other text with Latin letters by the English scorer; text with neither scores by
    ``language`` (symbols and numbers alone say little, so they stay near 0)."""

    def __init__(self) -> None:
        self._chinese = ChineseLexicon.parse(_data("sentiment_zh.txt"))
        self._english: EnglishScorer | None = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Build the English scorer now (about a second: the encoder reads kefu's examples)
        rather than on the first English message."""
        self.english()

    def english(self) -> EnglishScorer:
        """The English scorer, built on first use."""
        with self._lock:
            if self._english is None:
                self._english = EnglishScorer(phrases(), examples())
            return self._english

    def score(self, text: str, language: str) -> float:
        """From -1 (very negative) to 1 (very positive); below ``NEGATIVE_BELOW`` is negative."""
        if not text.strip():
            return 0.0
        if _CJK.search(text) or (not _LATIN.search(text) and language.startswith("zh")):
            return self._chinese.score(text)
        return self.english().score(text)


def phrases() -> dict[str, float]:
    """kefu's English customer-service phrases and their weights."""
    weights: dict[str, float] = {}
    for raw in _data("sentiment_en.txt").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            phrase, weight = line.rsplit(None, 1)
            weights[phrase] = float(weight)
    return weights


def examples() -> list[tuple[str, str]]:
    """kefu's own labelled English messages: (label, text)."""
    labelled: list[tuple[str, str]] = []
    for raw in _data("sentiment_examples_en.tsv").splitlines():
        if raw.strip() and not raw.startswith("#"):
            label, text = raw.split("\t", 1)
            labelled.append((label, text))
    return labelled


@cache
def analyzer() -> SentimentAnalyzer:
    """The process's one analyzer (its English part is built once, on first use)."""
    return SentimentAnalyzer()
