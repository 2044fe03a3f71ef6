"""Words that mark an intent against its closest rival, from the intent examples themselves.

A linear classifier trained on a few dozen examples per intent puts short messages that two
intents share most words with ("退款到哪了" / "快递到哪了", "where's my refund" / "where's my
order") on either side of the line, and a retrain with a few new examples moves them. The
examples say what tells the two apart: almost every ``track_refund`` example names the refund
(退款, refund), almost no ``track_order`` example does. When the classifier's two best intents
are close, such a *hallmark* decides between them: an intent whose examples nearly always
name one of its hallmarks is not the intent of a message that names none of them, and a
message naming the runner-up's hallmark (which the first intent's examples never use) is the
runner-up's. Words are English words of three letters or more, Chinese characters (退 names a
refund in "退的钱" as well as in 退款) and character pairs; a Chinese message is read with the
glossary's English shop words in Chinese.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from bot.understanding.code_switch import in_chinese
from bot.understanding.language import detect_language

HALLMARK_SHARE = 0.6
"""A hallmark is in at least this share of an intent's examples (of one language) ..."""
NEEDED_SHARE = 0.85
"""... and one so common there (this share) that a message without it is hardly the intent's."""
RIVAL_SHARE = 0.05
"""... and in at most this share of the rival intent's."""
MIN_EXAMPLES = 8
"""Intents with fewer examples in a language have no hallmarks in it (too few to tell)."""
CLOSE_RATIO = 0.5
"""The runner-up's confidence must be at least this share of the first's to be weighed."""
LEAD = 0.1
"""How far the intent a hallmark decides for is put ahead of the other."""

_WORD = re.compile(r"[a-z]{3,}")
_HAN_RUN = re.compile("[\u4e00-\u9fff]+")


def words_of(text: str) -> frozenset[str]:
    """The English words (three letters or more), Chinese characters and character pairs of
    ``text``."""
    read = in_chinese(text).lower()
    found = set(_WORD.findall(read))
    for run in _HAN_RUN.findall(read):
        found |= set(run) | {run[i : i + 2] for i in range(len(run) - 1)}
    return frozenset(found)


class Hallmarks:
    """Per language and intent, how many examples use each word."""

    def __init__(self, examples: Iterable[tuple[str, str]]) -> None:
        self._counts: dict[tuple[str, str], Counter[str]] = {}
        self._sizes: Counter[tuple[str, str]] = Counter()
        for text, intent in examples:
            key = (detect_language(text), intent)
            self._sizes[key] += 1
            self._counts.setdefault(key, Counter()).update(words_of(text))

    def _share(self, language: str, intent: str, word: str) -> float:
        size = self._sizes[(language, intent)]
        return self._counts[(language, intent)][word] / size if size else 0.0

    def of(
        self, language: str, intent: str, rival: str, *, share: float = HALLMARK_SHARE
    ) -> frozenset[str]:
        """Words in ``share`` of ``intent``'s examples and hardly any of ``rival``'s."""
        key = (language, intent)
        if self._sizes[key] < MIN_EXAMPLES or self._sizes[(language, rival)] < MIN_EXAMPLES:
            return frozenset()
        size = self._sizes[key]
        return frozenset(
            word
            for word, count in self._counts[key].items()
            if count / size >= share and self._share(language, rival, word) <= RIVAL_SHARE
        )

    def rerank(
        self, ranking: tuple[tuple[str, float], ...], text: str, language: str
    ) -> tuple[tuple[str, float], ...]:
        """``ranking`` with the runner-up first when the hallmarks say so (see the module)."""
        if len(ranking) < 2:
            return ranking
        (first, p_first), (second, p_second) = ranking[0], ranking[1]
        if p_second < CLOSE_RATIO * p_first:
            return ranking
        said = words_of(text)
        marks_first = self.of(language, first, second)
        marks_second = self.of(language, second, first)
        first_named, second_named = bool(marks_first & said), bool(marks_second & said)
        needed_first = self.of(language, first, second, share=NEEDED_SHARE)
        needed_second = self.of(language, second, first, share=NEEDED_SHARE)
        first_lacks = bool(needed_first) and not needed_first & said
        second_lacks = bool(needed_second) and not needed_second & said
        if (first_lacks and not second_lacks) or (second_named and not first_named):
            winner, loser = (second, p_second), (first, p_first)
        elif (second_lacks and not first_lacks) or (first_named and not second_named):
            winner, loser = (first, p_first), (second, p_second)
        else:
            return ranking
        lead = min(1.0, max(winner[1], loser[1]) + LEAD)
        rest = tuple(pair for pair in ranking[2:])
        return ((winner[0], lead), (loser[0], loser[1]), *rest)
