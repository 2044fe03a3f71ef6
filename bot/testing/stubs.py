"""Custom actions answered by conversation tests: Rasa's ``stub_custom_actions``.

A test file may say what an action returns instead of running it. The stubbing runner wraps
the project's real runner; each test conversation has its own stubs, and an action a
conversation did not stub runs for real (or fails, if its module could not be loaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.errors import ActionError
from bot.ports import ActionResult, ActionRunner


class StubbingActionRunner:
    """An :class:`~bot.ports.ActionRunner` that answers stubbed actions per conversation."""

    def __init__(self, inner: ActionRunner | None) -> None:
        self._inner = inner
        self._stubs: dict[str, dict[str, ActionResult]] = {}
        self._names: set[str] = set()

    def use(self, conversation_id: str, stubs: Mapping[str, ActionResult]) -> None:
        """Answer ``stubs`` (by action name) in the conversation ``conversation_id``."""
        self._stubs[conversation_id] = dict(stubs)
        self._names.update(stubs)

    def knows(self, name: str) -> bool:
        """A stubbed action, or one the wrapped runner knows."""
        return name in self._names or (self._inner is not None and self._inner.knows(name))

    async def run(
        self,
        name: str,
        *,
        tracker: dict[str, Any],
        domain: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """The conversation's stub for ``name``, else the wrapped runner's result."""
        stub = self._stubs.get(str(tracker.get("sender_id")), {}).get(name)
        if stub is not None:
            return ActionResult(
                events=[dict(e) for e in stub.events], responses=[dict(r) for r in stub.responses]
            )
        if self._inner is None:
            raise ActionError(f"unknown custom action '{name}' (no actions package, no stub)")
        return await self._inner.run(
            name, tracker=tracker, domain=domain, idempotency_key=idempotency_key
        )

    async def start(self) -> None:
        """Start the wrapped runner (a remote one learns its actions up front)."""
        if self._inner is not None:
            await self._inner.start()

    async def close(self) -> None:
        """Close the wrapped runner."""
        if self._inner is not None:
            await self._inner.close()
