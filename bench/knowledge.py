"""Knowledge retrieval quality: does the offline answerer rank the section that answers?

    python bench/knowledge.py [--project DIR] [--questions FILE] [--misses] [--bm25]

Each question in ``bench/knowledge_questions.yml`` names the section that answers it
(``file#heading``). Prints, per language, top-1 and top-3 (the right section first / among
the first three) and how often the answerer would actually answer with the right section
(it also has to clear its thresholds), how often the right section is the answer or one of the
close runners-up offered under it as buttons, and how long one ranking takes (median and 95th
percentile, the encoders' inference included, the encoders loaded beforehand; and the median
CPU time, which a busy machine distorts less); ``--misses``
lists the questions ranked wrong.
``--bm25`` ranks by words alone, without the sentence encoders. The ranking's settings are
chosen on ``knowledge_questions.yml``; ``--questions bench/knowledge_questions_heldout.yml`` is
a held-out set never used to choose them; ``knowledge_questions_blind.yml`` and
``knowledge_questions_blind2.yml`` were written from the knowledge files alone, by someone who
saw no code and no other set (measure on them, never tune on them);
``bench/knowledge_questions_chat.yml`` holds questions
as typed in a chat (typos, order numbers, mixed English/Chinese, greetings around them) and
``off_topic`` messages, which the answerer must leave unanswered (how many it answered is
printed). Also printed: the CPU time of the answerer's words-only check (``knows``, on the event
loop for every turn that may be a question), per message read once. Asserts nothing; the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.constants import CACHE_DIR
from bot.knowledge import TITLE_SEPARATOR, KnowledgeAnswerer, KnowledgeBase, default_embedders
from bot.ports import AnswerRequest
from bot.understanding.language import detect_language

HERE = Path(__file__).resolve().parent


def _section(reference: str) -> str:
    """``file#last heading`` of a passage reference ``file#A › B``."""
    source, _, title = reference.partition("#")
    return f"{source}#{title.split(TITLE_SEPARATOR)[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=HERE.parent)
    parser.add_argument("--questions", type=Path, default=HERE / "knowledge_questions.yml")
    parser.add_argument("--misses", action="store_true", help="list questions ranked wrong")
    parser.add_argument("--bm25", action="store_true", help="rank by words alone")
    args = parser.parse_args()
    loaded = yaml.safe_load(args.questions.read_text(encoding="utf-8"))
    questions = loaded["questions"]
    off_topic = [str(q) for q in loaded.get("off_topic") or ()]
    base = KnowledgeBase.from_directory(args.project / "knowledge")
    if not args.bm25:
        base.with_vectors(default_embedders(), cache_dir=args.project / CACHE_DIR / "models")
    answerer = KnowledgeAnswerer(base)
    knows_us = _knows_microseconds(answerer, [str(q["q"]) for q in questions] + off_topic)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if base.ranks_by_meaning:
        base.search("warm up", limit=1)  # load the encoders and the section vectors
    searches: dict[str, list[float]] = defaultdict(list)
    processor: dict[str, list[float]] = defaultdict(list)
    started = time.perf_counter()
    for item in questions:
        question, wanted = str(item["q"]), str(item["section"])
        language = detect_language(question)
        began, began_cpu = time.perf_counter(), time.process_time()
        passages = base.search(question, limit=3)
        searches[language].append(time.perf_counter() - began)
        processor[language].append(time.process_time() - began_cpu)
        found = [_section(p.reference) for p in passages]
        answer = asyncio.run(
            answerer.answer(
                AnswerRequest(
                    kind="search", text=question, language=language, conversation_id="bench"
                )
            )
        )
        answered = [_section(s) for s in answer.sources]
        offered = [b.title for b in answer.buttons]
        row = counts[language]
        row["questions"] += 1
        row["top1"] += found[:1] == [wanted]
        row["top3"] += wanted in found
        row["answered_right"] += answered == [wanted]
        row["answered_wrong"] += bool(answered) and answered != [wanted]
        row["answered_or_offered"] += bool(answered) and (
            answered == [wanted] or wanted.partition("#")[2] in offered
        )
        row["offered"] += len(offered)
        if args.misses and found[:1] != [wanted]:
            print(f"MISS [{language}] {question!r}\n  want {wanted}\n  got  {found}")
    elapsed = time.perf_counter() - started
    for question in off_topic:
        language = detect_language(question)
        answer = asyncio.run(
            answerer.answer(
                AnswerRequest(
                    kind="search", text=question, language=language, conversation_id="bench"
                )
            )
        )
        counts[language]["off_topic"] += 1
        counts[language]["off_topic_answered"] += bool(answer.sources)
        if args.misses and answer.sources:
            print(f"OFF-TOPIC ANSWERED [{language}] {question!r}\n  got  {answer.sources}")
    summary: dict[str, object] = {"sections": len(base), "bm25_only": args.bm25}
    for language, row in sorted(counts.items()):
        n = row["questions"] or 1
        figures: dict[str, float] = {
            key: round(row[key] / n, 3)
            for key in row
            if key not in ("questions", "off_topic", "off_topic_answered")
        }
        times = sorted(searches[language])
        figures["search_ms_p50"] = round(statistics.median(times) * 1000, 2)
        figures["search_cpu_ms_p50"] = round(statistics.median(processor[language]) * 1000, 2)
        figures["search_ms_p95"] = round(
            times[min(len(times) - 1, len(times) * 19 // 20)] * 1000, 2
        )
        print(
            f"{language}: {n} questions  top-1 {figures['top1']:.0%}  top-3 {figures['top3']:.0%}"
            f"  answered right {figures['answered_right']:.0%}"
            f"  answered wrong {figures['answered_wrong']:.0%}"
            f"  answered or offered right {figures['answered_or_offered']:.0%}"
            f" ({row['offered'] / n:.2f} offered)"
            f"  one ranking {figures['search_ms_p50']} ms (95th pct {figures['search_ms_p95']},"
            f" CPU {figures['search_cpu_ms_p50']})"
        )
        if row["off_topic"]:
            print(f"{language}: off-topic answered {row['off_topic_answered']}/{row['off_topic']}")
            figures["off_topic_answered"] = row["off_topic_answered"]
            figures["off_topic"] = row["off_topic"]
        summary[language] = {"questions": n, **figures}
    print(f"knows(): {knows_us} µs per call (words only, on the event loop)")
    summary["knows_us"] = knows_us
    summary["ms_per_question"] = round(elapsed * 1000 / max(1, len(questions)), 2)
    print(json.dumps(summary))


def _knows_microseconds(answerer: KnowledgeAnswerer, texts: list[str]) -> float:
    """Mean CPU time of the answerer's words-only check, in µs, each message read once (the
    base keeps what it prepared of a message: a second read would cost less)."""
    requests = [(text, detect_language(text)) for text in texts]
    began = time.process_time()
    for text, language in requests:
        answerer.knowledge.knows(
            text,
            language=language,
            min_relevance=answerer.min_relevance,
            min_coverage=answerer.min_coverage,
        )
    return round((time.process_time() - began) / max(1, len(requests)) * 1e6, 1)


if __name__ == "__main__":
    main()
