"""Rasa Pro project templates under kefu: validation, and e2e pass rate with no LLM.

    pip download --no-deps rasa-pro==3.21.0 -d /tmp/rasa-pro
    (unpack the wheel's rasa/cli/project_templates/ to, say, /tmp/templates)
    python bench/rasa_templates.py /tmp/templates

Every sub-folder of the argument that holds a domain is a template. For each: the problems
``kefu validate`` finds, its warnings (what config.yml / endpoints.yml ask for that kefu does
not do), and the template's own e2e tests run by ``kefu test`` with no LLM configured (the
environment's LLM settings and the templates' model groups are ignored). Failed tests are
grouped by cause. Prints figures, asserts nothing; the last line is one JSON object.
The templates are Rasa's (their licence): never copy them into this repository.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.project import inspect_project
from bot.rasa_config import read_rasa_config
from bot.settings import Settings
from bot.testing.e2e import run_tests
from bot.testing.e2e_runner import Failure


def cause(failure: Failure) -> str:
    """A failure's likely cause, from what the turn expected and what it did."""
    actual = "\n".join(failure.actual)
    started = re.search(r"flows started: (.*)", actual)
    flows = [f for f in (started.group(1).split(", ") if started else []) if f != "none"]
    user_flows = [f for f in flows if not f.startswith("pattern_")]
    if "pattern_internal_error" in flows:
        return "a custom action failed or could not be loaded"
    expected_flow = re.match(r"flow '([^']+)' to be started", failure.expected)
    if expected_flow:
        if expected_flow.group(1).startswith("pattern_"):
            return f"{expected_flow.group(1)} not started"
        if user_flows:
            return "routing: another flow started"
        return "routing: no flow started (out of scope)"
    if "the turn to complete" in failure.expected:
        return "the turn crashed or timed out"
    if failure.expected.startswith(("the bot to", "the bot not to")):
        return "a different response"
    if failure.expected.startswith("slots") and "not to be set" not in failure.expected:
        if "slots set: none" in actual:
            return "slot values in the message not extracted (an LLM's job; no entities)"
        return "a slot set to another value"
    if failure.expected.startswith("action"):
        return "an action not run"
    return failure.expected.split(",")[0]


async def bench_template(folder: Path) -> dict[str, object]:
    started = time.perf_counter()
    project, problems = inspect_project(folder)
    warnings = read_rasa_config(folder).warnings
    result: dict[str, object] = {
        "template": folder.name,
        "problems": len(problems),
        "warnings": len(warnings),
    }
    if project is None or problems:
        for problem in problems[:10]:
            print(f"    {problem}")
        return result
    output = io.StringIO()
    report = await run_tests(project, output=output, settings=Settings())
    result.update(
        tests=report.passed + report.failed,
        passed=report.passed,
        test_file_problems=len(report.problems),
        causes=dict(Counter(cause(f) for f in report.failures).most_common()),
        seconds=round(time.perf_counter() - started, 1),
    )
    return result


def main() -> None:
    logging.disable(logging.CRITICAL)  # the templates' actions log freely
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/templates")
    folders = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and ((p / "domain.yml").is_file() or (p / "domain").is_dir())
    )
    results = []
    for folder in folders:
        result = asyncio.run(bench_template(folder))
        results.append(result)
        valid = "valid" if not result["problems"] else f"{result['problems']} problem(s)"
        line = f"{folder.name:10} {valid}, {result['warnings']} warning(s)"
        if "tests" in result:
            tests, passed = int(str(result["tests"])), int(str(result["passed"]))
            rate = f"{passed / tests:.0%}" if tests else "n/a"
            line += f"; e2e {passed}/{tests} passed ({rate}) in {result['seconds']} s"
        print(line)
        for reason, count in dict(result.get("causes") or {}).items():
            print(f"    {count} x {reason}")
    tests = sum(int(str(r.get("tests", 0))) for r in results)
    passed = sum(int(str(r.get("passed", 0))) for r in results)
    print(f"all templates: {passed}/{tests} e2e tests passed")
    print(json.dumps({"templates": results, "tests": tests, "passed": passed}))


if __name__ == "__main__":
    main()
