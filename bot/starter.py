"""``kefu init``: copy the starter project (``bot/starter_project/``) into a directory.

The starter is a small Rasa CALM project a developer can grow: a domain with English and
Chinese responses, three flows routed by their descriptions, a custom action, a knowledge
base, and conversation tests that ``kefu test`` passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.errors import TargetNotEmptyError

STARTER = Path(__file__).parent / "starter_project"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".kefu", "*.db")


def init_project(target: Path) -> list[Path]:
    """Write the starter project into ``target`` (created if missing; it must be empty).

    Returns the files written, relative to ``target``.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetNotEmptyError(f"{target} is not an empty directory; choose a new one")
    shutil.copytree(STARTER, target, ignore=_SKIP, dirs_exist_ok=True)
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
