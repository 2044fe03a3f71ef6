"""Mixed-language messages: English shop words inside Chinese sentences.

Chinese customers often write a shop term in English ("refund 要多久", "我的 package 到哪了").
The intent examples say those words in Chinese, so the classifier reads a Chinese message
with the English terms of a small bilingual glossary (``data/code_switch_zh.tsv``) put in
Chinese. English messages, and words the glossary does not have, are left as they are.
"""

from __future__ import annotations

import importlib.resources
import re
from functools import cache

from bot.understanding.language import detect_language


@cache
def _glossary() -> tuple[re.Pattern[str], dict[str, str]]:
    """The glossary's terms (longest first, with their endings) as one pattern, and each
    lower-cased term's Chinese word."""
    path = importlib.resources.files(__package__) / "data" / "code_switch_zh.tsv"
    terms: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            english, chinese = line.split("\t")
            terms[english.strip().lower()] = chinese.strip()
    longest_first = sorted(terms, key=len, reverse=True)
    alternatives = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in longest_first)
    pattern = re.compile(rf"(?<![A-Za-z])({alternatives})(?:e?s|e?d)?(?![A-Za-z])", re.IGNORECASE)
    return pattern, terms


def shop_terms() -> re.Pattern[str]:
    """The glossary's English terms (with their endings), as one pattern."""
    return _glossary()[0]


def in_chinese(text: str) -> str:
    """``text`` with the glossary's English terms in Chinese, when it is a Chinese message."""
    if detect_language(text) != "zh":
        return text
    pattern, terms = _glossary()
    return pattern.sub(lambda m: terms[" ".join(m.group(1).lower().split())], text)
