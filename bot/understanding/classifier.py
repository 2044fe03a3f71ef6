"""Intent classifier: linear models over sparse n-grams and sentence vectors, in a cascade.

Every message is scored by a fast linear model over tf-idf n-grams and a static sentence
embedding (WordLlama), about 0.1 ms. When that model is unsure (its best intent is close to
the runner-up, to the out-of-scope threshold or to the out-of-scope class), a second linear
model that also sees a small transformer's sentence vector decides instead: the encoder of
the message's language (`bot.understanding.encoder`: MiniLM for English, about 2 ms;
multilingual-e5-small for Chinese, 10-20 ms). About one English message in six takes the
second step on CLINC150, one Chinese message in four on SMP2017.

Training uses scikit-learn (LinearSVC); inference is a lean numpy path (vocabulary look-up,
sum of weight rows, small matrix-vector products). A message goes out of scope when the
out-of-scope class wins (if out-of-scope examples were given) or when the best intent's margin
is below a threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from bot import constants
from bot.understanding.encoder import ENCODER_DIM, ENCODER_MODEL, LANGUAGES, encoder
from bot.understanding.features import (
    EMBEDDING_MODEL,
    embedder,
    has_words,
    normalize,
    sparse_features,
)
from bot.understanding.language import detect_language

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
"""Saved-classifier format; a change makes older files unreadable (and cache misses).

3: a second (cascade) model over the n-grams, the static embedding and the encoder.
"""

_CACHED_NAME = re.compile(r"[0-9a-f]{64}")
"""A cached classifier's file name (without .npz): the SHA-256 of what it was trained on."""

RANKING_SIZE = 10
"""How many intents a prediction ranks."""

# Chosen on the CLINC150 and SMP2017 validation splits only (see bench/understanding.py);
# one configuration for every data set. Fast model, C / weight / threshold -> CLINC150
# in-scope accuracy, OOS recall; SMP2017 accuracy:
#   1 / 0.5 / -0.55 (first): 0.9357, 0.64; 0.9026
#   2 / 0.7 / -0.60 (fast):  0.9397, 0.63; 0.9156  (closed-set ceiling of these features ~0.942)
# Second model (encoder on every message; CLINC150 then SMP2017), C / encoder weight:
#   2 / 0.7: 0.9583, 0.70; 0.9123 with English MiniLM on Chinese (hence one encoder per language)
#   2 / 1.4: 0.9613, 0.67; 0.9318 with multilingual-e5-small on Chinese
#   1 / 1.4 (chosen): 0.9630, 0.66; 0.9318
# Cascade gap -> CLINC150 share of messages encoded, accuracy (C 1, weight 1.4): 0.4 -> 13%,
# 0.9577; 0.6 -> 17%, 0.9600; 0.8 -> 23%, 0.9623. SMP2017: 0.9318 from a gap of 0.6 up.
_C = 2.0  # LinearSVC regularisation of the fast model
_FULL_C = 1.0  # ... and of the second model
_EMBEDDING_WEIGHT = 0.7  # scale of the unit-length static embedding next to the unit tf-idf
_ENCODER_WEIGHT = 1.4  # scale of the unit-length encoder vector
_CASCADE_GAP = 0.6  # fast model's margins closer than this: ask the second model
_TEMPERATURE = 4.0  # softmax sharpness turning margins into confidences
_THRESHOLD = -0.6  # best intent's one-vs-rest margin below this: out of scope
_SLOW_LANGUAGE = "zh"  # its encoder costs 10-20 ms a message; MiniLM's ~2 ms
_HYPERPARAMETERS = (_C, _FULL_C, _EMBEDDING_WEIGHT, _ENCODER_WEIGHT, _THRESHOLD)
"""Part of the cache key: a classifier trained with other settings is not reused."""


@dataclass(frozen=True)
class IntentPrediction:
    """The classifier's answer for one message."""

    ranking: tuple[tuple[str, float], ...]
    """(intent, confidence) best first, confidences in [0, 1]."""
    out_of_scope: bool
    """True when no intent is trustworthy."""

    @property
    def intent(self) -> str | None:
        """The best intent, None when out of scope."""
        if self.out_of_scope or not self.ranking:
            return None
        return self.ranking[0][0]

    @property
    def confidence(self) -> float:
        """The best intent's confidence, 0.0 when out of scope."""
        if self.out_of_scope or not self.ranking:
            return 0.0
        return self.ranking[0][1]


@dataclass(frozen=True)
class LinearModel:
    """One-vs-rest weights: rows for the sparse features, then one block per dense view."""

    sparse: np.ndarray
    """(vocabulary size, columns)"""
    dense: tuple[np.ndarray, ...]
    """(view dimension, columns) per dense view, already scaled by the view's weight."""
    bias: np.ndarray
    """(columns,); a column per intent, plus one for out of scope if it was trained."""

    def scores(
        self, ids: np.ndarray, weights: np.ndarray, views: Sequence[np.ndarray | None]
    ) -> np.ndarray:
        """Column scores of a message: its sparse features `ids` with unit-length tf-idf
        `weights`, and its unit-length dense views (None: a view that is all zeros)."""
        scores: np.ndarray = self.bias + weights @ self.sparse[ids]
        for vector, block in zip(views, self.dense, strict=True):
            if vector is not None:
                scores += vector @ block
        return scores

    @classmethod
    def fit(
        cls,
        sparse: sp.csr_matrix,
        views: Sequence[np.ndarray],
        weights: Sequence[float],
        labels: np.ndarray,
        *,
        c: float,
    ) -> LinearModel:
        """Train a LinearSVC (regularisation `c`) on unit-length rows: the sparse matrix and
        each dense view scaled by its weight."""
        matrix = sp.hstack(
            [sparse, *(sp.csr_matrix(view * w) for view, w in zip(views, weights, strict=True))],
            format="csr",
        )
        if len(np.unique(labels)) == 1:
            coefficients, bias = _centroid(matrix)
        else:
            model = LinearSVC(C=c, random_state=0).fit(matrix, labels)
            coefficients, bias = model.coef_.T, model.intercept_
            if coefficients.shape[1] == 1:  # two classes: scikit-learn gives one column
                coefficients = np.hstack([-coefficients, coefficients])
                bias = np.concatenate([-bias, bias])
        blocks: list[np.ndarray] = []
        start = sparse.shape[1]
        for view, w in zip(views, weights, strict=True):
            blocks.append(_float32(coefficients[start : start + view.shape[1]] * w))
            start += view.shape[1]
        return cls(_float32(coefficients[: sparse.shape[1]]), tuple(blocks), _float32(bias))


class IntentClassifier:
    """Trained intent classifier; build it with `train`, `train_cached` or `load`."""

    def __init__(
        self,
        *,
        intents: tuple[str, ...],
        vocabulary: dict[str, int],
        idf: np.ndarray,
        fast: LinearModel,
        full: LinearModel | None,
        threshold: float,
    ) -> None:
        columns = fast.bias.shape[0]
        if columns not in (len(intents), len(intents) + 1) or not intents:
            raise ValueError("weights do not match the intents")
        dims = (embedder().dim, *(ENCODER_DIM for _ in LANGUAGES))
        for model, views in ((fast, 1), (full, len(dims))):
            if model is None:
                continue
            if model.sparse.shape != (len(vocabulary), columns) or model.bias.shape != (columns,):
                raise ValueError("sparse weights do not match the vocabulary")
            if tuple(block.shape for block in model.dense) != tuple(
                (dim, columns) for dim in dims[:views]
            ):
                raise ValueError("dense weights do not match the embedding models")
        if idf.shape != (len(vocabulary),):
            raise ValueError("idf does not match the vocabulary")
        self._intents = intents
        self._vocabulary = vocabulary
        self._idf = _float32(idf)
        self._fast = fast
        self._full = full
        self._encoded_languages = frozenset(
            language
            for language, block in zip(LANGUAGES, full.dense[1:] if full else (), strict=False)
            if block.any()
        )
        """Languages with examples in training: the others gain nothing from their encoder."""
        self._threshold = threshold
        self._has_oos_class = columns == len(intents) + 1

    @property
    def intents(self) -> tuple[str, ...]:
        """The intents this classifier knows, sorted."""
        return self._intents

    @classmethod
    def train(
        cls,
        examples: Sequence[tuple[str, str]],
        *,
        out_of_scope_examples: Sequence[str] = (),
        cascade: bool = True,
    ) -> IntentClassifier:
        """Train on (text, intent) pairs and optional out-of-scope texts.

        `cascade=False` trains the fast model only (no transformer encoder at all).
        """
        intents = tuple(sorted({intent for _, intent in examples}))
        if not intents:
            raise ValueError("no training examples")
        index = {intent: i for i, intent in enumerate(intents)}
        texts = [normalize(text) for text, _ in examples]
        texts += [normalize(text) for text in out_of_scope_examples]
        labels = np.array(
            [index[intent] for _, intent in examples] + [len(intents)] * len(out_of_scope_examples)
        )
        vocabulary, idf, sparse = _fit_sparse(texts)
        static = embedder().embed(texts)
        fast = LinearModel.fit(sparse, [static], [_EMBEDDING_WEIGHT], labels, c=_C)
        full = None
        if cascade:
            raw = [*(text for text, _ in examples), *out_of_scope_examples]
            full = LinearModel.fit(
                sparse,
                [static, *_encoded(texts, [_language(text) for text in raw])],
                [_EMBEDDING_WEIGHT, *(_ENCODER_WEIGHT for _ in LANGUAGES)],
                labels,
                c=_FULL_C,
            )
        return cls(
            intents=intents,
            vocabulary=vocabulary,
            idf=idf,
            fast=fast,
            full=full,
            threshold=_THRESHOLD,
        )

    @classmethod
    def train_cached(
        cls,
        examples: Sequence[tuple[str, str]],
        *,
        out_of_scope_examples: Sequence[str] = (),
        cache_dir: Path,
        keep: int = constants.DEFAULT_CACHE_KEEP,
    ) -> IntentClassifier:
        """Load from cache_dir/<content hash>.npz if present, else train and save there.

        The folder keeps the ``keep`` classifiers used last: editing examples back and forth
        stays instant, and old files do not pile up."""
        content = json.dumps(
            [
                FORMAT_VERSION,
                EMBEDDING_MODEL,
                ENCODER_MODEL,
                _HYPERPARAMETERS,
                list(examples),
                list(out_of_scope_examples),
            ],
            ensure_ascii=False,
        )
        path = cache_dir / f"{hashlib.sha256(content.encode()).hexdigest()}.npz"
        if path.exists():
            try:
                classifier = cls.load(path)
                path.touch()  # recently used: kept by the pruning below
                return classifier
            except (OSError, ValueError, KeyError):
                pass  # unreadable or stale: train again and overwrite
        log.info("training the intent classifier on %d examples (cached after)", len(examples))
        started = time.perf_counter()
        classifier = cls.train(examples, out_of_scope_examples=out_of_scope_examples)
        log.info("trained in %.1f s", time.perf_counter() - started)
        try:
            classifier.save(path)
            _prune(cache_dir, keep=keep)
        except OSError as exc:  # a read-only project still starts; it just trains every time
            log.warning("cannot cache the intent classifier in %s: %s", cache_dir, exc)
        return classifier

    def predict(self, text: str) -> IntentPrediction:
        """Classify one message."""
        normalized = normalize(text)
        counts: Counter[int] = Counter()
        known_word = False
        for feature in sparse_features(normalized):
            i = self._vocabulary.get(feature)
            if i is not None:
                counts[i] += 1
                known_word = known_word or feature[0] == "w"
        if not known_word:  # empty, or no word of the message was seen in training
            return IntentPrediction(ranking=(), out_of_scope=True)
        ids = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        weights = tf * self._idf[ids]
        weights /= math.sqrt(float(weights @ weights))
        static = embedder().embed_one(normalized)
        scores = self._fast.scores(ids, weights, (static,))
        if self._full is not None and self._unsure(scores) and has_words(normalized):
            language = _language(text)
            if language in self._encoded_languages:
                encoded = encoder(language).embed_one(normalized)
                views = [static, *(encoded if other == language else None for other in LANGUAGES)]
                scores = self._full.scores(ids, weights, views)
        return self._prediction(scores)

    def may_be_slow(self, text: str) -> bool:
        """Whether classifying ``text`` may call a slow encoder (Chinese: 10-20 ms), so that
        a server can classify it off its event loop."""
        return (
            _SLOW_LANGUAGE in self._encoded_languages
            and _language(text) == _SLOW_LANGUAGE
            and has_words(normalize(text))
        )

    def load_encoders(self) -> None:
        """Load the encoders this classifier may ask now rather than on the first unsure
        message (about a second each)."""
        for language in sorted(self._encoded_languages):
            encoder(language)

    def predict_many(self, texts: Sequence[str]) -> list[IntentPrediction]:
        """Classify several messages."""
        return [self.predict(text) for text in texts]

    def _unsure(self, scores: np.ndarray) -> bool:
        """Whether the fast model's decision is close to going another way."""
        intent_scores = scores[: len(self._intents)]
        best = float(intent_scores.max())
        gap = abs(best - self._threshold)
        if len(intent_scores) > 1:
            gap = min(gap, best - float(np.partition(intent_scores, -2)[-2]))
        if self._has_oos_class:
            gap = min(gap, abs(best - float(scores[-1])))
        return gap < _CASCADE_GAP

    def _prediction(self, scores: np.ndarray) -> IntentPrediction:
        exponents = np.exp(_TEMPERATURE * (scores - scores.max()))
        probabilities = exponents / exponents.sum()
        intent_scores = scores[: len(self._intents)]
        order = np.argsort(-intent_scores)[:RANKING_SIZE]
        best = int(order[0])
        out_of_scope = intent_scores[best] < self._threshold or (
            self._has_oos_class and scores[-1] > intent_scores[best]
        )
        ranking = tuple((self._intents[i], float(probabilities[i])) for i in order)
        return IntentPrediction(ranking=ranking, out_of_scope=bool(out_of_scope))

    def save(self, path: Path) -> None:
        """Write to `path` as a numpy .npz archive (arrays, plus JSON metadata); atomic."""
        vocabulary = sorted(self._vocabulary, key=self._vocabulary.__getitem__)
        meta = {
            "format": FORMAT_VERSION,
            "embedding": EMBEDDING_MODEL,
            "encoder": ENCODER_MODEL if self._full is not None else None,
            "intents": list(self._intents),
            "vocabulary": vocabulary,
            "threshold": self._threshold,
        }
        arrays: dict[str, Any] = {
            f"fast_{name}": array for name, array in _arrays(self._fast).items()
        }
        if self._full is not None:
            arrays |= {f"full_{name}": array for name, array in _arrays(self._full).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(
                    file,
                    meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), np.uint8),
                    idf=self._idf,
                    **arrays,
                )
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> IntentClassifier:
        """Read a classifier written by `save`; ValueError if the file is of another format."""
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            if (
                meta.get("format") != FORMAT_VERSION
                or meta.get("embedding") != EMBEDDING_MODEL
                or meta.get("encoder") not in (None, ENCODER_MODEL)
            ):
                raise ValueError(f"{path}: not a classifier of format {FORMAT_VERSION}")
            return cls(
                intents=tuple(meta["intents"]),
                vocabulary={feature: i for i, feature in enumerate(meta["vocabulary"])},
                idf=archive["idf"],
                fast=_model(archive, "fast_", views=1),
                full=_model(archive, "full_", views=1 + len(LANGUAGES))
                if meta["encoder"]
                else None,
                threshold=float(meta["threshold"]),
            )


def _prune(folder: Path, *, keep: int) -> None:
    """Delete all but the `keep` most recently used classifiers in `folder` (files named by
    their content hash; what else is cached there, such as knowledge vectors, stays)."""
    saved = sorted(
        (path for path in folder.glob("*.npz") if _CACHED_NAME.fullmatch(path.stem)),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for path in saved[keep:]:
        path.unlink(missing_ok=True)


def _language(text: str) -> str:
    """Which encoder reads a message: Chinese text the multilingual one, the rest MiniLM."""
    return "zh" if detect_language(text) == "zh" else "en"


def _encoded(texts: list[str], languages: list[str]) -> list[np.ndarray]:
    """One view per encoder language: each text's vector in its language's view, else zeros."""
    views = []
    for language in LANGUAGES:
        rows = [i for i, other in enumerate(languages) if other == language]
        view = np.zeros((len(texts), ENCODER_DIM), dtype=np.float32)
        if rows:
            view[rows] = encoder(language).embed([texts[i] for i in rows])
        views.append(view)
    return views


def _arrays(model: LinearModel) -> dict[str, np.ndarray]:
    named = {"sparse": model.sparse, "bias": model.bias}
    return named | {f"dense{i}": block for i, block in enumerate(model.dense)}


def _model(archive: np.lib.npyio.NpzFile, prefix: str, *, views: int) -> LinearModel:
    return LinearModel(
        sparse=_float32(archive[prefix + "sparse"]),
        dense=tuple(_float32(archive[f"{prefix}dense{i}"]) for i in range(views)),
        bias=_float32(archive[prefix + "bias"]),
    )


def _float32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _fit_sparse(texts: list[str]) -> tuple[dict[str, int], np.ndarray, sp.csr_matrix]:
    """Vocabulary, idf and the l2-normalised sublinear tf-idf matrix of normalised texts."""
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    columns: list[int] = []
    counts: list[int] = []
    for row, text in enumerate(texts):
        for feature, count in Counter(sparse_features(text)).items():
            rows.append(row)
            columns.append(vocabulary.setdefault(feature, len(vocabulary)))
            counts.append(count)
    column_ids = np.array(columns, dtype=np.intp)
    document_frequency = np.bincount(column_ids, minlength=len(vocabulary))
    idf = np.log((1 + len(texts)) / (1 + document_frequency)) + 1.0
    values = (1.0 + np.log(np.array(counts, dtype=np.float64))) * idf[column_ids]
    matrix = sp.csr_matrix((values, (rows, column_ids)), shape=(len(texts), len(vocabulary)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix)
    return vocabulary, idf, matrix


def _centroid(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """One-class weights: the centroid, scaled so training texts score +1 and unrelated -1."""
    centroid = np.asarray(matrix.mean(axis=0)).ravel()
    scale = float(np.mean(matrix @ centroid)) or 1.0
    return (2.0 / scale * centroid)[:, None], np.array([-1.0])
