"""The reporting tables: one row per conversation, its counts, and what nothing understood.

The store keeps each turn's events as one JSON row, which no query can count quickly; the
rollup reads the event rows added since its last run (a cursor on the events' id), recomputes
the touched conversations' facts and writes them to three narrow, indexed tables. Figures
then read only those tables, so a page stays fast however long the event log grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.errors import StoreError
from bot.reporting.facts import ASKED, ConversationFacts, UnknownMessage, day_of, summarize
from bot.reporting.figures import Bucket, Figures, Query, compute
from bot.store.engines import Database, database_url, open_database
from bot.store.schema import Tables

__all__ = ["ConversationRow", "Reporting"]

log = logging.getLogger(__name__)

BATCH = 2000
"""Event rows read per refresh step."""
_CURSOR_KEY = ("reporting", "events_cursor")
_KINDS = ("intent", "flow_started", "flow_completed", "flow_cancelled")


@dataclass(frozen=True)
class ConversationRow:
    """One line of the conversations list."""

    conversation_id: str
    channel: str
    language: str
    started_at: float
    last_active_at: float
    user_messages: int
    handoff_reason: str | None
    csat: int | None


class Reporting:
    """Keeps the reporting tables of one store (same URL, same table prefix) and queries them."""

    def __init__(self, url: str, *, table_prefix: str = "") -> None:
        self._db: Database = open_database(database_url(url))
        self._store = Tables(table_prefix)
        self.metadata = md = MetaData()
        p = table_prefix
        self.facts = Table(
            f"{p}report_conversations",
            md,
            Column("conversation_id", String(), primary_key=True),
            Column("channel", String(), nullable=False),
            Column("language", String(), nullable=False),
            Column("day", String(10), nullable=False),
            Column("started_at", Double, nullable=False),
            Column("last_active_at", Double, nullable=False),
            Column("user_messages", Integer, nullable=False),
            Column("last_user_at", Double),
            Column("last_bot_at", Double),
            Column("confirmed", Integer, nullable=False),
            Column("last_not_understood", Integer, nullable=False),
            Column("open_flows", Integer, nullable=False),
            Column("handoff_at", Double),
            Column("handoff_reason", String()),
            Column("claimed_at", Double),
            Column("resolved_at", Double),
            Column("csat", Integer),
            Column("unknown_count", Integer, nullable=False),
            Index(f"{p}ix_report_conversations_started_at", "started_at"),
        )
        self.counts = Table(
            f"{p}report_counts",
            md,
            Column("conversation_id", String(), nullable=False),
            Column("started_at", Double, nullable=False),
            Column("channel", String(), nullable=False),
            Column("language", String(), nullable=False),
            Column("kind", String(), nullable=False),
            Column("name", String(), nullable=False),
            Column("n", Integer, nullable=False),
            Index(f"{p}ix_report_counts_kind_name", "kind", "name"),
            Index(f"{p}ix_report_counts_conversation_id", "conversation_id"),
        )
        # The counts summed per UTC day: what the figures read, a few rows a day whatever the
        # traffic. Kept by adding each redone conversation's new counts and taking its old ones.
        self.daily = Table(
            f"{p}report_daily_counts",
            md,
            Column("day", String(10), primary_key=True),
            Column("channel", String(), primary_key=True),
            Column("language", String(), primary_key=True),
            Column("kind", String(), primary_key=True),
            Column("name", String(), primary_key=True),
            Column("n", Integer, nullable=False),
        )
        self.unknown = Table(
            f"{p}report_unknown",
            md,
            Column("conversation_id", String(), nullable=False),
            Column("timestamp", Double, nullable=False),
            Column("channel", String(), nullable=False),
            Column("language", String(), nullable=False),
            Column("text", Text, nullable=False),
            Index(f"{p}ix_report_unknown_timestamp", "timestamp"),
            Index(f"{p}ix_report_unknown_conversation_id", "conversation_id"),
        )
        self._lock = asyncio.Lock()

    async def initialize(self) -> None:
        """Create the reporting tables that are missing."""
        try:
            await self._db.write(self.metadata.create_all)
        except Exception as exc:
            raise StoreError(f"cannot create the reporting tables: {exc}") from exc

    async def close(self) -> None:
        """Release the database connections."""
        await self._db.dispose()

    # --- keeping the rollup -------------------------------------------------------------

    async def refresh(self, *, budget: float | None = None) -> int:
        """Bring the tables up to date with the event log; the number of conversations redone.

        With ``budget`` (seconds) it stops after the step that exceeds it, so that a page never
        waits for the first rollup of a large store; :meth:`keep_fresh` catches up meanwhile.
        """
        redone = 0
        started = time.monotonic()
        async with self._lock:
            while True:
                step = await self._db.write(self._refresh_step)
                redone += step
                if step == 0 or (budget is not None and time.monotonic() - started > budget):
                    return redone

    async def keep_fresh(self, *, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failed refresh is logged."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("the reporting rollup could not be refreshed")
            await asyncio.sleep(interval)

    def _refresh_step(self, conn: Connection) -> int:
        events, conv, kv = self._store.events, self._store.conversations, self._store.kv
        cursor_row = conn.execute(
            select(kv.c.value).where(kv.c.namespace == _CURSOR_KEY[0], kv.c.key == _CURSOR_KEY[1])
        ).first()
        cursor = int(cursor_row.value) if cursor_row else 0
        rows = conn.execute(
            select(events.c.id, events.c.conversation_id)
            .where(events.c.id > cursor)
            .order_by(events.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return 0
        ids = sorted({r.conversation_id for r in rows})
        channels = dict(
            conn.execute(select(conv.c.id, conv.c.channel).where(conv.c.id.in_(ids))).all()
        )
        log: dict[str, list[dict[str, Any]]] = {cid: [] for cid in ids}
        for row in conn.execute(
            select(events.c.conversation_id, events.c.data)
            .where(events.c.conversation_id.in_(ids))
            .order_by(events.c.conversation_id, events.c.seq)
        ):
            log[row.conversation_id].extend(orjson.loads(row.data))
        all_facts = [
            summarize(cid, channels.get(cid) or cid.partition(":")[0], log[cid]) for cid in ids
        ]
        c = self.counts
        deltas: Counter[tuple[str, str, str, str, str]] = Counter()
        for old in conn.execute(
            select(c.c.started_at, c.c.channel, c.c.language, c.c.kind, c.c.name, c.c.n).where(
                c.c.conversation_id.in_(ids)
            )
        ):
            deltas[(day_of(old.started_at), old.channel, old.language, old.kind, old.name)] -= old.n
        for table in (self.facts, self.counts, self.unknown):
            conn.execute(delete(table).where(table.c.conversation_id.in_(ids)))
        facts_rows = [_fact_row(f) for f in all_facts if f.started_at]
        if facts_rows:
            conn.execute(self.facts.insert(), facts_rows)
        count_rows = [row for f in all_facts if f.started_at for row in _count_rows(f)]
        if count_rows:
            conn.execute(self.counts.insert(), count_rows)
        for new in count_rows:
            key = (day_of(new["started_at"]), new["channel"], new["language"], new["kind"])
            deltas[(*key, new["name"])] += new["n"]
        self._add_daily(conn, deltas)
        unknown_rows = [
            {
                "conversation_id": u.conversation_id,
                "timestamp": u.timestamp,
                "channel": f.channel,
                "language": u.language,
                "text": u.text,
            }
            for f in all_facts
            for u in f.unknown
        ]
        if unknown_rows:
            conn.execute(self.unknown.insert(), unknown_rows)
        new_cursor = str(rows[-1].id)
        values = {"value": new_cursor, "updated_at": time.time()}
        if cursor_row is None:
            conn.execute(kv.insert().values(namespace=_CURSOR_KEY[0], key=_CURSOR_KEY[1], **values))
        else:
            conn.execute(
                kv.update()
                .where(kv.c.namespace == _CURSOR_KEY[0], kv.c.key == _CURSOR_KEY[1])
                .values(**values)
            )
        return len(ids)

    def _add_daily(self, conn: Connection, deltas: Counter[tuple[str, str, str, str, str]]) -> None:
        rows = [
            {"day": d, "channel": ch, "language": lang, "kind": k, "name": name, "n": n}
            for (d, ch, lang, k, name), n in deltas.items()
            if n
        ]
        if not rows:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(self.daily)
        upsert = stmt.on_conflict_do_update(
            index_elements=[col.name for col in self.daily.primary_key],
            set_={"n": self.daily.c.n + stmt.excluded.n},
        )
        conn.execute(upsert, rows)

    # --- reading ------------------------------------------------------------------------

    async def figures(self, query: Query, *, now: float | None = None) -> Figures:
        """Every figure of the dashboard for ``query``'s period, channel and language.

        Intent and flow counts are summed per UTC day: they cover the whole days the period
        touches (the dashboard's periods start at midnight UTC, so both agree there).
        """
        now = time.time() if now is None else now

        def work(conn: Connection) -> Figures:
            f = self.facts
            where = self._where(f, query)
            verdict = _verdict(f, now=now, window=query.window)
            handed = f.c.handoff_at.isnot(None)

            def count_if(condition: Any) -> Any:
                return func.sum(case((condition, 1), else_=0))

            buckets = [
                Bucket._make(r)
                for r in conn.execute(
                    select(
                        f.c.day,
                        f.c.channel,
                        f.c.language,
                        func.count(),
                        count_if(f.c.user_messages > 0),
                        count_if(verdict.in_(("contained", "not_contained"))),
                        count_if(verdict == "contained"),
                        count_if(verdict == "open"),
                        count_if(handed),
                        count_if(handed & f.c.resolved_at.isnot(None)),
                        func.sum(f.c.unknown_count),
                    )
                    .where(*where)
                    .group_by(f.c.day, f.c.channel, f.c.language)
                )
            ]
            claimed = f.c.claimed_at.isnot(None)
            durations = conn.execute(
                select(f.c.claimed_at - f.c.handoff_at, f.c.resolved_at - f.c.claimed_at).where(
                    *where, handed, claimed
                )
            ).all()
            reasons = conn.execute(
                select(f.c.handoff_reason, func.count())
                .where(*where, handed)
                .group_by(f.c.handoff_reason)
            ).all()
            csat = conn.execute(
                select(f.c.csat, func.count())
                .where(*where, f.c.csat.isnot(None))
                .group_by(f.c.csat)
            ).all()
            d = self.daily
            total = func.sum(d.c.n).label("total")
            named: dict[str, list[tuple[str, int]]] = {kind: [] for kind in _KINDS}
            days = [d.c.day >= day_of(query.since), d.c.day <= day_of(query.until)]
            if query.channel:
                days.append(d.c.channel == query.channel)
            if query.language:
                days.append(d.c.language == query.language)
            for row in conn.execute(
                select(d.c.kind, d.c.name, total)
                .where(*days)
                .group_by(d.c.kind, d.c.name)
                .having(total > 0)
                .order_by(total.desc(), d.c.name)
            ):
                named.setdefault(row.kind, []).append((row.name, int(row.total)))
            return compute(
                buckets,
                named,
                query=query,
                claims=[float(d[0]) for d in durations],
                handling=[float(d[1]) for d in durations if d[1] is not None],
                reasons={r or ASKED: int(n) for r, n in reasons},
                csat={int(score): int(n) for score, n in csat},
            )

        return await self._db.read(work)

    async def unknown_messages(self, query: Query, *, limit: int = 2000) -> list[UnknownMessage]:
        """The messages nothing understood in ``query``'s period, newest first."""
        u = self.unknown

        def work(conn: Connection) -> list[UnknownMessage]:
            conditions = [u.c.timestamp >= query.since, u.c.timestamp < query.until]
            if query.channel:
                conditions.append(u.c.channel == query.channel)
            if query.language:
                conditions.append(u.c.language == query.language)
            stmt = (
                select(u.c.conversation_id, u.c.timestamp, u.c.text, u.c.language)
                .where(*conditions)
                .order_by(u.c.timestamp.desc())
                .limit(limit)
            )
            return [UnknownMessage(*row) for row in conn.execute(stmt)]

        return await self._db.read(work)

    async def conversations(
        self,
        query: Query,
        *,
        search: str = "",
        intent: str = "",
        handoff: bool | None = None,
        limit: int = 100,
    ) -> list[ConversationRow]:
        """Conversations started in ``query``'s period, newest first, filtered as asked."""
        f = self.facts

        def work(conn: Connection) -> list[ConversationRow]:
            conditions = list(self._where(f, query))
            if search:
                conditions.append(f.c.conversation_id.contains(search, autoescape=True))
            if handoff is not None:
                conditions.append(
                    f.c.handoff_at.isnot(None) if handoff else f.c.handoff_at.is_(None)
                )
            if intent:
                c = self.counts
                conditions.append(
                    f.c.conversation_id.in_(
                        select(c.c.conversation_id).where(
                            and_(c.c.kind == "intent", c.c.name == intent, *self._where(c, query))
                        )
                    )
                )
            stmt = (
                select(
                    f.c.conversation_id,
                    f.c.channel,
                    f.c.language,
                    f.c.started_at,
                    f.c.last_active_at,
                    f.c.user_messages,
                    f.c.handoff_reason,
                    f.c.csat,
                )
                .where(*conditions)
                .order_by(f.c.started_at.desc())
                .limit(limit)
            )
            return [ConversationRow(*row) for row in conn.execute(stmt)]

        return await self._db.read(work)

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]] | None:
        """A conversation's events in order (as stored), or None when there is no such one."""
        events, conv = self._store.events, self._store.conversations

        def work(conn: Connection) -> list[dict[str, Any]] | None:
            found = conn.execute(select(conv.c.id).where(conv.c.id == conversation_id)).first()
            if found is None:
                return None
            out: list[dict[str, Any]] = []
            for row in conn.execute(
                select(events.c.data)
                .where(events.c.conversation_id == conversation_id)
                .order_by(events.c.seq)
            ):
                out.extend(orjson.loads(row.data))
            return out

        return await self._db.read(work)

    async def outbox_counts(self) -> dict[str, int]:
        """Deliveries by status (``pending``, ``failed``...), for operations' metrics."""
        outbox = self._store.outbox

        def work(conn: Connection) -> dict[str, int]:
            stmt = select(outbox.c.status, func.count()).group_by(outbox.c.status)
            return {status: int(n) for status, n in conn.execute(stmt)}

        return await self._db.read(work)

    async def waiting_handoffs(self) -> int:
        """Conversations handed off and not yet claimed by an agent (as of the last refresh)."""
        f = self.facts

        def work(conn: Connection) -> int:
            stmt = select(func.count()).where(
                f.c.handoff_at.isnot(None), f.c.claimed_at.is_(None), f.c.resolved_at.is_(None)
            )
            return int(conn.execute(stmt).scalar_one())

        return await self._db.read(work)

    @staticmethod
    def _where(table: Table, query: Query) -> Sequence[Any]:
        conditions = [table.c.started_at >= query.since, table.c.started_at < query.until]
        if query.channel:
            conditions.append(table.c.channel == query.channel)
        if query.language:
            conditions.append(table.c.language == query.language)
        return conditions


def _verdict(f: Table, *, now: float, window: float) -> Any:
    """SQL for Figures' containment rule: ``contained``, ``not_contained``, ``open`` or ``none``.

    Handed off: not contained. No customer message: none. Otherwise contained when the bot
    answered the last message and the customer confirmed; still open while the customer may
    write again (``window``); after that, contained when the last message was answered and
    understood and no customer flow was left half done.
    """
    answered = f.c.last_bot_at.isnot(None) & (
        f.c.last_bot_at >= func.coalesce(f.c.last_user_at, 0.0)
    )
    return case(
        (f.c.handoff_at.isnot(None), "not_contained"),
        (f.c.user_messages == 0, "none"),
        ((f.c.confirmed == 1) & answered, "contained"),
        (f.c.last_active_at > now - window, "open"),
        (answered & (f.c.last_not_understood == 0) & (f.c.open_flows == 0), "contained"),
        else_="not_contained",
    )


def _fact_row(f: ConversationFacts) -> dict[str, Any]:
    return {
        "conversation_id": f.conversation_id,
        "channel": f.channel,
        "language": f.language,
        "day": f.day,
        "started_at": f.started_at,
        "last_active_at": f.last_active_at,
        "user_messages": f.user_messages,
        "last_user_at": f.last_user_at,
        "last_bot_at": f.last_bot_at,
        "confirmed": int(f.confirmed),
        "last_not_understood": int(f.last_not_understood),
        "open_flows": len(f.open_flows),
        "handoff_at": f.handoff_at,
        "handoff_reason": f.handoff_reason,
        "claimed_at": f.claimed_at,
        "resolved_at": f.resolved_at,
        "csat": f.csat,
        "unknown_count": len(f.unknown),
    }


def _count_rows(f: ConversationFacts) -> list[dict[str, Any]]:
    base = {
        "conversation_id": f.conversation_id,
        "started_at": f.started_at,
        "channel": f.channel,
        "language": f.language,
    }
    sources = (f.intents, f.flows_started, f.flows_completed, f.flows_cancelled)
    return [
        {**base, "kind": kind, "name": name, "n": n}
        for kind, counter in zip(_KINDS, sources, strict=True)
        for name, n in counter.items()
    ]
