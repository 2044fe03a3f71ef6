"""A chat message as a search reads it: typos towards a text collection's own words.

Customers type "whats the adress for my retrun", "我的帐号以经被锁了", "refund 要多久". Before
a message is matched against texts (the knowledge base's sections), :class:`ChatText`:

- puts Chinese homophone typos right from a short list of variants that are never meant
  (帐号 → 账号, 以经 → 已经, 收获地址 → 收货地址);
- corrects Latin words neither the texts nor the English dictionary know towards the texts'
  words (the intent classifier's :class:`~bot.understanding.spelling.SpellingCorrector`,
  built from the texts instead of the training examples; keyboard mashing is left alone);
- puts English shop words of a Chinese message in Chinese (:func:`in_chinese`).

Only what the search reads changes; the customer's message is kept as typed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from bot.understanding.code_switch import in_chinese
from bot.understanding.spelling import SpellingCorrector

__all__ = ["VALUES", "ChatText", "chinese_variants", "question_clauses"]

VALUES = re.compile(
    r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|(?:https?://|www\.)[\x21-\x7e]+"
    r"|(?<![a-z0-9])[a-z]{1,4}-?\d{3,}(?![a-z0-9])|\d[\d -]{4,}\d",
    re.IGNORECASE,
)
"""E-mail addresses, links, order numbers and codes (KF-20417), phone and tracking numbers:
values a customer gives, never words of a question about the shop."""
_GREETING = re.compile(
    r"^(?:\s*(?:hi|hello|hey|hiya|dear\s+\w+|good\s+(?:morning|afternoon|evening|day)"
    r"|你好|您好|亲亲?|在吗|在不在|哈喽|嗨)"
    r"(?:\s+(?:there|team|all|everyone|guys|kefu))?[\s,.!?:;~，。！？：；～]*)+",
    re.IGNORECASE,
)
_THANKING = re.compile(r"thank|thx|cheers|\bty\b|谢|辛苦", re.IGNORECASE)
"""A quick look for thanks before :data:`_THANKS`, which tries every position of a message."""
_THANKS = re.compile(
    r"(?:[\s,.!~，。！～]*(?:thanks|thank\s+you|thx|ty|cheers|many\s+thanks|谢谢|多谢|感谢|谢啦|辛苦了)"
    r"(?:\s+(?:a\s+lot|so\s+much|very\s+much|in\s+advance|again))?[你您]?[\s,.!~，。！～]*)+$",
    re.IGNORECASE,
)

_CACHED = 512
"""Messages whose preparation is kept."""
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile("[A-Za-z]")
_CHINESE_VARIANTS = {
    "帐": "账",  # 帐号, 帐户, 帐单: the shop's texts write 账
    "己经": "已经",
    "定单": "订单",
    "收获地址": "收货地址",
    "登陆": "登录",
}
"""Wrong characters Chinese input methods offer for the right ones (same sound), in words
where the wrong one is never meant."""
_VARIANT = re.compile(
    "|".join(sorted(map(re.escape, _CHINESE_VARIANTS), key=len, reverse=True))
    + "|(?<![可所难予加用足得])以(?=[经被])"
)
"""The variants, and 以 for 已 before 经 or 被 (以经, 以被注册) outside a word of its own
(可以, 所以)."""


def chinese_variants(text: str) -> str:
    """``text`` with the homophone typos of :data:`_CHINESE_VARIANTS` put right."""
    return _VARIANT.sub(lambda m: _CHINESE_VARIANTS.get(m.group(), "已"), text)


_CLAUSE_END = re.compile(r"(?<=[.!?;,。！？；，、])\s*|\s*\n\s*|(?<=[a-z])\s+-+\s+", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^(?:(?:so|and|but|also|anyway|ok|okay|well|then|oh|btw|just)\b[\s,]*)*"
    r"(?:how|what|whats|when|where|why|who|which|can|could|do|does|did|is|are|was|will|would|"
    r"should|may|might|have|has|shall|am|any|is there|are there)\b",
    re.IGNORECASE,
)
_CHINESE_QUESTION = re.compile("吗|么|多久|多少|几|哪|是否|能不能|可不可以|有没有|如何|咋|呢")


def question_clauses(text: str) -> list[str]:
    """The clauses of a message of several that ask something ("…, can I still change the
    address?"): a question mark, a question word first, or a Chinese question word."""
    clauses = [c.strip() for c in _CLAUSE_END.split(text)]
    clauses = [c for c in clauses if c]
    if len(clauses) < 2:
        return []
    return [
        clause
        for clause in clauses
        if clause.endswith(("?", "？"))
        or _QUESTION_START.match(clause)
        or _CHINESE_QUESTION.search(clause)
    ]


class ChatText:
    """Prepares chat messages for matching against ``texts``."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._speller = SpellingCorrector.from_texts(texts, known_from=1)
        # The answerer reads a known question twice (is it known? then, ranked); chats repeat.
        self._prepared = functools.lru_cache(maxsize=_CACHED)(self._prepare)

    def prepare(self, text: str) -> str:
        """``text`` with its typos corrected towards the texts' words and, in a Chinese
        message, English shop words in Chinese."""
        return self._prepared(text)

    def _prepare(self, text: str) -> str:
        text = _GREETING.sub("", text)
        if _THANKING.search(text) is not None:
            text = _THANKS.sub("", text)
        text = " ".join(text.split()) if "  " in text else text.strip()
        if _CJK.search(text) is not None:
            text = chinese_variants(text)
            if _LATIN.search(text) is None:
                return text
            return in_chinese(self._speller.correct(text))
        return self._speller.correct(text)
