"""The offline knowledge answerer: quotes the shop's own Markdown when no LLM is configured.

``knowledge/`` is split into sections by headings. BM25 decides whether the base knows about
the question at all: it answers only when a section clearly shares the question's rarer words,
because a wrong policy quoted with confidence is worse than "I don't know". Which section
answers is then ranked with kefu's sentence encoders as well (when given: ``SectionVectors``),
since customers rarely use the words of the heading ("who covers the postage" for "Who pays for
return shipping?"). Section vectors are computed once and cached on disk by content.

A section's heading is the question it answers; its author can list other wordings of that
question in an HTML comment, which is never quoted (no comment is)::

    ## Do I need an account to order?
    <!-- questions:
    - Can I order as a guest?
    - Do I have to register before buying?
    -->

They count as the section's words for BM25 and as its "closest question" view.
"""

from __future__ import annotations

import asyncio
import functools
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
from bot.events import Button
from bot.ports import Answer, AnswerRequest
from bot.understanding.chat_text import VALUES as _VALUE
from bot.understanding.chat_text import ChatText, question_clauses
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
_VIEW_WEIGHTS = {
    "text": 1.0,
    "question": 2.0,
    "sentence": 0.5,
    "pieces": 1.0,
    "question_pieces": 0.5,
}
"""How much each view of a section counts: its heading and opening text together, its closest
question (its heading, or one of its author's other wordings: a customer's question is closest
to another question), its closest sentence (a detail deep in a long answer) and, with an
encoder that gives them, its word pieces in context: each of the question's content words
finds its closest piece of the section, and the similarities are averaged (late interaction,
where one vector per text blurs the word that matters); and the same late interaction with its
closest question ("question_pieces")."""
_PASSAGE_CHARS = 400
"""A section's text is embedded up to here: its heading and first sentences carry its topic,
and an encoder's cost grows faster than the length."""
_MAX_SENTENCES = 12
"""Sentences of a section embedded one by one (the rest are only in its text view)."""
_MIN_SENTENCE_CHARS = 8
_BM25_WEIGHT = 0.6
"""Weight of BM25 relevance beside the similarities: both in standard deviations above the
mean over the sections compared."""
_VECTORS_FORMAT = "views-5"
"""Part of the cache key: what the cached matrices hold."""
_OTHER_LANGUAGE_WEIGHT = 0.5
"""Score factor for passages not in the query's language: kept, but ranked below."""
_RELATED_MARGIN = 2.0
"""A runner-up section within this much of the best one's score (standard scores, ranked by
meaning) is offered as a button under the answer: the ranking was unsure between them. Chosen
on ``bench/knowledge_questions.yml``; with the reference shop's wordings the right section is
answered or offered for 93% (English) and 98% (Chinese) of the blind set 2's questions, with
0.1 buttons per answer on average."""

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
_CHAT_WORD_LIST = """hey hiya dear ok okay pls plz thx ty u ur guys lol idk btw um hmm so
    now still already anyway anymore actually ago really quick question wondering wonder something
    anything im ive id youre theyre theres thats whats hows wheres whos
    dont doesnt didnt isnt arent wasnt werent hasnt havent hadnt wont wouldnt couldnt shouldnt
    cant cannot don doesn didn isn aren wasn weren hasn haven hadn won wouldn couldn shouldn"""
"""Greetings, thanks and fillers of chat, and contractions typed with or without their
apostrophe ("don't" is read as "don"): none says what a question is about."""
_STOPWORDS = frozenset(_STOPWORD_LIST.split()) | frozenset(_CHAT_WORD_LIST.split())
_CJK_STOP_CHARS = frozenset(
    "的了吗呢吧啊呀么我你您他她它们是在有和与或就都也还要会能可以请问一个这那么什怎样如何"
    "谢哦嗯哈啦呃哎嘛哇喔啥好"
)
_CJK_STOP_BIGRAM_LIST = """什么 怎么 怎样 如何 可以 请问 我们 你们 他们 一个
    这个 那个 为什 是不 不是 我的 你的 有没 没有 你好 您好 谢谢 麻烦 在吗 给我 帮我"""
_CJK_STOP_BIGRAMS = frozenset(_CJK_STOP_BIGRAM_LIST.split())


def tokenize(text: str) -> list[str]:
    """Search terms of ``text``: stemmed Latin words, Chinese character unigrams and bigrams
    (values such as e-mail addresses, links and order numbers left out).

        Chinese has no spaces; overlapping bigrams find words without a segmenter, and unigrams
        keep recall when a paraphrase shares single characters only.
    """
    terms: list[str] = []
    # "email" as the shop writes it ("e-mail"); an address or an order number is no word.
    for match in _TOKEN.finditer(_VALUE.sub(" ", text.lower()).replace("email", "e-mail")):
        word = match.group()
        if _CJK_CHAR.match(word):
            terms.extend(c for c in word if c not in _CJK_STOP_CHARS)
            bigrams = (word[i : i + 2] for i in range(len(word) - 1))
            # Two function characters side by side (有什, 么好) make no word of the shop's.
            terms.extend(
                b
                for b in bigrams
                if b not in _CJK_STOP_BIGRAMS
                and not (b[0] in _CJK_STOP_CHARS and b[1] in _CJK_STOP_CHARS)
            )
        else:
            word = word.split("'")[0]
            if word not in _STOPWORDS:
                terms.append(_stem(word))
    return terms


def _stem(word: str) -> str:
    """Fold plurals and -ed/-ing forms together (refunds, refunded → refund; shipping → ship;
    erase, erased, erasing → eras)."""
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
    # A silent e goes as -ed and -ing take it away (charge, charged, charging → charg).
    return word[:-1] if len(word) > 3 and word.endswith("e") and word[-2] != "e" else word


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
    """How well it ranked: its BM25 score (lowered outside the query's language); ranked by
    meaning too, meaning and words combined in standard scores."""
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
    questions: tuple[str, ...] = ()
    """Other wordings of the question the section answers, written by the knowledge's author
    (``<!-- questions: ... -->``), besides its heading."""


class KnowledgeBase:
    """Markdown sections indexed for BM25; everything a query needs is computed up front."""

    def __init__(self, sections: list[_Section]) -> None:
        self._sections = sections
        self._vectors: SectionVectors | None = None
        documents = [
            tokenize(
                " ".join([_last_heading(s.title)] * _TITLE_REPEAT + [s.title, s.text, *s.questions])
            )
            for s in sections
        ]
        count = len(documents)
        average = sum(map(len, documents)) / count if count else 0.0
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for index, terms in enumerate(documents):
            norm = _K1 * (1 - _B + _B * len(terms) / average)
            for term, frequency in Counter(terms).items():
                weight = frequency * (_K1 + 1) / (frequency + norm)
                postings[term].append((index, weight))
        self._postings = {
            term: (
                np.array([index for index, _ in pairs], dtype=np.intp),
                np.array([weight for _, weight in pairs], dtype=np.float64),
            )
            for term, pairs in postings.items()
        }
        self._idf = {
            term: math.log((count - len(p) + 0.5) / (len(p) + 0.5) + 1)
            for term, p in postings.items()
        }
        # The weight of a term no section contains: the most any one term can weigh.
        self._unseen_idf = math.log((count + 0.5) / 0.5 + 1)
        self._languages = np.array([s.language for s in sections], dtype=object)
        self._chat_text = ChatText(
            text
            for section in sections
            for text in (section.title, section.text, *section.questions)
        )

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

    def search(
        self,
        query: str,
        *,
        language: str | None = None,
        limit: int = 3,
        min_relevance: float = 0.0,
        min_coverage: float = 0.0,
    ) -> list[Passage]:
        """The best ``limit`` sections for ``query``, best first.

        Passages in ``language`` (default: the query's own) rank above others. Only a question
        the base knows is ranked: some section must share its words and clear
        ``min_relevance`` and ``min_coverage`` (see :class:`Passage`), else nothing is returned
        and no sentence encoder runs (most turns are not questions about the shop). Ranked by
        words alone, only the sections that clear both are returned; ranked by meaning too
        (:meth:`with_vectors`), every section competes.
        """
        wanted = base_language(language) if language else detect_language(query)
        read = self._read(query, wanted, min_relevance, min_coverage)
        if read is None or not read[3].any():
            return []
        query, relevance, coverage, known = read
        if self._vectors is None:
            scores = relevance * self._unseen_idf
            candidates = np.flatnonzero(known)
            # Best first; among equal scores, the earlier section (a stable sort on -score).
            order = candidates[np.argsort(-scores[candidates], kind="stable")][:limit]
        else:
            # Meaning and words, each in standard scores over the sections in the question's
            # language, which rank first; sections in other languages follow, by their words.
            same = self._languages == wanted
            similarity = self._vectors.similarity(query, wanted)
            words = _standard(relevance, same) if same.any() else relevance
            scores = np.where(same, similarity + _BM25_WEIGHT * words, relevance)
            order = np.lexsort((-scores, ~same))[:limit]
        return [
            Passage(
                title=self._sections[index].title,
                text=self._sections[index].text,
                source=self._sections[index].source,
                score=float(scores[index]),
                relevance=float(relevance[index]),
                coverage=float(coverage[index]),
                language=self._sections[index].language,
            )
            for index in order
        ]

    def knows(
        self,
        query: str,
        *,
        language: str | None = None,
        min_relevance: float = 0.0,
        min_coverage: float = 0.0,
    ) -> bool:
        """Whether :meth:`search` with these thresholds finds anything: words only, no encoder."""
        wanted = base_language(language) if language else detect_language(query)
        read = self._read(query, wanted, min_relevance, min_coverage)
        return read is not None and bool(read[3].any())

    def prepare(self, query: str) -> str:
        """What :meth:`search` and :meth:`knows` read of a chat message: typos corrected
        towards the base's own words, English shop words of a Chinese message in Chinese
        (:class:`~bot.understanding.chat_text.ChatText`)."""
        return self._chat_text.prepare(query)

    def _read(
        self, query: str, wanted: str, min_relevance: float, min_coverage: float
    ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
        """What is searched for: the prepared message, or, when the base does not know the
        message as a whole, its first question clause it knows (a question inside greetings
        and background); with its BM25 relevance and coverage and the sections that know it."""
        text = self.prepare(query)
        lexical = self._lexical(text, wanted)
        if lexical is not None:
            known = _known(*lexical, min_relevance, min_coverage)
            if known.any():
                return text, *lexical, known
        for clause in question_clauses(text):
            found = self._lexical(clause, wanted)
            if found is not None:
                known = _known(*found, min_relevance, min_coverage)
                if known.any():
                    return clause, *found, known
        return None if lexical is None else (text, *lexical, np.zeros(len(self), dtype=bool))

    def _lexical(self, query: str, wanted: str) -> tuple[np.ndarray, np.ndarray] | None:
        """BM25 of every section: relevance (lowered outside language ``wanted``) and
        coverage; None when ``query`` has no term that counts."""
        terms = set(tokenize(query))
        if not terms or not self._sections:
            return None
        scores = np.zeros(len(self._sections))
        matched = np.zeros(len(self._sections))
        total = 0.0
        for term in terms:
            chinese = _CJK_CHAR.match(term) is not None
            factor = _CJK_UNIGRAM_WEIGHT if chinese and len(term) == 1 else 1.0
            idf = self._idf.get(term)
            if idf is None:
                # A Chinese bigram the base lacks is usually just two words side by side, and a
                # number the base lacks a value (an amount, a date); an unknown word or
                # character means the question is about something else.
                if (not chinese or len(term) == 1) and not term[0].isdigit():
                    total += self._unseen_idf * factor
                continue
            idf *= factor
            total += idf
            indices, weights = self._postings[term]
            scores[indices] += idf * weights
            matched[indices] += idf
        if total == 0.0:
            return None
        factors = np.where(self._languages == wanted, 1.0, _OTHER_LANGUAGE_WEIGHT)
        return scores * factors / self._unseen_idf, matched / total

    @property
    def ranks_by_meaning(self) -> bool:
        """Whether sentence encoders rank the sections (see :meth:`with_vectors`)."""
        return self._vectors is not None

    def with_vectors(
        self, embedders: Sequence[Embedder], *, cache_dir: Path | None
    ) -> SectionVectors:
        """Rank with sentence encoders too; their section vectors are computed on first use
        (or ahead, with the returned index's ``prepare``)."""
        self._vectors = SectionVectors(
            self._sections,
            embedders,
            cache_dir=cache_dir,
            translations=_translations(self._sections),
        )
        return self._vectors


def _translations(sections: Sequence[_Section]) -> np.ndarray:
    """For each section, its translation's index, or -1: the section at the same position of
    the same file in another language (``returns.md`` and ``returns.zh.md``) when both files
    have as many sections; with several translations, the first file's."""
    files: dict[str, list[int]] = defaultdict(list)
    for index, section in enumerate(sections):
        files[section.source].append(index)
    groups: dict[str, list[str]] = defaultdict(list)
    for source in files:
        groups[_without_language(source)].append(source)
    twins = np.full(len(sections), -1, dtype=np.intp)
    for sources in groups.values():
        for source in sources:
            for other in sources:
                mine, theirs = files[source], files[other]
                if (
                    other == source
                    or len(mine) != len(theirs)
                    or sections[mine[0]].language == sections[theirs[0]].language
                ):
                    continue
                for index, twin in zip(mine, theirs, strict=True):
                    if twins[index] < 0:
                        twins[index] = twin
    return twins


def _without_language(source: str) -> str:
    """``returns.md`` for ``returns.zh.md`` (and for itself)."""
    folder, _, name = source.rpartition("/")
    parts = name.split(".")
    if len(parts) >= 3 and _LANGUAGE_SUFFIX.match(parts[-2]):
        parts.pop(-2)
    return f"{folder}/{'.'.join(parts)}" if folder else ".".join(parts)


def _known(
    relevance: np.ndarray, coverage: np.ndarray, min_relevance: float, min_coverage: float
) -> np.ndarray:
    """Which sections share the question's words enough to count as knowing the answer."""
    return (relevance > 0) & (relevance >= min_relevance) & (coverage >= min_coverage)


@dataclass(frozen=True)
class Embedder:
    """A sentence encoder as the knowledge base uses it: unit vectors for questions and for
    passages (asymmetric models embed them differently), for some languages or all."""

    name: str
    """Identity of the model, part of the cache key."""
    query: Callable[[str], np.ndarray]
    passage: Callable[[str], np.ndarray]
    languages: frozenset[str] | None = None
    """Languages of the questions it embeds and of the sections it ranks; None: every language."""
    also_reads: frozenset[str] = frozenset()
    """Further languages it embeds sections in, only as translations of the sections it ranks."""
    pieces: Callable[[str], tuple[np.ndarray, np.ndarray, list[str]]] | None = None
    """For a symmetric encoder that has them: in one pass, a text's vector, the unit vectors
    of its word pieces in context and the pieces (see ``_VIEW_WEIGHTS``)."""


def default_embedders() -> list[Embedder]:
    """kefu's encoders, as the classifier uses them: MiniLM for English questions (about 2 ms
    a question), multilingual-e5-small for Chinese ones (asymmetric: ``passage:`` prefix),
    which also reads the English versions of Chinese sections. Sections in other languages
    are ranked by BM25 alone."""
    from bot.understanding.encoder import E5Encoder, MiniLMEncoder, encoder

    def e5() -> E5Encoder:
        model = encoder("zh")
        assert isinstance(model, E5Encoder)
        return model

    def minilm() -> MiniLMEncoder:
        model = encoder("en")
        assert isinstance(model, MiniLMEncoder)
        return model

    return [
        Embedder(
            name="all-minilm-l6-v2-int8",
            query=lambda text: encoder("en").embed_one(text),
            passage=lambda text: encoder("en").embed_one(text),
            languages=frozenset({"en"}),
            pieces=lambda text: minilm().embed_with_pieces(text),
        ),
        Embedder(
            name="multilingual-e5-small-q4",
            query=lambda text: e5().embed_one(text),
            passage=lambda text: e5().embed_passage(text[:_PASSAGE_CHARS]),
            languages=frozenset({"zh"}),
            also_reads=frozenset({"en"}),
        ),
    ]


class SectionVectors:
    """Sentence-encoder vectors of several views of each section: its heading with its opening
    text, its questions (its heading and its author's other wordings), and each of its sentences.

    ``similarity(question, language)`` asks the encoders of ``language``; for each view it
    turns the cosines into standard scores over the sections compared (encoders and views
    differ in how closely their cosines crowd), then adds the views up. A section translated
    into another language the encoder also reads (``Embedder.also_reads``; the same file in
    another language, with as many sections) adds its translation's views as well: two
    wordings of the same answer miss the question less often than one. The vectors are
    computed on first use and cached in ``cache_dir`` under a hash of the sections and the
    encoders, so a restart or a second process does not pay again.
    """

    def __init__(
        self,
        sections: Sequence[_Section],
        embedders: Sequence[Embedder],
        *,
        cache_dir: Path | None,
        translations: np.ndarray | None = None,
    ) -> None:
        self._sections = list(sections)
        self._embedders = list(embedders)
        self._cache_dir = cache_dir
        count = len(self._sections)
        self._translations = (
            translations if translations is not None else np.full(count, -1, dtype=np.intp)
        )
        self._languages = np.array([s.language for s in self._sections], dtype=object)
        self._views: list[_Views] | None = None
        self._lock = threading.Lock()

    def similarity(self, question: str, language: str) -> np.ndarray:
        """One score per section, higher is closer; only encoders of ``language`` are asked
        and only sections in ``language`` are scored (the others score 0)."""
        total = np.zeros(len(self._sections))
        candidates = self._languages == language
        twins = self._translations
        has_twin = twins >= 0
        for embedder, views in zip(self._embedders, self._load(), strict=True):
            if embedder.languages is not None and language not in embedder.languages:
                continue
            direct = candidates & views.covered
            translated = candidates & has_twin & views.covered[np.where(has_twin, twins, 0)]
            if not direct.any():
                continue
            if embedder.pieces is None:
                vector, pieces = embedder.query(question), None
            else:
                vector, vectors, words = embedder.pieces(question)
                pieces = _content_pieces(vectors, words)
            partial = np.zeros(len(self._sections))
            for name, scores in views.scores(vector.astype(np.float32)).items():
                weight = _VIEW_WEIGHTS[name]
                partial += weight * _standard(scores, direct)
                if translated.any():
                    partial += weight * _standard(scores[np.where(has_twin, twins, 0)], translated)
            if pieces is not None and len(pieces) and len(views.piece_owners):
                interaction = views.interaction(pieces, np.flatnonzero(direct))
                partial += _VIEW_WEIGHTS["pieces"] * _standard(interaction, direct)
                if len(views.question_piece_starts):
                    closest = views.question_interaction(pieces)
                    partial += _VIEW_WEIGHTS["question_pieces"] * _standard(closest, direct)
            total += partial
        return total

    def prepare(self) -> None:
        """Compute (or read from the cache) every section's vectors now, not on first use."""
        self._load()

    def _load(self) -> list[_Views]:
        with self._lock:
            if self._views is None:
                self._views = [self._views_of(e) for e in self._embedders]
            return self._views

    def _views_of(self, embedder: Embedder) -> _Views:
        reads = None if embedder.languages is None else embedder.languages | embedder.also_reads
        covered = np.array([reads is None or s.language in reads for s in self._sections])
        key = hashlib.sha256(f"{_VECTORS_FORMAT}\0{embedder.name}".encode())
        for section, wanted in zip(self._sections, covered, strict=True):
            key.update(f"{wanted}\0{section.title}\0{section.text}\0".encode())
            key.update("".join(f"{question}\0" for question in section.questions).encode())
        cached = (
            self._cache_dir / f"knowledge-{key.hexdigest()[:24]}.npz" if self._cache_dir else None
        )
        if cached is not None and cached.exists():
            try:
                with np.load(cached) as data:
                    return _Views(
                        covered,
                        data["texts"],
                        data["questions"],
                        data["question_owners"],
                        data["sentences"],
                        data["owners"],
                        data["pieces"],
                        data["piece_owners"],
                        data["question_pieces"],
                        data["question_piece_starts"],
                        data["question_piece_owners"],
                    )
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("recomputing knowledge vectors (cache unreadable: %s)", exc)
        views = self._compute(embedder, covered)
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(
                    cached,
                    texts=views.texts,
                    questions=views.questions,
                    question_owners=views.question_owners,
                    sentences=views.sentences,
                    owners=views.owners,
                    pieces=views.pieces,
                    piece_owners=views.piece_owners,
                    question_pieces=views.question_pieces,
                    question_piece_starts=views.question_piece_starts,
                    question_piece_owners=views.question_piece_owners,
                )
            except OSError as exc:
                logger.warning("cannot cache knowledge vectors in %s: %s", cached.parent, exc)
        return views

    def _compute(self, embedder: Embedder, covered: np.ndarray) -> _Views:
        dim = len(embedder.query("")) if covered.any() else 0
        texts = np.zeros((len(self._sections), dim), dtype=np.float32)
        questions: list[np.ndarray] = []
        question_owners: list[int] = []
        sentences: list[np.ndarray] = []
        owners: list[int] = []
        pieces: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32)]
        piece_owners: list[int] = []
        question_pieces: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32)]
        question_piece_starts: list[int] = []
        question_piece_owners: list[int] = []
        piece_count = 0
        for row, section in enumerate(self._sections):
            if not covered[row]:
                continue
            heading = _last_heading(section.title)
            body = reflow(section.text)
            if embedder.pieces is None:
                texts[row] = embedder.passage(f"{heading}\n{body}")
            else:
                texts[row], vectors, _ = embedder.pieces(f"{heading}\n{body}")
                pieces.append(vectors)
                piece_owners.extend([row] * len(vectors))
            for question in (heading, *section.questions):
                questions.append(embedder.passage(question))
                question_owners.append(row)
                if embedder.pieces is not None:
                    _, vectors, words = embedder.pieces(question)
                    content = _content_pieces(vectors, words)
                    if len(content):
                        question_pieces.append(content)
                        question_piece_starts.append(piece_count)
                        question_piece_owners.append(row)
                        piece_count += len(content)
            for sentence in _sentences(body)[:_MAX_SENTENCES]:
                sentences.append(embedder.passage(sentence))
                owners.append(row)
        return _Views(
            covered,
            texts,
            np.array(questions, dtype=np.float32).reshape(len(questions), dim),
            np.array(question_owners, dtype=np.intp),
            np.array(sentences, dtype=np.float32).reshape(len(sentences), dim),
            np.array(owners, dtype=np.intp),
            np.concatenate(pieces).astype(np.float32),
            np.array(piece_owners, dtype=np.intp),
            np.concatenate(question_pieces).astype(np.float32),
            np.array(question_piece_starts, dtype=np.intp),
            np.array(question_piece_owners, dtype=np.intp),
        )


@dataclass(frozen=True)
class _Views:
    """One encoder's vectors of the sections it reads (rows of the others are zero)."""

    covered: np.ndarray
    texts: np.ndarray
    questions: np.ndarray
    """The questions each section answers: its heading, and its author's other wordings."""
    question_owners: np.ndarray
    """The section of each row of ``questions``."""
    sentences: np.ndarray
    owners: np.ndarray
    """The section of each row of ``sentences``."""
    pieces: np.ndarray
    """Word-piece vectors of the sections' texts (none when the encoder has no pieces)."""
    piece_owners: np.ndarray
    """The section of each row of ``pieces``, in order."""
    question_pieces: np.ndarray
    """Content word-piece vectors of the sections' questions, one question after another."""
    question_piece_starts: np.ndarray
    """The first row of each question in ``question_pieces``."""
    question_piece_owners: np.ndarray
    """The section of each question in ``question_pieces``."""

    def scores(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Cosine of the question's ``vector`` with each view, one per section (a section's
        closest question and closest sentence)."""
        return {
            "text": (self.texts @ vector).astype(np.float64),
            "question": _closest(self.questions @ vector, self.question_owners, len(self.texts)),
            "sentence": _closest(self.sentences @ vector, self.owners, len(self.texts)),
        }

    def interaction(self, pieces: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Late interaction of the question's word ``pieces`` with the sections ``rows``: each
        piece's best cosine in the section, averaged. Other sections get the lowest of these.
        One small product per section: a single large one would wake BLAS's thread pool, whose
        threads spin on the other core."""
        starts = np.searchsorted(self.piece_owners, rows, side="left")
        ends = np.searchsorted(self.piece_owners, rows, side="right")
        result = np.zeros(len(self.texts))
        found = [
            (row, float((pieces @ self.pieces[start:end].T).max(axis=1).mean()))
            for row, start, end in zip(rows, starts, ends, strict=True)
            if end > start
        ]
        if found:
            result[:] = min(value for _, value in found)
            for row, value in found:
                result[row] = value
        return result

    def question_interaction(self, pieces: np.ndarray) -> np.ndarray:
        """Late interaction of the question's word ``pieces`` with each section's closest
        question (its heading or an author's wording): per question, each piece's best cosine,
        averaged; per section, its best question (0 for a section without pieces)."""
        if not len(self.question_piece_starts):
            return np.zeros(len(self.texts))
        cosines = _cosines(self.question_pieces, pieces)
        best = np.maximum.reduceat(cosines, self.question_piece_starts, axis=0).mean(axis=1)
        return _closest(best, self.question_piece_owners, len(self.texts))


def _cosines(many: np.ndarray, few: np.ndarray) -> np.ndarray:
    """``many @ few.T`` (unit vectors: cosines) in blocks of ``_BLOCK_ROWS`` rows, ``few``
    transposed into a contiguous array first: a transposed operand, or a product large enough
    to wake BLAS's thread pool (whose threads spin on the other core), costs ten times as much."""
    few_t = np.ascontiguousarray(few.T)
    blocks = [many[i : i + _BLOCK_ROWS] @ few_t for i in range(0, len(many), _BLOCK_ROWS)]
    return np.concatenate(blocks) if blocks else np.zeros((0, len(few)), dtype=many.dtype)


_BLOCK_ROWS = 256


def _closest(cosines: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Each of ``count`` sections' highest of ``cosines`` (rows owned by ``owners``), 0 for
    a section with none."""
    closest = np.full(count, -1.0)
    np.maximum.at(closest, owners, cosines)
    return np.where(closest > -1.0, closest, 0.0)


def _standard(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``scores`` as standard scores over the entries of ``mask`` (0 elsewhere)."""
    chosen = scores[mask]
    spread = float(chosen.std()) or 1.0
    return np.where(mask, (scores - float(chosen.mean())) / spread, 0.0)


def _content_pieces(vectors: np.ndarray, pieces: list[str]) -> np.ndarray:
    """The vectors of a question's content words: whole-word pieces that are no stop words
    (all of them when none is)."""
    keep = [
        row
        for row, piece in enumerate(pieces)
        if piece.isalnum() and piece not in _STOPWORDS and not piece.startswith("##")
    ]
    return vectors[keep] if keep else vectors


def _sentences(text: str) -> list[str]:
    """The sentences of a reflowed section: list items and sentence ends split it."""
    parts = (part.strip() for part in _SENTENCE_END.split(text))
    return [part for part in parts if len(part) >= _MIN_SENTENCE_CHARS]


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
    for title, raw_text in _split_sections(body, fallback_title):
        section_text, questions = _author_questions(raw_text)
        if not section_text:
            continue
        language = declared or detect_language(f"{title} {section_text}")
        sections.append(_Section(title, section_text, source, language, questions))
    return sections


_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_QUESTIONS_LABEL = re.compile(r"^\s*questions\s*:", re.IGNORECASE)


def _author_questions(text: str) -> tuple[str, tuple[str, ...]]:
    """A section's text without its HTML comments (notes for authors, never for customers),
    and the questions listed in a ``<!-- questions: ... -->`` comment, one a line (a list
    marker is dropped), or separated by ``|`` on one line."""
    questions: list[str] = []
    for comment in _COMMENT.findall(text):
        label = _QUESTIONS_LABEL.match(comment)
        if label is None:
            continue
        for line in comment[label.end() :].replace("|", "\n").split("\n"):
            question = _LIST_ITEM.sub("", line).strip()
            if question:
                questions.append(question)
    stripped = re.sub(r"\n{3,}", "\n\n", _COMMENT.sub("", text)).strip()
    return stripped, tuple(questions)


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
    unrelated question off as a match). Runners-up the ranking could hardly tell from the
    answer come with it as buttons (their questions), so a close call costs one press.
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
        search = functools.partial(
            self.knowledge.search,
            request.text,
            language=request.language,
            limit=3,
            min_relevance=self.min_relevance,
            min_coverage=self.min_coverage,
        )
        # Words first, on the loop (tens of microseconds): a turn that is no question the base
        # knows never reaches a sentence encoder. A known one is ranked in a worker thread,
        # where the encoder's inference runs beside the other conversations.
        if not self.knowledge.knows(
            request.text,
            language=request.language,
            min_relevance=self.min_relevance,
            min_coverage=self.min_coverage,
        ):
            return Answer(text=None)
        passages = await asyncio.to_thread(search) if self.knowledge.ranks_by_meaning else search()
        if not passages:
            return Answer(text=None)
        best = passages[0]
        return Answer(
            text=excerpt(reflow(best.text)),
            sources=(best.reference,),
            buttons=self._close_runners_up(passages),
        )

    def _close_runners_up(self, passages: Sequence[Passage]) -> tuple[Button, ...]:
        """The questions of the runners-up the ranking could hardly tell from the best section
        (within ``_RELATED_MARGIN``, in its language): buttons whose payload is the question
        itself, so a press is an ordinary question (no authority) that finds its section."""
        if not self.knowledge.ranks_by_meaning:
            return ()  # words alone: scores on another scale, and no close calls to speak of
        best = passages[0]
        return tuple(
            Button(title=heading, payload=heading)
            for passage in passages[1:]
            if passage.language == best.language
            and best.score - passage.score <= _RELATED_MARGIN
            and (heading := _last_heading(passage.title))
        )
