"""Messages nothing understood, grouped by meaning, and a group as Rasa NLU training data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.reporting import UnknownMessage

Embed = Callable[[str, list[str]], np.ndarray]
"""(language, texts) → one vector per text."""
SIMILARITY = {"en": 0.6, "zh": 0.9}
"""Cosine similarity to a group's centre above which a message joins that group, per encoder
(multilingual e5 rates unrelated Chinese sentences about 0.83 alike, MiniLM below 0.3)."""


@dataclass
class Group:
    """Similar messages, the most central first."""

    language: str
    messages: list[UnknownMessage] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The group's distinct texts, most central first."""
        return list(dict.fromkeys(m.text for m in self.messages))


def encoder_embed(language: str, texts: list[str]) -> np.ndarray:
    """Embed with the sentence encoders kefu ships (Chinese: e5; anything else: MiniLM)."""
    from bot.understanding.encoder import encoder

    return encoder("zh" if language.startswith("zh") else "en").embed(texts)


def group_messages(
    messages: Sequence[UnknownMessage], *, embed: Embed = encoder_embed
) -> list[Group]:
    """Greedy grouping per language: each message joins the closest group above its similarity.

    Identical texts count once for the grouping and stay as examples. Largest groups first.
    """
    groups: list[Group] = []
    by_language: dict[str, list[UnknownMessage]] = {}
    for message in messages:
        by_language.setdefault(message.language or "en", []).append(message)
    for language, items in sorted(by_language.items()):
        similarity = SIMILARITY["zh" if language.startswith("zh") else "en"]
        texts = sorted({m.text for m in items})
        raw = np.asarray(embed(language, texts), dtype=np.float64)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        vectors = raw / np.where(norms == 0, 1.0, norms)
        centres: list[np.ndarray] = []
        members: list[list[int]] = []
        for i, vector in enumerate(vectors):
            if centres:
                scores = np.stack(centres) @ vector
                best = int(np.argmax(scores))
                if scores[best] >= similarity:
                    members[best].append(i)
                    centre = vectors[members[best]].mean(axis=0)
                    centres[best] = centre / (np.linalg.norm(centre) or 1.0)
                    continue
            centres.append(vector)
            members.append([i])
        by_text: dict[str, list[UnknownMessage]] = {}
        for m in items:
            by_text.setdefault(m.text, []).append(m)
        for centre, indexes in zip(centres, members, strict=True):
            ranked = sorted(indexes, key=lambda i: -float(vectors[i] @ centre))
            group = Group(language)
            for i in ranked:
                group.messages.extend(by_text[texts[i]])
            groups.append(group)
    groups.sort(key=lambda g: (-len(g.messages), g.messages[0].text))
    return groups


def nlu_yaml(intent: str, texts: Sequence[str]) -> str:
    """Rasa NLU training data (``version: "3.1"``) giving ``texts`` as examples of ``intent``."""
    unique = list(dict.fromkeys(" ".join(t.split()) for t in texts if t.strip()))
    examples = "".join(f"      - {text}\n" for text in unique)
    return f'version: "3.1"\nnlu:\n  - intent: {intent}\n    examples: |\n{examples}'
