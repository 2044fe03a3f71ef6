"""The reference shop's conversation tests speak Chinese as well as English: at least 30% of
the typed customer turns (button payloads carry no language and are not counted)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.yamlio import parse_yaml

CONVERSATIONS = Path(__file__).parent / "conversations"
_CHINESE = re.compile(r"[\u4e00-\u9fff]")
MIN_CHINESE_SHARE = 0.3


def _typed_turns() -> list[str]:
    turns = []
    for path in sorted(CONVERSATIONS.glob("*.yml")):
        data, problems = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        assert problems == []
        for case in data["test_cases"]:
            turns += [s["user"] for s in case["steps"] if "user" in s]
    return [t for t in turns if not t.startswith("/")]


def test_at_least_thirty_percent_of_the_customer_turns_are_chinese() -> None:
    turns = _typed_turns()
    chinese = [t for t in turns if _CHINESE.search(t)]
    assert len(turns) > 100
    assert len(chinese) / len(turns) >= MIN_CHINESE_SHARE, (len(chinese), len(turns))
