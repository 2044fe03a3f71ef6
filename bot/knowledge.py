"""The offline knowledge answerer: quotes the shop's own Markdown when no LLM is configured.

``knowledge/`` is split into sections by headings and ranked with BM25, which needs no model,
no network and no training, and answers in microseconds. It answers only when a section clearly
matches; otherwise it says nothing and the dialogue falls back to its own responses, because a
wrong policy quoted with confidence is worse than "I don't know".
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.ports import Answer, AnswerRequest
from bot.understanding.language import detect_language

__all__ = ["KnowledgeAnswerer", "KnowledgeBase", "Passage", "tokenize"]

logger = logging.getLogger(__name__)

TITLE_SEPARATOR = " › "
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
"""Markdown, and plain text (one section per file, titled by its name), as Rasa's ``docs/``."""
MAX_ANSWER_CHARS = 600

_K1 = 1.2
_B = 0.75
_CJK_UNIGRAM_WEIGHT = 0.5
"""A Chinese character alone says less than a bigram; full weight would count words thrice."""
_OTHER_LANGUAGE_WEIGHT = 0.5
"""Score factor for passages not in the query's language: kept, but ranked below."""

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[a-z0-9]+(?:'[a-z]+)?|[{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|(?<=[。！？；])|\n")
_LANGUAGE_SUFFIX = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?$")

_STOPWORD_LIST = """a an the and or but if of to in on at by for with from about as into than
    then so is are was were be been being am do does did done have has had having can could will
    would shall should may might must i me my mine we us our you your yours he him his she her it
    its they them their this that these those there here what which who whom whose when where
    why how any some all no not just also very too please hi hello thanks thank get got want
    know tell let s t long until much many way need"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_CJK_STOP_CHARS = frozenset(
    "的了吗呢吧啊呀么我你您他她它们是在有和与或就都也还要会能可以请问一个这那么什怎样如何"
)
_CJK_STOP_BIGRAM_LIST = """什么 怎么 怎样 如何 可以 请问 我们 你们 他们 一个
    这个 那个 为什 是不 不是 我的 你的 有没 没有"""
_CJK_STOP_BIGRAMS = frozenset(_CJK_STOP_BIGRAM_LIST.split())


def tokenize(text: str) -> list[str]:
    """Search terms of ``text``: stemmed Latin words, Chinese character unigrams and bigrams.

    Chinese has no spaces; overlapping bigrams find words without a segmenter, and unigrams
    keep recall when a paraphrase shares single characters only.
    """
    terms: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        word = match.group()
        if _CJK_CHAR.match(word):
            terms.extend(c for c in word if c not in _CJK_STOP_CHARS)
            bigrams = (word[i : i + 2] for i in range(len(word) - 1))
            terms.extend(b for b in bigrams if b not in _CJK_STOP_BIGRAMS)
        else:
            word = word.split("'")[0]
            if word not in _STOPWORDS:
                terms.append(_stem(word))
    return terms


def _stem(word: str) -> str:
    """Fold plurals and -ed/-ing forms together (refunds, refunded → refund; shipping → ship)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        stem = word.removesuffix(suffix)
        if stem != word and len(stem) >= 3:
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]
            return stem
    return word


def _base_language(code: str) -> str:
    return code.replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True)
class Passage:
    """A section of the knowledge base and how well it matched a query."""

    title: str
    """The heading path, e.g. ``Returns › Refund timing``."""
    text: str
    source: str
    """The file, relative to the knowledge directory (``returns.zh.md``)."""
    score: float
    """BM25 score, lowered for passages outside the query's language."""
    relevance: float = 0.0
    """``score`` in units of the weight of a term no section contains, comparable across bases
    of any size (raw BM25 grows with the number of sections)."""
    coverage: float = 0.0
    """Share of the query's term weight (IDF) found in the passage, 0 to 1."""
    language: str = "en"

    @property
    def reference(self) -> str:
        return f"{self.source}#{self.title}"


@dataclass(frozen=True)
class _Section:
    title: str
    text: str
    source: str
    language: str


class KnowledgeBase:
    """Markdown sections indexed for BM25; everything a query needs is computed up front."""

    def __init__(self, sections: list[_Section]) -> None:
        self._sections = sections
        documents = [tokenize(f"{s.title}\n{s.text}") for s in sections]
        count = len(documents)
        average = sum(map(len, documents)) / count if count else 0.0
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for index, terms in enumerate(documents):
            norm = _K1 * (1 - _B + _B * len(terms) / average)
            for term, frequency in Counter(terms).items():
                weight = frequency * (_K1 + 1) / (frequency + norm)
                self._postings[term].append((index, weight))
        self._idf = {
            term: math.log((count - len(p) + 0.5) / (len(p) + 0.5) + 1)
            for term, p in self._postings.items()
        }
        # The weight of a term no section contains: the most any one term can weigh.
        self._unseen_idf = math.log((count + 0.5) / 0.5 + 1)

    def __len__(self) -> int:
        return len(self._sections)

    def questions(self) -> list[tuple[str, str]]:
        """``(heading, language)`` of every section: the questions the base answers."""
        return [
            (s.title.split(TITLE_SEPARATOR)[-1], _base_language(s.language)) for s in self._sections
        ]

    @classmethod
    def from_directory(cls, path: Path) -> KnowledgeBase:
        """Load every Markdown file under ``path``; a missing directory is an empty base.

        A file that is binary, not UTF-8 or has malformed front matter is skipped with a
        warning, so one bad file does not take the whole knowledge base down.
        """
        sections: list[_Section] = []
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in DOCUMENT_SUFFIXES)
            for file in files:
                if file.is_file():
                    sections.extend(_read_sections(file, file.relative_to(path).as_posix()))
        return cls(sections)

    def search(self, query: str, *, language: str | None = None, limit: int = 3) -> list[Passage]:
        """The best ``limit`` sections for ``query``, best first; only sections that match at all.

        Passages in ``language`` (default: the query's own) rank above others.
        """
        terms = set(tokenize(query))
        if not terms or not self._sections:
            return []
        wanted = _base_language(language) if language else detect_language(query)
        scores: dict[int, float] = defaultdict(float)
        matched: dict[int, float] = defaultdict(float)
        total = 0.0
        for term in terms:
            chinese = _CJK_CHAR.match(term) is not None
            factor = _CJK_UNIGRAM_WEIGHT if chinese and len(term) == 1 else 1.0
            idf = self._idf.get(term)
            if idf is None:
                # A Chinese bigram the base lacks is usually just two words side by side;
                # an unknown word or character means the question is about something else.
                if not chinese or len(term) == 1:
                    total += self._unseen_idf * factor
                continue
            idf *= factor
            total += idf
            for index, weight in self._postings[term]:
                scores[index] += idf * weight
                matched[index] += idf
        ranked: list[Passage] = []
        for index, score in scores.items():
            section = self._sections[index]
            factor = 1.0 if section.language == wanted else _OTHER_LANGUAGE_WEIGHT
            ranked.append(
                Passage(
                    title=section.title,
                    text=section.text,
                    source=section.source,
                    score=score * factor,
                    relevance=score * factor / self._unseen_idf,
                    coverage=matched[index] / total,
                    language=section.language,
                )
            )
        ranked.sort(key=lambda p: p.score, reverse=True)
        return ranked[:limit]


def _read_sections(file: Path, source: str) -> list[_Section]:
    try:
        data = file.read_bytes()
        if b"\x00" in data:
            raise ValueError("binary content")
        text = data.decode("utf-8-sig")
        declared, body = _front_matter(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        logger.warning("skipping knowledge file %s: %s", file, exc)
        return []
    declared = declared or _suffix_language(file)
    fallback_title = file.name.split(".")[0].replace("_", " ").replace("-", " ")
    sections = []
    for title, section_text in _split_sections(body, fallback_title):
        language = declared or detect_language(f"{title} {section_text}")
        sections.append(_Section(title, section_text, source, language))
    return sections


def _front_matter(text: str) -> tuple[str | None, str]:
    """The ``lang``/``language`` of a YAML front matter block, and the text after it."""
    if not text.startswith("---"):
        return None, text
    lines = text.split("\n")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "..."))
    except StopIteration:
        raise ValueError("front matter is not closed with '---'") from None
    meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    if not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping")
    language = meta.get("lang") or meta.get("language")
    return (_base_language(str(language)) if language else None), "\n".join(lines[end + 1 :])


def _suffix_language(file: Path) -> str | None:
    """``zh`` for ``returns.zh.md`` or ``returns.zh-CN.md``."""
    parts = file.name.split(".")
    if len(parts) >= 3 and _LANGUAGE_SUFFIX.match(parts[-2]):
        return _base_language(parts[-2])
    return None


def _split_sections(body: str, fallback_title: str) -> list[tuple[str, str]]:
    """``(heading path, text)`` per ATX heading; text before the first heading is the file's."""
    path: list[tuple[int, str]] = []
    title = fallback_title
    lines: list[str] = []
    sections: list[tuple[str, str]] = []
    fenced = False

    def flush() -> None:
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if text:
            sections.append((title, text))
        lines.clear()

    for line in body.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level = len(heading.group(1))
        path = [(lvl, name) for lvl, name in path if lvl < level]
        path.append((level, heading.group(2)))
        title = TITLE_SEPARATOR.join(name for _, name in path)
    flush()
    return sections


def excerpt(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """``text`` cut at the last sentence end within ``limit``, or at a word with an ellipsis."""
    if len(text) <= limit:
        return text
    ends = [m.start() for m in _SENTENCE_END.finditer(text, 0, limit + 1)]
    if ends and ends[-1] > limit // 3:
        return text[: ends[-1]].rstrip()
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "…"


class KnowledgeAnswerer:
    """``AnswerBackend`` quoting the best-matching section of the knowledge base.

    It answers a shop question (``search``) or a turn the dialogue could not handle
    (``cannot_handle``) only when a section clears both thresholds: ``min_relevance`` (roughly,
    how many of the base's rare terms it shares with the question) and ``min_coverage`` (share
    of the question's term weight it contains, so that one shared word does not pass a long
    unrelated question off as a match).
    """

    def __init__(
        self,
        knowledge: KnowledgeBase,
        *,
        min_relevance: float = 0.9,
        min_coverage: float = 0.2,
    ) -> None:
        self.knowledge = knowledge
        self.min_relevance = min_relevance
        self.min_coverage = min_coverage

    async def answer(self, request: AnswerRequest) -> Answer:
        if request.kind not in ("search", "cannot_handle"):
            return Answer(text=None)
        for passage in self.knowledge.search(request.text, language=request.language, limit=3):
            if passage.relevance >= self.min_relevance and passage.coverage >= self.min_coverage:
                return Answer(text=excerpt(passage.text), sources=(passage.reference,))
        return Answer(text=None)
