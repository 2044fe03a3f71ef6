"""Sentiment quality and speed of kefu's scorer on a labelled file: "negative or not".

    python bench/sentiment.py CSV [--limit N]

CSV has a header with columns ``text`` and ``label``; a label is ``0``/``1`` (0 = negative,
as in the Chinese review sets) or ``negative``/``neutral``/``positive`` (as in the airline
tweets). A message is predicted negative when its score is below ``NEGATIVE_BELOW``. Prints
accuracy and macro-F1 of "negative or not", the confusion counts, the share of messages the
English cascade's second stage (the MiniLM encoder) read, milliseconds per message,
and how accuracy would move with the boundary (information only: the boundary is a constant
of bot/understanding/sentiment.py). Asserts nothing; the last line is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy loads

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.understanding.language import detect_language
from bot.understanding.sentiment import NEGATIVE_BELOW, analyzer

NEGATIVE_LABELS = frozenset({"0", "negative"})
KNOWN_LABELS = NEGATIVE_LABELS | {"1", "neutral", "positive"}


def read(path: Path, limit: int | None) -> list[tuple[str, bool]]:
    """(text, is negative) rows; rows with an unknown label stop the run with its line."""
    rows: list[tuple[str, bool]] = []
    with path.open(encoding="utf-8-sig", newline="") as file:
        for number, row in enumerate(csv.DictReader(file), start=2):
            label = (row.get("label") or "").strip().lower()
            if label not in KNOWN_LABELS:
                sys.exit(f"{path}: row {number}: unknown label {label!r}")
            rows.append((row.get("text") or "", label in NEGATIVE_LABELS))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    args = parser.parse_args()
    rows = read(args.csv, args.limit)
    if not rows:
        sys.exit(f"{args.csv}: no rows")
    scorer = analyzer()
    started = time.perf_counter()
    scorer.prepare()
    prepare_s = time.perf_counter() - started
    english = scorer.english()
    encoder_reads = english.encoder_reads
    scores: list[float] = []
    timings: list[float] = []
    for text, _ in rows:
        language = detect_language(text)
        t0 = time.perf_counter()
        scores.append(scorer.score(text, language))
        timings.append((time.perf_counter() - t0) * 1000)
    encoded = english.encoder_reads - encoder_reads
    truth = [negative for _, negative in rows]
    predicted = [score < NEGATIVE_BELOW for score in scores]
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    tn = sum(not p and not t for p, t in zip(predicted, truth, strict=True))
    fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
    fn = sum(not p and t for p, t in zip(predicted, truth, strict=True))
    n = len(rows)
    accuracy = (tp + tn) / n
    macro_f1 = (f1(tp, fp, fn) + f1(tn, fn, fp)) / 2
    timings.sort()
    p50 = statistics.median(timings)
    p99 = timings[min(n - 1, int(n * 0.99))]
    print(f"file: {args.csv}  rows: {n}  negative: {sum(truth)} ({sum(truth) / n:.1%})")
    print(f"predicted negative and negative {tp}, not negative {fp}")
    print(f"predicted not negative and not negative {tn}, negative {fn}")
    print(f"accuracy {accuracy:.4f}  macro-F1 {macro_f1:.4f}  (negative below {NEGATIVE_BELOW})")
    print(f"read by the encoder (English second stage): {encoded} ({encoded / n:.1%})")
    print(f"ms per message: mean {sum(timings) / n:.3f}  p50 {p50:.3f}  p99 {p99:.3f}")
    print(f"preparing the scorer took {prepare_s:.2f} s")
    for boundary in (-0.2, -0.1, -0.05, 0.05, 0.1, 0.2):
        moved = sum((s < boundary) == t for s, t in zip(scores, truth, strict=True)) / n
        print(f"  with the boundary at {boundary:+.2f}: accuracy {moved:.4f}")
    print(
        json.dumps(
            {
                "file": str(args.csv),
                "n": n,
                "accuracy": round(accuracy, 4),
                "macro_f1": round(macro_f1, 4),
                "encoder_share": round(encoded / n, 4),
                "ms_per_message_p50": round(p50, 3),
                "ms_per_message_p99": round(p99, 3),
                "ms_per_message_mean": round(sum(timings) / n, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
