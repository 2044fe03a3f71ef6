"""The offline knowledge answerer: quotes the shop's own Markdown when no LLM is configured.

``knowledge/`` is split into sections by headings. BM25 decides whether the base knows about
the question at all: it answers only when a section clearly shares the question's rarer words,
because a wrong policy quoted with confidence is worse than "I don't know". Which section
answers is then ranked with kefu's sentence encoders as well (when given: ``SectionVectors``),
since customers rarely use the words of the heading ("who covers the postage" for "Who pays for
return shipping?"). Section vectors are computed once and cached on disk by content.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bot.dialogue.language import base_language
from bot.ports import Answer, AnswerRequest
from bot.understanding.language import detect_language

__all__ = [
    "Embedder",
    "KnowledgeAnswerer",
    "KnowledgeBase",
    "Passage",
    "SectionVectors",
    "default_embedders",
    "reflow",
    "tokenize",
]

logger = logging.getLogger(__name__)

TITLE_SEPARATOR = " › "
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
"""Markdown, and plain text (one section per file, titled by its name), as Rasa's ``docs/``."""
MAX_ANSWER_CHARS = 600

_K1 = 1.2
_B = 0.75
_CJK_UNIGRAM_WEIGHT = 0.5
"""A Chinese character alone says less than a bigram; full weight would count words thrice."""
_TITLE_REPEAT = 1
"""A section's own heading is the question it answers: its words count this many times more."""
_HEADING_WEIGHT = 1.0
"""Weight of the similarity to a section's heading beside the similarity to its whole text."""
_PASSAGE_CHARS = 400
"""A section's text is embedded up to here: its heading and first sentences carry its topic,
and an encoder's cost grows faster than the length."""
_BM25_WEIGHT = 0.02
"""Weight of BM25 relevance (units of an unseen term) beside the sum of cosine similarities."""
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


def _last_heading(title: str) -> str:
    return title.split(TITLE_SEPARATOR)[-1]


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
        """``<source>#<title>``: the section a passage comes from."""
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
        self._vectors: SectionVectors | None = None
        documents = [
            tokenize(" ".join([_last_heading(s.title)] * _TITLE_REPEAT + [s.title, s.text]))
            for s in sections
        ]
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
            (s.title.split(TITLE_SEPARATOR)[-1], base_language(s.language)) for s in self._sections
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
        wanted = base_language(language) if language else detect_language(query)
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
        similarity = self._vectors.similarity(query, wanted) if self._vectors else None
        if similarity is not None and scores:  # a question the base knows: rank every section
            scores = {index: scores.get(index, 0.0) for index in range(len(self._sections))}
        ranked: list[Passage] = []
        for index, score in scores.items():
            section = self._sections[index]
            factor = 1.0 if section.language == wanted else _OTHER_LANGUAGE_WEIGHT
            relevance = score * factor / self._unseen_idf
            hybrid = score * factor
            if similarity is not None:
                hybrid = (similarity[index] + _BM25_WEIGHT * relevance) * factor
            ranked.append(
                Passage(
                    title=section.title,
                    text=section.text,
                    source=section.source,
                    score=hybrid,
                    relevance=relevance,
                    coverage=matched[index] / total,
                    language=section.language,
                )
            )
        ranked.sort(key=lambda p: p.score, reverse=True)
        return ranked[:limit]

    @property
    def ranks_by_meaning(self) -> bool:
        """Whether sentence encoders rank the sections (see :meth:`with_vectors`)."""
        return self._vectors is not None

    def with_vectors(
        self, embedders: Sequence[Embedder], *, cache_dir: Path | None
    ) -> SectionVectors:
        """Rank with sentence encoders too; their section vectors are computed on first use
        (or ahead, with the returned index's ``prepare``)."""
        self._vectors = SectionVectors(self._sections, embedders, cache_dir=cache_dir)
        return self._vectors


@dataclass(frozen=True)
class Embedder:
    """A sentence encoder as the knowledge base uses it: unit vectors for questions and for
    passages (asymmetric models embed them differently), for some languages or all."""

    name: str
    """Identity of the model, part of the cache key."""
    query: Callable[[str], np.ndarray]
    passage: Callable[[str], np.ndarray]
    languages: frozenset[str] | None = None
    """Languages of the sections it ranks; None: every language."""


def default_embedders() -> list[Embedder]:
    """kefu's encoders, as the classifier uses them: MiniLM for English sections (about 2 ms a
    question), multilingual-e5-small for Chinese ones (asymmetric: ``passage:`` prefix).
    Sections in other languages are ranked by BM25 alone."""
    from bot.understanding.encoder import E5Encoder, encoder

    def e5() -> E5Encoder:
        model = encoder("zh")
        assert isinstance(model, E5Encoder)
        return model

    return [
        Embedder(
            name="all-minilm-l6-v2-int8",
            query=lambda text: encoder("en").embed_one(text),
            passage=lambda text: encoder("en").embed_one(text),
            languages=frozenset({"en"}),
        ),
        Embedder(
            name="multilingual-e5-small-q4",
            query=lambda text: e5().embed_one(text),
            passage=lambda text: e5().embed_passage(text[:_PASSAGE_CHARS]),
            languages=frozenset({"zh"}),
        ),
    ]


class SectionVectors:
    """Sentence-encoder vectors of each section's heading and whole text.

    ``similarity(question)`` sums, over the encoders that cover a section's language, the
    cosine of the question with the section's text and (weighted) with its heading. The
    vectors are computed on first use and cached in ``cache_dir`` under a hash of the
    sections and the encoders, so a restart or a second process does not pay again.
    """

    def __init__(
        self, sections: Sequence[_Section], embedders: Sequence[Embedder], *, cache_dir: Path | None
    ) -> None:
        self._sections = list(sections)
        self._embedders = list(embedders)
        self._cache_dir = cache_dir
        self._matrices: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def similarity(self, question: str, language: str) -> np.ndarray:
        """One score per section, higher is closer; only encoders of ``language`` are asked
        (sections in other languages score 0)."""
        total = np.zeros(len(self._sections), dtype=np.float32)
        for embedder, (texts, headings, covered) in zip(self._embedders, self._load(), strict=True):
            if not covered.any() or (
                embedder.languages is not None and language not in embedder.languages
            ):
                continue
            vector = embedder.query(question)
            scores = texts @ vector + _HEADING_WEIGHT * (headings @ vector)
            total += np.where(covered, scores, 0.0).astype(np.float32)
        return total

    def prepare(self) -> None:
        """Compute (or read from the cache) every section's vectors now, not on first use."""
        self._load()

    def _load(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        with self._lock:
            if self._matrices is None:
                self._matrices = [self._matrices_of(e) for e in self._embedders]
            return self._matrices

    def _matrices_of(self, embedder: Embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        covered = np.array(
            [embedder.languages is None or s.language in embedder.languages for s in self._sections]
        )
        if not covered.any():
            empty = np.zeros((len(self._sections), 0), dtype=np.float32)
            return empty, empty, covered
        key = hashlib.sha256(embedder.name.encode())
        for section, wanted in zip(self._sections, covered, strict=True):
            key.update(f"{wanted}\0{section.title}\0{section.text}\0".encode())
        cached = (
            self._cache_dir / f"knowledge-{key.hexdigest()[:24]}.npz" if self._cache_dir else None
        )
        if cached is not None and cached.exists():
            try:
                with np.load(cached) as data:
                    return data["texts"], data["headings"], covered
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("recomputing knowledge vectors (cache unreadable: %s)", exc)
        dim = len(embedder.query(""))
        texts = np.zeros((len(self._sections), dim), dtype=np.float32)
        headings = np.zeros_like(texts)
        for row, section in enumerate(self._sections):
            if covered[row]:
                heading = _last_heading(section.title)
                texts[row] = embedder.passage(f"{heading}\n{reflow(section.text)}")
                headings[row] = embedder.passage(heading)
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, texts=texts, headings=headings)
            except OSError as exc:
                logger.warning("cannot cache knowledge vectors in %s: %s", cached.parent, exc)
        return texts, headings, covered


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
    return (base_language(str(language)) if language else None), "\n".join(lines[end + 1 :])


def _suffix_language(file: Path) -> str | None:
    """``zh`` for ``returns.zh.md`` or ``returns.zh-CN.md``."""
    parts = file.name.split(".")
    if len(parts) >= 3 and _LANGUAGE_SUFFIX.match(parts[-2]):
        return base_language(parts[-2])
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


_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_CJK_END = re.compile(rf"[{_CJK}，。！？；：、）」』]$")
_CJK_START = re.compile(rf"^[{_CJK}，。！？；：、（「『]")


def reflow(text: str) -> str:
    """Join a paragraph's hard-wrapped lines into flowing sentences.

    Markdown wraps paragraphs at a fixed width; a chat bubble must not break mid-sentence.
    Blank lines (paragraphs), list items and hard breaks (two trailing spaces or a backslash)
    are kept; Chinese joins Chinese without a space.
    """
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        previous = out[-1] if out else ""
        hard_break = previous.endswith(("  ", "\\"))
        if not stripped or not previous.strip() or hard_break or _LIST_ITEM.match(line):
            if hard_break:
                out[-1] = previous.rstrip(" \\")
            out.append(stripped + ("  " if line.endswith("  ") else ""))
            continue
        joined = previous.rstrip()
        glue = "" if _CJK_END.search(joined) and _CJK_START.match(stripped) else " "
        out[-1] = joined + glue + stripped + (" " * 2 if line.endswith("  ") else "")
    return "\n".join(part.rstrip() for part in out).strip()


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
        """The best-matching section for a shop question (or a turn nothing else handled), or
        ``Answer(text=None)``."""
        if request.kind not in ("search", "cannot_handle"):
            return Answer(text=None)
        search = self.knowledge.search
        passages = await asyncio.to_thread(
            search, request.text, language=request.language, limit=len(self.knowledge)
        )
        if not any(self._known(passage) for passage in passages):
            return Answer(text=None)
        known = passages if self.knowledge.ranks_by_meaning else filter(self._known, passages)
        best = next(iter(known))
        return Answer(text=excerpt(reflow(best.text)), sources=(best.reference,))

    def _known(self, passage: Passage) -> bool:
        return passage.relevance >= self.min_relevance and passage.coverage >= self.min_coverage
