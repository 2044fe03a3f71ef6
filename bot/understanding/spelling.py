"""Typo correction for the intent classifier: customers write "wnat to retrun my pakage".

A Latin word that the English dictionary (the WordPiece vocabulary the MiniLM encoder ships
with) does not know, and that the project's training examples use at most once (examples may
keep a typo on purpose), is replaced by the more frequent training word closest to it: one
edit away for words of four to six letters, two for longer ones (a swap of neighbouring
letters counts as one edit), the most frequent when several are as close. Only what the
classifier reads is corrected; entities, slot values and the stored message keep the
customer's own words. Candidates come from a symmetric-delete index (SymSpell), so a message
costs a few set look-ups per unknown word.
"""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache

MIN_LENGTH = 4
"""Shorter words are left alone: too many real words are one edit apart ("pls", "ok")."""
LONG_WORD = 7
"""Words this long may be two edits away from the word meant; shorter ones one."""

_SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "ly", "able")
"""Endings of English words that the dictionary of whole words often lacks in one form."""
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_LATIN_TOKEN = re.compile(r"[A-Za-z0-9@._'-]+")


@cache
def english_words() -> frozenset[str]:
    """Whole English words of the BERT uncased vocabulary (no word pieces, no markers)."""
    path = importlib.resources.files(__package__) / "data" / "bert_vocab.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w.isascii() and w.isalpha() and w.islower())


def _deletes(word: str, distance: int) -> set[str]:
    """``word`` with up to ``distance`` letters deleted (``word`` itself included)."""
    found = {word}
    frontier = {word}
    for _ in range(distance):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    neighbouring letters each count one."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


class SpellingCorrector:
    """Corrects unknown words towards the words of a set of training texts."""

    def __init__(
        self, frequencies: Counter[str], *, dictionary: frozenset[str], known_from: int = 2
    ) -> None:
        self._frequencies = frequencies
        self._dictionary = dictionary
        self._known_from = known_from
        self._index: dict[str, set[str]] = {}
        for word in frequencies:
            if len(word) >= MIN_LENGTH - 1:
                for deleted in _deletes(word, 2):
                    self._index.setdefault(deleted, set()).add(word)

    @classmethod
    def from_texts(cls, texts: Iterable[str], *, known_from: int = 2) -> SpellingCorrector:
        """A corrector towards the Latin words of ``texts``: the intent examples, where a word
        is taken as written from ``known_from`` uses on (one use may be a typo kept on
        purpose), or edited texts such as the knowledge base's (``known_from=1``)."""
        frequencies = Counter(w.lower() for text in texts for w in _WORD.findall(text))
        return cls(frequencies, dictionary=english_words(), known_from=known_from)

    def correct_word(self, word: str) -> str:
        """The training word ``word`` was probably meant as, or ``word`` itself."""
        meant = self._meant(word)
        return word if meant is None else meant

    def _meant(self, word: str) -> str | None:
        """The training word ``word`` was probably meant as; ``word`` itself when it is known
        or too short to tell; None when it is unknown and no training word is close."""
        lowered = word.lower()
        seen = self._frequencies[lowered]
        if (
            len(lowered) < MIN_LENGTH
            or seen >= self._known_from
            or lowered in self._dictionary
            or self._inflected(lowered)
        ):
            return word
        limit = _allowed(len(lowered))
        best: tuple[int, int, str] | None = None
        tried: set[str] = set()
        for deleted in _deletes(lowered, limit):
            for candidate in self._index.get(deleted, ()):
                if candidate in tried or abs(len(candidate) - len(lowered)) > limit:
                    continue  # the same word through another deletion, or too long or short
                tried.add(candidate)
                if self._frequencies[candidate] <= seen:
                    continue  # a typo kept once in the examples ("cancle") is no target
                distance = edit_distance(lowered, candidate)
                if distance > limit:
                    continue
                key = (distance, -self._frequencies[candidate], candidate)
                if best is None or key < best:
                    best = key
        return best[2] if best is not None else None

    def _inflected(self, word: str) -> bool:
        """Whether ``word`` is a known word with an inflection the dictionary lacks ("debited",
        "refundable"): no typo to correct into another word ("deleted")."""
        for suffix in _SUFFIXES:
            stem = word.removesuffix(suffix)
            if suffix == "d" and not stem.endswith("e"):
                continue  # "registerd" is a typo, "charged" a word
            if stem != word and len(stem) >= MIN_LENGTH - 1:
                if stem in self._dictionary or self._frequencies[stem] >= self._known_from:
                    return True
                if stem + "e" in self._dictionary:  # charged, charging
                    return True
        return False

    def correct(self, text: str) -> str:
        """``text`` with its unknown words corrected; codes, numbers and addresses (any token
        with a digit, ``@`` or a dot inside) are left as they are.

        A message with more unknown words that resemble nothing than words it could correct
        is keyboard mashing, not typing with typos ("zzkj fffq wert"): it is left as it is,
        for the classifier to find nothing in it rather than the word "went".
        """
        tokens = [(m, m.group(0)) for m in _LATIN_TOKEN.finditer(text)]
        meant = {token: self._meant(token) for _, token in tokens if token.isalpha()}
        corrected = sum(1 for token, word in meant.items() if word not in (None, token))
        unknown = sum(1 for word in meant.values() if word is None)
        if corrected == 0 or unknown > corrected:
            return text
        pieces: list[str] = []
        end = 0
        for match, token in tokens:
            pieces.append(text[end : match.start()])
            pieces.append(meant.get(token) or token)
            end = match.end()
        pieces.append(text[end:])
        return "".join(pieces)


def _allowed(length: int) -> int:
    """Edits allowed for a word of ``length`` letters."""
    return 2 if length >= LONG_WORD else 1
