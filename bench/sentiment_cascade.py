"""How wide the English sentiment cascade's band should be, on kefu's own examples only.

    python bench/sentiment_cascade.py [--shuffles 3]

10-fold cross-validation over ``bot/understanding/data/sentiment_examples_en.tsv`` (each fold's
two stages are taught on the other nine, exactly as ``EnglishScorer`` teaches them), repeated
with a few shuffles. Prints the first stage's and the encoder's accuracy on the held-out
examples, then for each band: the share of examples the encoder would read (a negated affect
word always goes to it), the cascade's accuracy, and how often it agrees with the encoder.
``CASCADE_BAND`` is the smallest band within one point of the encoder's accuracy. No public
data set is read. Asserts nothing; the last line is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy loads

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.understanding.sentiment import (
    CASCADE_BAND,
    EN_BOUNDARY,
    ENCODER_C,
    STATIC_C,
    LogisticStage,
    analyzer,
    encoded_vectors,
    examples,
    static_vectors,
)

BANDS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shuffles", type=int, default=3)
    args = parser.parse_args()
    scorer = analyzer().english()
    labelled = examples()
    texts = [text for _, text in labelled]
    negative = np.array([label == "negative" for label, _ in labelled], dtype=np.int64)
    shapes = np.array([scorer.shape(text) for text in texts])
    static, encoded = static_vectors(texts), encoded_vectors(texts)
    negated = np.array([scorer.negates_affect(text) for text in texts])
    first_runs, second_runs = [], []
    for seed in range(args.shuffles):
        first, second = np.zeros(len(texts)), np.zeros(len(texts))
        folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed + 1)
        for train, test in folds.split(texts, negative):
            stage = LogisticStage.fit(static[train], shapes[train], negative[train], c=STATIC_C)
            first[test] = [
                stage.log_odds(v, s) for v, s in zip(static[test], shapes[test], strict=True)
            ]
            stage = LogisticStage.fit(encoded[train], shapes[train], negative[train], c=ENCODER_C)
            second[test] = [
                stage.log_odds(v, s) for v, s in zip(encoded[test], shapes[test], strict=True)
            ]
        first_runs.append(first)
        second_runs.append(second)
    first, second = np.concatenate(first_runs), np.concatenate(second_runs)
    truth = np.tile(negative, args.shuffles).astype(bool)
    always = np.tile(negated, args.shuffles)
    first_accuracy = float(((first > EN_BOUNDARY) == truth).mean())
    second_accuracy = float(((second > EN_BOUNDARY) == truth).mean())
    print(f"{len(texts)} examples, 10 folds x {args.shuffles} shuffles")
    print(f"first stage alone {first_accuracy:.3f}, encoder alone {second_accuracy:.3f}")
    rows = []
    for band in BANDS:
        read = (np.abs(first - EN_BOUNDARY) < band) | always
        cascade = np.where(read, second, first) > EN_BOUNDARY
        row = {
            "band": band,
            "encoder_share": round(float(read.mean()), 3),
            "accuracy": round(float((cascade == truth).mean()), 3),
            "agrees_with_encoder": round(float((cascade == (second > EN_BOUNDARY)).mean()), 3),
        }
        rows.append(row)
        mark = "  <- CASCADE_BAND" if band == CASCADE_BAND else ""
        print(
            f"  band {band:.2f}: encoder reads {row['encoder_share']:.0%}, accuracy "
            f"{row['accuracy']:.3f}, agrees with the encoder {row['agrees_with_encoder']:.3f}{mark}"
        )
    print(
        json.dumps(
            {"first": round(first_accuracy, 3), "encoder": round(second_accuracy, 3), "bands": rows}
        )
    )


if __name__ == "__main__":
    main()
