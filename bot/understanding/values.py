"""Filling the slot a ``collect`` step asks for from the customer's free-text answer.

Offline and rule-based, in English and Chinese: yes/no answers, amounts written in digits,
words or Chinese numerals, a choice among a categorical slot's values, lists. A value that
cannot be read with confidence comes back as ``None`` so the flow asks again rather than
guessing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.domain import SlotDefinition

Source = Literal["entity", "text", "parsed"]


@dataclass(frozen=True)
class SlotValue:
    """A slot value and where it came from: an extracted entity, the whole answer, or a
    value read out of the answer (a number, a yes/no, a choice)."""

    value: Any
    source: Source


_UNCLEAR = "unclear"


def _answers(yes: str, no: str, unclear: str) -> dict[str, bool | str]:
    """Phrase -> True, False or unclear, from ``|``-separated phrase lists."""
    table: dict[str, bool | str] = {}
    for answer, phrases in ((True, yes), (False, no), (_UNCLEAR, unclear)):
        table.update(dict.fromkeys(phrases.split("|"), answer))
    return table


_BOOL_PHRASES = {
    "en": _answers(
        yes="yes|y|yeah|yea|yep|yup|ya|sure|sure thing|correct|right|that's right|ok|okay|"
        "alright|all right|fine|absolutely|definitely|certainly|of course|yes please|"
        "please do|go ahead|do it|indeed|true|affirmative|exactly|i do|i agree|agreed|"
        "why not|no problem|no worries|sounds good|confirm|confirmed|👍|👌|✅",
        no="no|n|nope|nah|not really|no thanks|no thank you|never|not at all|wrong|"
        "incorrect|false|don't|dont|do not|not now|not yet|no way|of course not|"
        "absolutely not|definitely not|certainly not|not correct|not right|not ok|"
        "not okay|negative|not for now|not just yet|later|maybe later|let me check|"
        "i'll check|i will check|let me look|i'll look|i'll wait|i will wait|👎|❌",
        unclear="maybe|perhaps|not sure|unsure|don't know|dont know|do not know|idk|"
        "possibly|probably|it depends|depends|kind of|sort of|not sure yet",
    ),
    "zh": _answers(
        yes="是|是的|是啊|对|对的|对啊|没错|好|好的|好啊|好吧|行|可以|嗯|嗯嗯|恩|要|需要|"
        "确定|确认|当然|没问题|同意|有|愿意|想|不错",
        no="不|不是|不要|没有|没|算了|不用|不用了|不需要|不对|不行|不可以|不好|否|别|"
        "不想|拒绝|错|错了|不同意|不愿意|免了|先不|我先找找|我先看看|先等等|晚点再说",
        unclear="不知道|不确定|不清楚|也许|可能|大概|或许|看情况|随便|再说|考虑一下|想想|"
        "是不是|对不对|好不好|要不要|行不行|可不可以|可以吗|是吗|对吗|好吗|不一定|对不起",
    ),
}


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    """Longest phrase first, so ``not sure`` wins over ``sure`` and ``不是`` over ``是``;
    Latin phrases must stand as whole words, Chinese ones need no spaces around them."""
    parts = []
    for phrase in sorted(phrases, key=len, reverse=True):
        escaped = re.escape(phrase)
        if phrase[0].isascii() and phrase[0].isalnum():
            escaped = rf"(?<![a-z0-9']){escaped}(?![a-z0-9'])"
        parts.append(escaped)
    return re.compile("|".join(parts))


_BOOL_PATTERNS = {lang: _phrase_pattern(table) for lang, table in _BOOL_PHRASES.items()}


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("’", "'").lower().strip()


def parse_bool(text: str, language: str, *, echo: Iterable[str] = ()) -> bool | None:
    """Read a yes/no answer; ``None`` when it is unclear ("maybe", "yes and no").

    The phrases of ``language`` are tried first, then the other languages' (a Chinese
    customer may well type "ok"). ``echo``: the question's own verbs ("cancel" of "Do you
    want me to cancel it?"): a clause that repeats one says yes ("取消吧"), one that negates
    it says no ("别取消", "don't cancel").
    """
    echoed = _echo_pattern(tuple(sorted(echo)))
    answers = [
        _echo_bool(clause, echoed)
        if echoed is not None and echoed.search(clause)
        else _clause_bool(clause, language)
        for clause in _BOOL_CLAUSE.split(_normalize(text))
    ]
    said = [answer for answer in answers if answer is not None]
    if not said:
        return None
    # "hmm no, on second thought keep it", "想了想，不取消了": the customer's last word counts
    return said[-1] if isinstance(said[-1], bool) else None


_BOOL_CLAUSE = re.compile(r"[,，;；。!！\n]+|\s+(?:but|actually)\s+|但是|不过|还是")


_NEGATOR = r"(?:不要|不用|不必|不|别|没|没有|don'?t|do not|not|no|never)\s*"


@functools.lru_cache(maxsize=64)
def _echo_pattern(echo: tuple[str, ...]) -> re.Pattern[str] | None:
    """The question's verbs, each with an optional negator before it."""
    if not echo:
        return None
    words = "|".join(
        rf"(?<![a-z]){re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w)
        for w in sorted(echo, key=len, reverse=True)
    )
    return re.compile(rf"(?P<neg>{_NEGATOR})?(?:{words})")


def _echo_bool(clause: str, echoed: re.Pattern[str]) -> bool:
    """A clause that repeats the question's verb: yes, unless the verb is negated."""
    match = echoed.search(clause)
    return match is not None and not match.group("neg")


def _clause_bool(clause: str, language: str) -> bool | str | None:
    """One clause's answer: True, False, unclear, or None when it says neither."""
    order = [language, *(lang for lang in _BOOL_PATTERNS if lang != language)]
    for lang in order:
        pattern = _BOOL_PATTERNS.get(lang)
        if pattern is None:
            continue
        found = {_BOOL_PHRASES[lang][m.group()] for m in pattern.finditer(clause)}
        if found:
            return found.pop() if len(found) == 1 else _UNCLEAR
    return None


_DIGITS = re.compile(
    r"(?:(?<!\S)[-+])?(?<![A-Za-z0-9_.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![0-9])"
    r"\s*([百千万亿]?)"
)
_CHINESE_RUN = re.compile("[零〇一二两三四五六七八九十百千万亿几]+(?:点[零〇一二三四五六七八九]+)?")
_CHINESE_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000}
_CHINESE_SECTIONS = {"万": 10_000, "亿": 100_000_000}


def _counting(words: str, *, first: int, step: int) -> dict[str, int]:
    return {word: first + step * index for index, word in enumerate(words.split())}


_EN_UNITS = _counting(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen",
    first=0,
    step=1,
)
_EN_TENS = _counting("twenty thirty forty fifty sixty seventy eighty ninety", first=20, step=10)
_EN_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_EN_WORD = re.compile("[a-z]+")


def parse_number(text: str) -> float | None:
    """The one number in ``text`` ("3.5", "1,200", "two hundred", "两百五十", "3.5元"),
    or ``None`` when there is none or several different ones."""
    normalized = _normalize(text)
    values: list[float] = []
    covered: list[tuple[int, int]] = []
    for match in _DIGITS.finditer(normalized):
        number = float(match[1].replace(",", "") + (match[2] or ""))
        multiplier = _CHINESE_UNITS.get(match[3]) or _CHINESE_SECTIONS.get(match[3], 1)
        sign = -1 if normalized[match.start()] == "-" else 1
        values.append(sign * number * multiplier)
        covered.append(match.span())
    for match in _CHINESE_RUN.finditer(normalized):
        if any(start < match.end() and match.start() < end for start, end in covered):
            continue
        chinese = _chinese_number(match.group())
        if chinese is not None:
            values.append(chinese)
    values += _english_numbers(normalized)
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _chinese_number(run: str) -> float | None:
    """Value of a Chinese numeral; ``None`` for approximate (几) or spelled-out digit runs."""
    integer, _, decimals = run.partition("点")
    integer = integer.lstrip("百千万亿")
    if not integer or "几" in run:
        return None
    if not any(c in _CHINESE_UNITS or c in _CHINESE_SECTIONS for c in integer):
        if len(integer) > 1:
            return None
        value = float(_CHINESE_DIGITS[integer])
    else:
        value = float(_chinese_integer(integer))
    if decimals:
        value += float("0." + "".join(str(_CHINESE_DIGITS[c]) for c in decimals))
    return value


def _chinese_integer(run: str) -> int:
    total = section = digit = 0
    last_unit = 1
    for char in run:
        if char in _CHINESE_DIGITS:
            digit = _CHINESE_DIGITS[char]
        elif char in _CHINESE_UNITS:
            unit = _CHINESE_UNITS[char]
            # A bare 十 means 一十 ("十二" is 12).
            section += (digit if digit else 1 if unit == 10 else 0) * unit
            digit, last_unit = 0, unit
        else:
            unit = _CHINESE_SECTIONS[char]
            total += (section + digit) * unit
            section = digit = 0
            last_unit = unit
    # Colloquial "两百五" (250) and "一万二" (12,000): a final digit right after a unit
    # counts in the next smaller unit.
    if digit and len(run) > 1 and run[-2] not in _CHINESE_DIGITS and last_unit >= 100:
        digit *= last_unit // 10
    return total + section + digit


def _english_numbers(text: str) -> list[float]:
    """Numbers written in English words ("twelve", "two hundred and five", "a thousand")."""
    numbers: list[float] = []
    total = current = 0
    active = False
    last_kind = ""
    previous_end = 0
    tokens = list(_EN_WORD.finditer(text))
    for index, match in enumerate(tokens):
        word = match.group()
        gap = text[previous_end : match.start()]
        previous_end = match.end()
        if active and gap.strip(" -"):
            numbers.append(total + current)
            total = current = 0
            active, last_kind = False, ""
        next_word = tokens[index + 1].group() if index + 1 < len(tokens) else ""
        if word in _EN_UNITS or word in _EN_TENS:
            value = _EN_UNITS.get(word, _EN_TENS.get(word, 0))
            joins = last_kind == "tens" and word in _EN_UNITS and value < 10
            if active and last_kind in ("unit", "tens") and not joins:
                numbers.append(total + current)
                total = current = 0
            current += value
            active, last_kind = True, "tens" if word in _EN_TENS else "unit"
        elif word in _EN_SCALES:
            scale = _EN_SCALES[word]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * scale, 0
            active, last_kind = True, "scale"
        elif (word in ("a", "an") and next_word in _EN_SCALES and not active) or (
            word == "and" and active
        ):
            continue
        elif active:
            numbers.append(total + current)
            total = current = 0
            active, last_kind = False, ""
    if active:
        numbers.append(total + current)
    return [float(n) for n in numbers]


def parse_slot_value(
    slot: SlotDefinition,
    text: str,
    entities: Sequence[dict[str, Any]],
    *,
    language: str,
    synonyms: Mapping[str, str] | None = None,
    echo: Iterable[str] = (),
) -> SlotValue | None:
    """The value ``text`` gives ``slot``, or ``None`` when it cannot be read with confidence.

    An entity matching one of the slot's ``from_entity`` mappings wins over the raw text;
    ``synonyms`` (lower-cased variant -> canonical) help match categorical values; ``echo``:
    the verbs of a yes/no question (see :func:`parse_bool`).
    """
    matched = [str(e["value"]) for e in entities if _maps_to(slot, e)]
    if slot.type == "list":
        if matched:
            return SlotValue(list(dict.fromkeys(matched)), "entity")
        items = _split_list(text)
        return SlotValue(items, "parsed") if items else None
    for value in matched:
        coerced = _coerce(slot, value, language, synonyms or {})
        if coerced is not None:
            return SlotValue(coerced.value, "entity")
    if slot.type in ("bool", "float", "categorical"):
        return _coerce(slot, text, language, synonyms or {}, echo)
    stripped = _without_lead_in(text.strip())
    return SlotValue(stripped, "text") if stripped else None


_LEAD_IN = re.compile(
    r"^(?:(?:ok|okay|sure|well|so)[,.!]?\s+)?"
    r"(?:it'?s|it is|that'?s|that is|the [a-z]+ is|my [a-z]+(?: [a-z]+)? is|just)\s+"
    r"(?P<rest>.+?)[\s.!]*$",
    re.IGNORECASE,
)
_SHORT_ANSWER_WORDS = 3


def _without_lead_in(text: str) -> str:
    """A short answer without its lead-in: "it's @foo" is "@foo", "just Bart" is "Bart";
    a longer sentence ("it's broken since Monday and ...") stays as written."""
    match = _LEAD_IN.match(text.replace("’", "'"))
    if match is None or len(match.group("rest").split()) > _SHORT_ANSWER_WORDS:
        return text
    return match.group("rest")


def _maps_to(slot: SlotDefinition, entity: Mapping[str, Any]) -> bool:
    return any(
        mapping.type == "from_entity"
        and mapping.entity == entity.get("entity")
        and (mapping.role is None or mapping.role == entity.get("role"))
        and (mapping.group is None or mapping.group == entity.get("group"))
        and entity.get("value") is not None
        for mapping in slot.mappings
    )


def _coerce(
    slot: SlotDefinition,
    text: str,
    language: str,
    synonyms: Mapping[str, str],
    echo: Iterable[str] = (),
) -> SlotValue | None:
    if slot.type == "bool":
        answer = parse_bool(text, language, echo=echo)
        return None if answer is None else SlotValue(answer, "parsed")
    if slot.type == "float":
        number = parse_number(text)
        if number is None or not _in_range(slot, number):
            return None
        return SlotValue(number, "parsed")
    if slot.type == "categorical":
        choice = _find_choice(slot.values, text, synonyms)
        return None if choice is None else SlotValue(choice, "parsed")
    stripped = text.strip()
    return SlotValue(stripped, "text") if stripped else None


def _in_range(slot: SlotDefinition, number: float) -> bool:
    too_low = slot.min_value is not None and number < slot.min_value
    too_high = slot.max_value is not None and number > slot.max_value
    return not (too_low or too_high)


def _find_choice(values: Sequence[str], text: str, synonyms: Mapping[str, str]) -> str | None:
    """The one categorical value named in ``text`` (itself or through a synonym)."""
    normalized = _normalize(text)
    canonical = {str(value).lower(): str(value) for value in values}
    if normalized in canonical:
        return canonical[normalized]
    forms = dict(canonical)
    for variant, target in synonyms.items():
        if target.lower() in canonical:
            forms.setdefault(variant.lower(), canonical[target.lower()])
    if not forms:
        return None
    found = {forms[m.group()] for m in _phrase_pattern(forms).finditer(normalized)}
    return found.pop() if len(found) == 1 else None


_LIST_SEPARATOR = re.compile(r"\s*(?:[,，、;；&]|\band\b|以及|还有|和|跟|与)\s*", re.IGNORECASE)


def _split_list(text: str) -> list[str]:
    items = (item.strip(" .。!！?？") for item in _LIST_SEPARATOR.split(text))
    return [item for item in items if item]
