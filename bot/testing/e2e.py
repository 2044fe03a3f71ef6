"""``kefu test``: run a project's conversation tests (Rasa's e2e format) against its agent.

The agent is the real one, with a throwaway SQLite store unless ``store_url`` says otherwise,
so a test exercises understanding, flows, actions and storage exactly as a customer would.
Action modules that cannot be imported (they need Rasa itself, say) are reported once; only
the tests that reach their actions fail.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TextIO

from bot.actions import create_action_runner
from bot.app import App
from bot.errors import Problem, ProjectError
from bot.project import Project, load_project
from bot.settings import Settings
from bot.store import open_store
from bot.testing.e2e_format import TestCase, parse_test_file
from bot.testing.e2e_runner import TestReport, run_cases
from bot.testing.stubs import StubbingActionRunner

__all__ = ["main_test", "run_tests"]

_SUFFIXES = (".yml", ".yaml")


async def run_tests(
    project: Project,
    paths: Sequence[Path] | None = None,
    *,
    store_url: str | None = None,
    output: TextIO | None = None,
    settings: Settings | None = None,
) -> TestReport:
    """Run the tests in ``paths`` (files or folders; default the project's) and report.

    Problems in the test files are printed first; the last line printed is always
    ``N passed, M failed``. ``output`` defaults to the ``sys.stdout`` of the moment of the call;
    ``settings`` to the environment's over the project's configuration files.
    """
    output = output or sys.stdout
    report = TestReport()
    files = list(project.test_paths) if not paths else _expand(paths, report.problems)
    cases: list[TestCase] = []
    for file in files:
        parsed, problems = parse_test_file(file)
        cases.extend(parsed)
        report.problems.extend(problems)
    for problem in report.problems:
        print(problem, file=output)
    if cases:
        async with AsyncExitStack() as stack:
            if store_url is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="kefu-test-"))
                store_url = f"sqlite+aiosqlite:///{folder}/kefu-test.db"
            store = await open_store(store_url)
            stack.push_async_callback(store.close)
            settings = settings or Settings.from_env(project_dir=project.root)
            runner = create_action_runner(
                project_dir=project.root, endpoint=settings.action_endpoint, partial=True
            )
            for problem in getattr(runner, "load_problems", ()):
                print(f"{problem} (tests that reach its actions fail)", file=output)
            stubs = StubbingActionRunner(runner)
            app = await App.create(project, settings=settings, store=store, action_runner=stubs)
            stack.push_async_callback(app.close)
            await run_cases(app.turns, cases, report, output, stubs=stubs)
    print(report.summary(), file=output)
    return report


def main_test(project_dir: Path, paths: Sequence[Path]) -> int:
    """What ``kefu test`` does: load the project, run its tests; exit code 1 on any failure."""
    try:
        project = load_project(project_dir)
    except ProjectError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    report = asyncio.run(run_tests(project, paths))
    return 0 if report.ok else 1


def _expand(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    """Test files named or found (recursively, ``*.yml``/``*.yaml``) under the given paths."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "no such test file or folder"))
    return files
