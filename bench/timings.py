"""Timings of single components on hostile input (what the tests check for correctness only).

    python bench/timings.py [--project .]

Huge messages through the classifier, the encoders and language detection; entity extraction
per message; a knowledge answer over fifty sections. Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bot.knowledge import KnowledgeAnswerer, KnowledgeBase
from bot.ports import AnswerRequest
from bot.project import load_project
from bot.understanding.classifier import IntentClassifier
from bot.understanding.encoder import encoder
from bot.understanding.entities import EntityExtractor
from bot.understanding.language import detect_language

EXAMPLES = [
    ("where is my order", "track_order"),
    ("track my package", "track_order"),
    ("我的订单到哪了", "track_order"),
    ("I want to return this", "return_item"),
    ("how do I send it back", "return_item"),
    ("我要退货", "return_item"),
    ("change my delivery address", "change_address"),
    ("修改收货地址", "change_address"),
]
SHORT_MESSAGES = {
    "en": "where is my order, it was due yesterday",
    "zh": "我的订单到哪了，昨天就该到了",
}


def _ms(action: Callable[[], object], rounds: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        action()
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="project whose NLU feeds the extractor")
    args = parser.parse_args()

    classifier = IntentClassifier.train(EXAMPLES)
    huge = "where is my order " * 60_000
    print(f"classifier, 1 MB message:           {_ms(lambda: classifier.predict(huge)):8.1f} ms")

    mixed = "我的订单到哪了 where is my order " * 20_000
    for language in ("en", "zh"):
        model = encoder(language)
        model.embed_one("warm up")
        took = _ms(partial(model.embed_one, mixed))
        print(f"encoder {language}, 560 kB message:         {took:8.1f} ms")
        short = SHORT_MESSAGES[language]
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(20):
            model.embed_one(short)
        wall = (time.perf_counter() - started) / 20 * 1000
        print(
            f"encoder {language}, short message:         {wall:8.1f} ms "
            f"(CPU of every thread: {(time.process_time() - cpu) / 20 * 1000:.1f} ms)"
        )

    for name, text in (("latin", "a" * 1_000_000), ("han", "中" * 1_000_000)):
        took = _ms(partial(detect_language, text))
        print(f"detect_language, 1M chars {name:5}:    {took:8.1f} ms")

    project = load_project(Path(args.project))
    extractor = EntityExtractor.from_training_data(project.nlu, project.domain.entities)
    message = "hi I would like to buy red running shoes and track KF-10001 today"
    took = _ms(lambda: extractor.extract(message), rounds=2000)
    print(f"entity extraction, per message:     {took:8.3f} ms")

    with tempfile.TemporaryDirectory() as folder:
        sections = (
            f"## Question {i}\n\nWarranty claim {i} covers repair option {i}. " + "Text. " * 40
            for i in range(50)
        )
        (Path(folder) / "faq.md").write_text("\n".join(sections))
        answerer = KnowledgeAnswerer(KnowledgeBase.from_directory(Path(folder)))
        requests = [
            AnswerRequest(
                text=f"how do I make a warranty claim for repair {i}",
                language="en",
                kind="search",
                conversation_id="bench:1",
            )
            for i in range(200)
        ]

        async def answer_all() -> None:
            for request in requests:
                await answerer.answer(request)

        took = _ms(lambda: asyncio.run(answer_all())) / len(requests)
        print(f"knowledge answer, 50 sections:      {took:8.3f} ms")


if __name__ == "__main__":
    main()
