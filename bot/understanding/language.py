"""Which language a customer writes in, by script, with no model.

A shop answering in English and Chinese only needs to tell Han from Latin text. Codes,
numbers and e-mail addresses carry no language, so ``ORD-12345`` alone keeps the
conversation's language.
"""

from __future__ import annotations

import re

from bot import constants

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
_IGNORED = re.compile(r"(?<!\S)(?:[^\s@]+@|https?://|www\.)\S*", re.IGNORECASE)
"""E-mail addresses and links: they start at a word start, so the scan stays linear."""
_TOKEN = re.compile(r"[^\W_]+(?:[-_'][^\W_]+)*")
_LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
_LETTER = re.compile(r"[^\W\d_]")

HAN_WEIGHT = 4
"""One Han character carries about as much as four Latin letters (a syllable, often a word)."""


def detect_language(text: str, *, default: str = "en") -> str:
    """``"zh"`` for mainly Chinese text, ``"en"`` for Latin text, else ``default``.

    Only the first :data:`~bot.constants.MAX_MESSAGE_CHARS` characters are read: longer
    messages are cut before understanding anyway, and this keeps huge input cheap.
    """
    window = _IGNORED.sub(" ", text[: constants.MAX_MESSAGE_CHARS])
    han = kana = latin = other = 0
    for token in _TOKEN.findall(window):
        token_han = len(_HAN.findall(token))
        if not token_han and any(char.isdigit() for char in token):
            continue
        token_kana = len(_KANA.findall(token))
        token_latin = len(_LATIN.findall(token))
        han, kana, latin = han + token_han, kana + token_kana, latin + token_latin
        other += len(_LETTER.findall(token)) - token_han - token_kana - token_latin
    if kana:
        other += han + kana
        han = 0
    if han and latin:
        latin -= _borrowed_letters(window)
    zh = han * HAN_WEIGHT
    if zh == latin == other == 0 or other > max(zh, latin):
        return default
    return "zh" if zh >= latin else "en"


def _borrowed_letters(text: str) -> int:
    """Letters of the English shop words Chinese customers mix into Chinese sentences ("我想
    return 这个", "我的 package 到哪了"; ``data/code_switch_zh.tsv``): they do not make a
    message English."""
    from bot.understanding.code_switch import shop_terms  # it reads this module

    return sum(len(_LATIN.findall(m.group())) for m in shop_terms().finditer(text))


SWITCH_MIN_HAN = 2
"""Han characters a message needs to switch a conversation to Chinese."""
SWITCH_MIN_LATIN_WORDS = 3
"""Latin words a message needs to switch a conversation to English ("ok", "iPhone 15" and
"yes please" keep a Chinese conversation Chinese; "where is my order" switches it)."""
_LATIN_WORD = re.compile("[A-Za-z\u00c0-\u024f]{2,}")


def conversation_language(text: str, *, current: str | None) -> str:
    """The language a conversation continues in after ``text``: the message's own when it
    says enough in it, else ``current`` (a conversation's language is sticky)."""
    detected = detect_language(text, default=current or "en")
    if current is None or detected == current:
        return detected
    window = _IGNORED.sub(" ", text[: constants.MAX_MESSAGE_CHARS])
    if detected == "zh":
        return detected if len(_HAN.findall(window)) >= SWITCH_MIN_HAN else current
    return detected if len(_LATIN_WORD.findall(window)) >= SWITCH_MIN_LATIN_WORDS else current
