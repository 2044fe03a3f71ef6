"""Text features for the intent classifier: normalisation, sparse n-grams, sentence embeddings.

The same functions serve training and inference, so that both see identical features.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import numpy as np
import wordllama  # type: ignore[import-untyped]

from bot.understanding.recent import RecentVectors

MAX_CHARS = 1000
"""Longer messages are cut to this many characters before any work is done."""

EMBEDDING_MODEL = "wordllama-l2_supercat-256"
"""Identity of the static embedding model, recorded in saved classifiers."""

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
"""Character ranges of the CJK scripts (Han, kana, Hangul): one token per character."""
_EMOJI = "\u2600-\u27bf\U0001f000-\U0001faff"
_TOKEN = re.compile(rf"[{CJK}{_EMOJI}]|[^\W_{CJK}]+")
_CJK_CHAR = re.compile(rf"[{CJK}]")
_EMOJI_CHAR = re.compile(rf"[{_EMOJI}]")
_CHAR_NGRAMS = (2, 3, 4)
_WORD = re.compile(rf"[{CJK}]|[^\W\d_{CJK}]{{2,}}")
_NOT_WORDS = re.compile(rf"\S*(?:@|https?://|www\.)\S*|[^\s{CJK}]*\d[^\s{CJK}]*")
"""E-mail addresses, links, and codes and numbers (anything with a digit)."""


def has_words(text: str) -> bool:
    """Whether a message has a word (two letters or more, or a Han character) besides
    e-mail addresses, links, order numbers and other codes.

    A sentence encoder adds nothing to those, and they are half of the turns in a flow."""
    return _WORD.search(_NOT_WORDS.sub(" ", text[:MAX_CHARS])) is not None


def normalize(text: str) -> str:
    """Truncate, NFKC-normalise (full-width to half-width) and lower-case a message."""
    return unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()


def sparse_features(text: str) -> list[str]:
    """Word unigrams and bigrams, in-word character n-grams, and CJK character trigrams.

    CJK characters and emoji are single tokens (Chinese has no spaces), so word n-grams over
    CJK are character unigrams and bigrams; trigrams over runs of CJK characters are added.
    `text` must already be normalised.
    """
    features: list[str] = []
    previous = "<s>"
    cjk_run = ""
    for token in _TOKEN.findall(text):
        features.append("w" + token)
        features.append("b" + previous + " " + token)
        previous = token
        if len(token) == 1 and _CJK_CHAR.match(token):
            cjk_run = cjk_run[-2:] + token
            if len(cjk_run) == 3:
                features.append("t" + cjk_run)
            continue
        cjk_run = ""
        if _EMOJI_CHAR.match(token):
            continue
        padded = f" {token} "
        length = len(padded)
        for size in _CHAR_NGRAMS:
            if size > length:
                break
            features.extend("c" + padded[i : i + size] for i in range(length - size + 1))
    features.append("b" + previous + " </s>")
    return features


class SentenceEmbedder:
    """Averaged static token embeddings (WordLlama), unit length; loaded from the package only."""

    def __init__(self) -> None:
        folder = Path(wordllama.__file__).parent
        self._model = wordllama.WordLlama.load(cache_dir=folder, disable_download=True)
        self._recent: RecentVectors[np.ndarray] = RecentVectors(64)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._model.embedding.shape[1])

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one normalised text, as ``embed([text])[0]`` but without the batch overhead
        (the classifier and sentiment embed every incoming message: the second costs nothing);
        read-only."""
        known = self._recent.get(text)
        if known is not None:
            return known
        ids = self._model.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            return self._recent.put(text, np.zeros(self.dim, dtype=np.float32))
        vector: np.ndarray = self._model.embedding[ids].mean(axis=0, dtype=np.float32)
        length = float(np.sqrt(vector @ vector))
        return self._recent.put(text, vector / length if length else vector)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed normalised texts: a float32 array of shape (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):  # an empty text has no tokens
            vectors = np.asarray(self._model.embed(texts, norm=True), dtype=np.float32)
        return np.nan_to_num(vectors, copy=False)


@cache
def embedder() -> SentenceEmbedder:
    """The process-wide embedder (loading takes a fraction of a second, once)."""
    return SentenceEmbedder()
