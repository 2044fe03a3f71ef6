"""Running parsed conversation tests against anything that can take a turn.

Each case is a fresh conversation (``test:<case name>:<8 hex digits>``). Cases are independent,
so they run concurrently in small batches; results are printed in file order, one line per
case, then ``N passed, M failed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TextIO
from uuid import uuid4

from bot.errors import Problem
from bot.events import Event, UserMessage, profile_from
from bot.testing.e2e_check import check_turn, describe_turn
from bot.testing.e2e_format import TestCase, UserStep
from bot.testing.stubs import StubbingActionRunner

BATCH_SIZE = 8
"""Cases run at once: enough to hide per-turn latency, few enough to keep SQLite writes calm."""
TURN_TIMEOUT = 60.0
"""Seconds one turn may take before the case fails (a stuck action or LLM call)."""
CHANNEL = "test"


class TurnOutcome(Protocol):
    """What a turn returns: every event it appended, the user's message first."""

    @property
    def events(self) -> Sequence[Event]:
        """Every event the turn appended, the user's message first."""
        ...


class ConversationAgent(Protocol):
    """The two agent calls a conversation test needs (``bot.turns.TurnRunner`` has them)."""

    async def process(self, message: UserMessage, /) -> TurnOutcome:
        """Run one turn for ``message``."""
        ...

    async def set_slots(self, conversation_id: str, slots: dict[str, Any], /) -> None:
        """Set slots as a test's fixtures say, outside any turn."""
        ...


@dataclass(frozen=True)
class Failure:
    """Why a case failed: where, what was expected, and what the turn actually did."""

    case: str
    location: str
    expected: str
    actual: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"  {self.location}: expected {self.expected}"]
        lines.extend(f"    {line}" for line in self.actual)
        return "\n".join(lines)


@dataclass
class TestReport:
    """Counts, failures and the problems that kept files or cases from running."""

    __test__: ClassVar[bool] = False

    passed: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was malformed."""
        return not self.failed and not self.problems

    def summary(self) -> str:
        """``N passed, M failed``: the last line ``kefu test`` prints."""
        return f"{self.passed} passed, {self.failed} failed"


async def run_cases(
    agent: ConversationAgent,
    cases: Sequence[TestCase],
    report: TestReport,
    output: TextIO,
    *,
    stubs: StubbingActionRunner | None = None,
) -> None:
    """Run ``cases`` in batches, print one line (plus details) per case, and count them.

    ``stubs`` is the agent's action runner when cases stub custom actions."""
    for first in range(0, len(cases), BATCH_SIZE):
        batch = cases[first : first + BATCH_SIZE]
        results = await asyncio.gather(*(run_case(agent, case, stubs=stubs) for case in batch))
        for case, failure in zip(batch, results, strict=True):
            if failure is None:
                report.passed += 1
                print(f"PASSED {case.name}", file=output)
            else:
                report.failed += 1
                report.failures.append(failure)
                print(f"FAILED {case.name}\n{failure}", file=output)
            for note in case.unsupported:
                print(f"  {case.file}: {note}", file=output)


async def run_case(
    agent: ConversationAgent, case: TestCase, *, stubs: StubbingActionRunner | None = None
) -> Failure | None:
    """Play one case as a fresh conversation; the first unmet step makes it fail."""
    conversation_id = f"{CHANNEL}:{case.name}:{uuid4().hex[:8]}"
    if case.stubs:
        if stubs is None:
            reason = "this runner cannot stub custom actions"
            return Failure(case.name, _where(case, case.line), "stub_custom_actions", (reason,))
        stubs.use(conversation_id, case.stubs)
    if case.slots:
        await agent.set_slots(conversation_id, dict(case.slots))
    for turn in case.turns:
        message = _message(conversation_id, case, turn.user)
        said = f"user said {turn.user.text!r}"
        try:
            outcome = await asyncio.wait_for(agent.process(message), TURN_TIMEOUT)
        except Exception as err:  # a crashing or stuck turn fails its case, not the run
            reason = (
                "timed out" if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}"
            )
            return Failure(
                case.name, _where(case, turn.user.line), "the turn to complete", (said, reason)
            )
        mismatch = check_turn(turn, outcome.events)
        if mismatch is not None:
            actual = (said, *describe_turn(outcome.events))
            return Failure(case.name, _where(case, mismatch.line), mismatch.expected, actual)
    return None


def _message(conversation_id: str, case: TestCase, user: UserStep) -> UserMessage:
    metadata = {**case.metadata, **user.metadata}
    command = metadata.get("command")
    return UserMessage(
        channel=CHANNEL,
        conversation_id=conversation_id,
        sender_id=conversation_id,
        text=user.text,
        payload=user.text if user.text.startswith("/") else None,
        metadata=metadata,
        command=command if isinstance(command, str) else None,
        profile=profile_from(metadata),
    )


def _where(case: TestCase, line: int | None) -> str:
    return f"{case.file}:{line}" if line else case.file
