"""Intent-classification quality and latency on a public data set or the reference shop.

    python bench/understanding.py DATA [--test TEST]
    python bench/understanding.py --shop CSV

DATA is CLINC-style JSON (train/val/oos_train/oos_val; with --test its test/oos_test, else
val/oos_val), BANKING-style CSV (text,category; without --test a deterministic stratified 20%
of it is held out) or an SMP-style folder (train/ and develop/ holding `<split>_<class>.txt`;
class `chat` is out of scope). --shop trains on the project's own NLU examples and scores a
Bitext-style CSV (flags,utterance,category,intent): utterances of intents the shop does not
know count as out of scope. Prints figures, asserts nothing; the last line is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy loads

import argparse
import csv
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.understanding.classifier import IntentClassifier

Example = tuple[str, str | None]
"""(text, intent); intent None means out of scope."""

SMP_OUT_OF_SCOPE = "chat"
ANNOTATION = re.compile(r"\[([^\]]*)\]\([^)]*\)")
"""Rasa entity annotation `[text](entity)`, replaced by its text."""


def load_clinc(path: Path, test: Path | None) -> tuple[list[Example], list[Example]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    train = [(t, c) for t, c in data["train"]] + [(t, None) for t, _ in data.get("oos_train", [])]
    held = json.loads(test.read_text(encoding="utf-8")) if test else data
    part, oos_part = ("test", "oos_test") if "test" in held else ("val", "oos_val")
    evaluation = [(t, c) for t, c in held[part]] + [(t, None) for t, _ in held.get(oos_part, [])]
    return train, evaluation


def read_csv(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return [(row[text_column], row[label_column]) for row in csv.DictReader(file)]


def load_banking(path: Path, test: Path | None) -> tuple[list[Example], list[Example]]:
    rows = read_csv(path, "text", "category")
    if test:
        return list(rows), list(read_csv(test, "text", "category"))
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_class[row[1]].append(row)
    train: list[Example] = []
    evaluation: list[Example] = []
    for members in by_class.values():  # every fifth example of each class: stratified 20%
        for i, row in enumerate(members):
            (evaluation if i % 5 == 4 else train).append(row)
    return train, evaluation


def read_smp_folder(folder: Path) -> list[Example]:
    examples: list[Example] = []
    for file in sorted(folder.glob("*_*.txt")):
        label = file.stem.split("_", 1)[1]
        intent = None if label == SMP_OUT_OF_SCOPE else label
        lines = file.read_text(encoding="utf-8-sig").splitlines()
        examples += [(line.strip(), intent) for line in lines if line.strip()]
    return examples


def load_smp(path: Path, test: Path | None) -> tuple[list[Example], list[Example]]:
    return read_smp_folder(path / "train"), read_smp_folder(test or path / "develop")


def shop_examples(project: Path) -> list[tuple[str, str]]:
    """The project's NLU examples, through bot.project when present, else from flows/**/nlu*.yml."""
    try:
        from bot.project import load_project  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        examples: list[tuple[str, str]] = []
        for file in sorted(project.glob("flows/**/nlu*.yml")):
            for item in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("nlu") or []:
                if "intent" in item:
                    for line in str(item.get("examples", "")).splitlines():
                        text = ANNOTATION.sub(r"\1", line.strip().removeprefix("- "))
                        if text:
                            examples.append((text, str(item["intent"])))
        return examples
    return [(e.text, e.intent) for e in load_project(project).nlu.examples]


def load_shop(path: Path) -> tuple[list[Example], list[Example]]:
    train: list[Example] = list(shop_examples(Path(".")))
    known = {intent for _, intent in train}
    evaluation: list[Example] = [
        (text, intent if intent in known else None)
        for text, intent in read_csv(path, "utterance", "intent")
    ]
    return train, evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help="CLINC JSON, BANKING CSV or SMP folder")
    parser.add_argument("--test", type=Path, help="held-out part in the same format")
    parser.add_argument("--shop", type=Path, help="Bitext CSV scored with the shop's own NLU")
    args = parser.parse_args()
    if args.shop:
        train, evaluation = load_shop(args.shop)
    elif args.data is None:
        parser.error("give DATA or --shop CSV")
    elif args.data.is_dir():
        train, evaluation = load_smp(args.data, args.test)
    elif args.data.suffix == ".json":
        train, evaluation = load_clinc(args.data, args.test)
    else:
        train, evaluation = load_banking(args.data, args.test)
    if not any(intent for _, intent in train):
        sys.exit("no training examples")

    with threadpool_limits(limits=1):
        started = time.perf_counter()
        classifier = IntentClassifier.train(
            [(text, intent) for text, intent in train if intent is not None],
            out_of_scope_examples=[text for text, intent in train if intent is None],
        )
        training_seconds = time.perf_counter() - started
        classifier.predict("warm up")
        timings: list[float] = []
        predicted: list[str | None] = []
        for text, _ in evaluation:
            started = time.perf_counter()
            predicted.append(classifier.predict(text).intent)
            timings.append((time.perf_counter() - started) * 1000)

    in_scope = [(p, gold) for p, (_, gold) in zip(predicted, evaluation, strict=True) if gold]
    oos_gold = sum(1 for _, gold in evaluation if gold is None)
    oos_predicted = sum(1 for p in predicted if p is None)
    oos_hits = sum(
        1 for p, (_, gold) in zip(predicted, evaluation, strict=True) if not p and not gold
    )
    figures = {
        "accuracy": round(sum(p == gold for p, gold in in_scope) / len(in_scope), 4)
        if in_scope
        else None,
        "oos_recall": round(oos_hits / oos_gold, 4) if oos_gold else None,
        "oos_precision": round(oos_hits / oos_predicted, 4) if oos_predicted and oos_gold else None,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(statistics.quantiles(timings, n=100)[98], 3),
        "n": len(evaluation),
    }
    print(f"intents: {len(classifier.intents)}; training examples: {len(train)}")
    print(f"training: {training_seconds:.2f} s")
    print(f"evaluated: {len(in_scope)} in scope, {oos_gold} out of scope")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
