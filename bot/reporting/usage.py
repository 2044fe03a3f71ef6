"""What the language model cost, per UTC day, channel and purpose, kept in the store.

The LLM client tells every call to :meth:`LLMUsage.record`, which only adds to counts in
memory; :meth:`LLMUsage.flush` (run with each refresh of the reporting tables, and at
shutdown) adds them to the table in one upsert. The sums add up across restarts and across
workers sharing the database; what a worker had not flushed when it died is lost.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.channel import MessageHandler
from bot.events import BotMessage, UserMessage
from bot.reporting.facts import day_of
from bot.store.engines import Database

if TYPE_CHECKING:  # the dashboard needs no LLM client library loaded
    from bot.llm.client import LLMCall

__all__ = ["LLMDay", "LLMUsage", "channel_of_turn"]

_CHANNEL: contextvars.ContextVar[str] = contextvars.ContextVar("kefu_turn_channel", default="")
_MEASURES = ("calls", "failures", "prompt_tokens", "completion_tokens")


def channel_of_turn(handler: MessageHandler) -> MessageHandler:
    """``handler`` with the message's channel known to the LLM calls its turn makes (calls
    made outside a customer's turn, by scheduled work, count under channel ``""``)."""

    async def handle(message: UserMessage) -> list[BotMessage]:
        token = _CHANNEL.set(message.channel)
        try:
            return await handler(message)
        finally:
            _CHANNEL.reset(token)

    return handle


@dataclass(frozen=True)
class LLMDay:
    """One UTC day's LLM calls (failures among them) and tokens."""

    day: str
    calls: int
    failures: int
    prompt_tokens: int
    completion_tokens: int


class LLMUsage:
    """The ``report_llm_usage`` table and the counts not yet written to it."""

    def __init__(
        self,
        metadata: MetaData,
        *,
        table_prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = Table(
            f"{table_prefix}report_llm_usage",
            metadata,
            Column("day", String(10), primary_key=True),
            Column("channel", String(), primary_key=True),
            Column("purpose", String(), primary_key=True),
            *(Column(name, Integer, nullable=False) for name in _MEASURES),
        )
        self._clock = clock
        self._pending: dict[tuple[str, str, str], Counter[str]] = {}

    def record(self, call: LLMCall) -> None:
        """Count one call (an LLM client observer: returns at once, writes nothing)."""
        key = (day_of(self._clock()), _CHANNEL.get(), call.purpose[:64])
        counts = self._pending.setdefault(key, Counter())
        counts["calls"] += 1
        counts["failures"] += int(not call.ok)
        counts["prompt_tokens"] += call.prompt_tokens
        counts["completion_tokens"] += call.completion_tokens

    async def flush(self, db: Database) -> None:
        """Add the counts recorded since the last flush to the table."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        rows = [
            {
                "day": day,
                "channel": channel,
                "purpose": purpose,
                **{name: counts[name] for name in _MEASURES},
            }
            for (day, channel, purpose), counts in pending.items()
        ]

        def work(conn: Connection) -> None:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(self.table)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["day", "channel", "purpose"],
                    set_={name: self.table.c[name] + stmt.excluded[name] for name in _MEASURES},
                ),
                rows,
            )

        try:
            await db.write(work)
        except BaseException:
            for key, counts in pending.items():  # kept for the next flush
                self._pending.setdefault(key, Counter()).update(counts)
            raise

    def days(self, conn: Connection, *, first: str, last: str, channel: str) -> list[LLMDay]:
        """The per-day sums from ``first`` to ``last`` (both included), one channel or all."""
        t = self.table
        where = [t.c.day >= first, t.c.day <= last]
        if channel:
            where.append(t.c.channel == channel)
        stmt = (
            select(t.c.day, *(func.sum(t.c[name]) for name in _MEASURES))
            .where(*where)
            .group_by(t.c.day)
            .order_by(t.c.day)
        )
        return [LLMDay(day, *(int(v) for v in values)) for day, *values in conn.execute(stmt)]
