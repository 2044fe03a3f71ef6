"""The reporting tables: one row per conversation, its counts, what nothing understood, and
their sums per UTC day.

The store keeps each turn's events as one JSON row, which no query can count quickly; the
rollup reads the event rows added since its last run (a cursor on the events' id), recomputes
the touched conversations' facts, writes them to narrow, indexed tables and moves each
conversation's part of the per-day sums from its old facts to its new ones. The figures read
the sums, and the conversation rows only where the time of the query matters (containment
still open) or an exact percentile is wanted, so a page stays fast however long the event log
grows. Each claim or resolution the rollup meets is told to its handoff listeners (/metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
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
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot import constants
from bot.errors import StoreError
from bot.reporting.facts import (
    ASKED,
    ConversationFacts,
    UnknownMessage,
    day_of,
    midnight,
    summarize,
)
from bot.reporting.figures import Bucket, Figures, Query, compute, percentile
from bot.reporting.usage import LLMUsage
from bot.store.engines import Database, database_url, open_database
from bot.store.schema import Tables
from bot.store.sql_store import lock_schema

__all__ = ["ConversationRow", "HandoffTimes", "Reporting"]

log = logging.getLogger(__name__)

BATCH = 2000
"""Event rows read per refresh step."""
_CURSOR_KEY = ("reporting", "events_cursor")
_VERSION_KEY = ("reporting", "layout")
ROLLUP_VERSION = "2"
"""The reporting tables' layout; other tables found at start-up are rebuilt from the events."""
_WAITING = "handoff_at IS NOT NULL AND claimed_at IS NULL AND resolved_at IS NULL"
"""SQL over the facts table: handed off, not yet claimed nor resolved."""
_KINDS = ("intent", "flow_started", "flow_completed", "flow_cancelled")
FIGURE = "figure"
HANDOFF_REASON = "handoff_reason"
CSAT = "csat"
_NAMED = (*_KINDS, HANDOFF_REASON, CSAT)
_FIGURES = (
    "conversations",
    "with_messages",
    "eventually_settled",
    "eventually_contained",
    "handoffs",
    "resolved_handoffs",
    "not_understood",
)
"""The ``figure`` kind's names: each conversation's part of its day's counts."""
"""The daily sums' kinds the figures total over the whole period (ranked by count)."""


@dataclass(frozen=True)
class HandoffTimes:
    """A handoff the rollup saw claimed or resolved (epoch seconds; None: not this time)."""

    channel: str
    handoff_at: float
    claimed_at: float | None
    resolved_at: float | None
    handling_from: float | None
    """When the handling began (the claim), for a resolution's handling time."""


HandoffListener = Callable[[HandoffTimes], None]


@dataclass(frozen=True)
class _Step:
    conversations: int
    handoffs: list[HandoffTimes]


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
            # The figures read the facts table only for the few conversations still inside the
            # containment window, and for the handed-off ones' durations.
            Index(f"{p}ix_report_conversations_last_active_at", "last_active_at"),
            Index(
                f"{p}ix_report_conversations_handoffs",
                "started_at",
                postgresql_where=text("handoff_at IS NOT NULL"),
                sqlite_where=text("handoff_at IS NOT NULL"),
            ),
            Index(
                f"{p}ix_report_conversations_waiting",
                "handoff_at",
                postgresql_where=text(_WAITING),
                sqlite_where=text(_WAITING),
            ),
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
            Index(f"{p}ix_report_counts_kind_name", "kind", "name", "started_at"),
            Index(f"{p}ix_report_counts_conversation_id", "conversation_id"),
        )
        # The counts summed per UTC day: what the figures read, a few rows a day whatever the
        # traffic. Kept by adding each redone conversation's new counts and taking its old ones.
        # Besides intents and flows (_KINDS) it holds each day's conversation figures
        # (``figure``: conversations, handoffs, eventual containment...), handoff reasons and
        # CSAT scores, all derived from the facts rows by ``_figure_counts``.
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
        self.llm_usage = LLMUsage(md, table_prefix=p)
        self._rolled_up = (self.facts, self.counts, self.daily, self.unknown)
        self._lock = asyncio.Lock()
        self._handoff_listeners: list[HandoffListener] = []

    async def initialize(self) -> None:
        """Create the reporting tables that are missing; rebuild them when their layout changed."""
        try:
            await self._db.write(self._create_tables)
        except Exception as exc:
            raise StoreError(f"cannot create the reporting tables: {exc}") from exc

    def _create_tables(self, conn: Connection) -> None:
        """Create what is missing and check the layout, under the store's schema lock (workers
        starting together on PostgreSQL would race on ``CREATE TABLE``)."""
        lock_schema(conn)
        self.metadata.create_all(conn)
        self._check_version(conn)

    def _check_version(self, conn: Connection) -> None:
        """Empty the tables and rewind the cursor when they were kept by another layout."""
        kv = self._store.kv
        namespace, key = _VERSION_KEY
        found = conn.execute(
            select(kv.c.value).where(kv.c.namespace == namespace, kv.c.key == key)
        ).scalar()
        if found == ROLLUP_VERSION:
            return
        log.info("the reporting tables are rebuilt from the event log (layout %s)", ROLLUP_VERSION)
        for table in self._rolled_up:
            conn.execute(delete(table))
        conn.execute(
            delete(kv).where(kv.c.namespace == namespace, kv.c.key.in_((key, _CURSOR_KEY[1])))
        )
        conn.execute(
            kv.insert().values(
                namespace=namespace, key=key, value=ROLLUP_VERSION, updated_at=time.time()
            )
        )

    async def close(self) -> None:
        """Write the LLM calls counted since the last refresh, and close the connections."""
        try:
            await self.llm_usage.flush(self._db)
        finally:
            await self._db.dispose()

    def on_handoff(self, listener: HandoffListener) -> None:
        """Tell ``listener`` of each handoff claimed or resolved, once, as the rollup sees it
        (within :data:`~bot.constants.DESK_METRICS_HORIZON` of the desk's event, so that a
        rebuild of the tables does not report old handoffs again)."""
        self._handoff_listeners.append(listener)

    # --- keeping the rollup -------------------------------------------------------------

    async def refresh(self, *, budget: float | None = None) -> int:
        """Bring the tables up to date with the event log; the number of conversations redone.

        With ``budget`` (seconds) it stops after the step that exceeds it, so that a page never
        waits for the first rollup of a large store; :meth:`keep_fresh` catches up meanwhile.
        """
        redone = 0
        started = time.monotonic()
        await self.llm_usage.flush(self._db)
        async with self._lock:
            while True:
                step = await self._db.write(self._refresh_step)
                redone += step.conversations
                self._tell(step.handoffs)
                if step.conversations == 0 or (
                    budget is not None and time.monotonic() - started > budget
                ):
                    return redone

    def _tell(self, handoffs: list[HandoffTimes]) -> None:
        horizon = time.time() - constants.DESK_METRICS_HORIZON
        for times in handoffs:
            if max(times.claimed_at or 0.0, times.resolved_at or 0.0) < horizon:
                continue
            for listener in self._handoff_listeners:
                try:
                    listener(times)
                except Exception:
                    log.exception("a handoff listener failed")

    async def keep_fresh(self, *, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failed refresh is logged."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("the reporting rollup could not be refreshed")
            await asyncio.sleep(interval)

    def _refresh_step(self, conn: Connection) -> _Step:
        events, conv, kv = self._store.events, self._store.conversations, self._store.kv
        cursor_row = conn.execute(
            select(kv.c.value)
            .where(kv.c.namespace == _CURSOR_KEY[0], kv.c.key == _CURSOR_KEY[1])
            .with_for_update()  # PostgreSQL: workers refreshing at once take turns
        ).first()
        cursor = int(cursor_row.value) if cursor_row else 0
        rows = conn.execute(
            select(events.c.id, events.c.conversation_id)
            .where(events.c.id > cursor)
            .order_by(events.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return _Step(0, [])
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
        old_facts = {
            row["conversation_id"]: dict(row)
            for row in conn.execute(
                select(self.facts).where(self.facts.c.conversation_id.in_(ids))
            ).mappings()
        }
        for old_row in old_facts.values():
            for (kind, name), n in _figure_counts(old_row).items():
                deltas[(old_row["day"], old_row["channel"], old_row["language"], kind, name)] -= n
        for table in (self.facts, self.counts, self.unknown):
            conn.execute(delete(table).where(table.c.conversation_id.in_(ids)))
        facts_rows = [_fact_row(f) for f in all_facts if f.started_at]
        if facts_rows:
            conn.execute(self.facts.insert(), facts_rows)
        handoffs: list[HandoffTimes] = []
        for new_row in facts_rows:
            for (kind, name), n in _figure_counts(new_row).items():
                deltas[(new_row["day"], new_row["channel"], new_row["language"], kind, name)] += n
            changed = _handoff_change(old_facts.get(new_row["conversation_id"]), new_row)
            if changed is not None:
                handoffs.append(changed)
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
        return _Step(len(ids), handoffs)

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
        """Every figure of the dashboard for ``query``'s whole UTC days, channel and language.

        Read from the daily sums, a few hundred rows a month whatever the traffic; the facts
        table is read only for the conversations still inside the containment window (their
        verdict depends on ``now``) and for the handed-off ones' durations (exact percentiles).
        """
        now = time.time() if now is None else now

        def work(conn: Connection) -> Figures:
            first, last = query.days()
            d = self.daily
            in_days = [d.c.day >= first, d.c.day <= last, *_filters(d, query)]
            total = func.sum(d.c.n).label("total")
            # One row per day, channel and language, the figures side by side.
            per_day: dict[tuple[str, str, str], dict[str, int]] = {
                (day, channel, language): {
                    name: int(n or 0) for name, n in zip(_FIGURES, sums, strict=True)
                }
                for day, channel, language, *sums in conn.execute(
                    select(
                        d.c.day,
                        d.c.channel,
                        d.c.language,
                        *(func.sum(case((d.c.name == name, d.c.n), else_=0)) for name in _FIGURES),
                    )
                    .where(*in_days, d.c.kind == FIGURE)
                    .group_by(d.c.day, d.c.channel, d.c.language)
                )
            }
            named: dict[str, list[tuple[str, int]]] = {kind: [] for kind in _NAMED}
            for kind, name, n in conn.execute(
                select(d.c.kind, d.c.name, total)
                .where(*in_days, d.c.kind.in_(_NAMED))
                .group_by(d.c.kind, d.c.name)
                .having(total > 0)
                .order_by(total.desc(), d.c.name)
            ):
                named[kind].append((name, int(n)))

            f = self.facts
            in_facts = [*_started_within(f, first, last), *_filters(f, query)]
            # Selected by the time of their last event only (the index to use, which SQLite's
            # planner would not pick next to a range of start times); days kept below.
            open_now: dict[tuple[str, str, str], tuple[int, int]] = {
                (row.day, row.channel, row.language): (int(row.open), int(row.contained))
                for row in conn.execute(
                    select(
                        f.c.day,
                        f.c.channel,
                        f.c.language,
                        func.count().label("open"),
                        func.sum(case((_contained_later(f), 1), else_=0)).label("contained"),
                    )
                    .where(
                        f.c.last_active_at > now - query.window,
                        _undecided(f),
                        *_filters(f, query),
                    )
                    .group_by(f.c.day, f.c.channel, f.c.language)
                )
                if first <= row.day <= last
            }
            buckets = []
            for key, counts in per_day.items():
                if not counts["conversations"]:  # sums a redone conversation moved elsewhere
                    continue
                still_open, would_be_contained = open_now.get(key, (0, 0))
                buckets.append(
                    Bucket(
                        *key,
                        conversations=counts["conversations"],
                        with_messages=counts["with_messages"],
                        settled=counts["eventually_settled"] - still_open,
                        contained=counts["eventually_contained"] - would_be_contained,
                        open=still_open,
                        handoffs=counts["handoffs"],
                        resolved_handoffs=counts["resolved_handoffs"],
                        not_understood=counts["not_understood"],
                    )
                )
            claim, handling = _percentiles(
                conn,
                [f.c.claimed_at - f.c.handoff_at, f.c.resolved_at - f.c.claimed_at],
                [*in_facts, f.c.handoff_at.isnot(None), f.c.claimed_at.isnot(None)],
            )
            return compute(
                buckets,
                named,
                query=query,
                llm=self.llm_usage.days(conn, first=first, last=last, channel=query.channel),
                claim_seconds=claim,
                handling_seconds=handling,
                reasons=dict(named.pop(HANDOFF_REASON)),
                csat={int(score): n for score, n in named.pop(CSAT)},
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

    async def waiting_handoffs(self) -> tuple[int, float | None]:
        """Conversations handed off and not yet claimed by an agent, and when the longest
        waiting of them was handed off (None: none waits), as of the last refresh."""
        f = self.facts

        def work(conn: Connection) -> tuple[int, float | None]:
            stmt = select(func.count(), func.min(f.c.handoff_at)).where(text(_WAITING))
            count, oldest = conn.execute(stmt).one()
            return int(count), None if oldest is None else float(oldest)

        return await self._db.read(work)

    @staticmethod
    def _where(table: Table, query: Query) -> Sequence[Any]:
        return [
            table.c.started_at >= query.since,
            table.c.started_at < query.until,
            *_filters(table, query),
        ]


def _percentiles(
    conn: Connection, values: Sequence[Any], where: list[Any]
) -> list[tuple[float | None, float | None]]:
    """The p50 and p90 of each of ``values`` over the rows ``where`` selects, nulls left out,
    interpolated as :func:`~bot.reporting.figures.percentile` does.

    PostgreSQL computes them in one pass (``percentile_cont`` interpolates the same way);
    SQLite, in the process, hands the values over to be sorted here.
    """
    if conn.dialect.name == "postgresql":
        quantiles = postgresql.array([0.5, 0.9])
        row = conn.execute(
            select(*(func.percentile_cont(quantiles).within_group(v) for v in values)).where(*where)
        ).one()
        return [(None, None) if pair is None else (float(pair[0]), float(pair[1])) for pair in row]
    columns: list[list[float]] = [[] for _ in values]
    for row in conn.execute(select(*values).where(*where)):
        for column, v in zip(columns, row, strict=True):
            if v is not None:
                column.append(float(v))
    return [(percentile(c, 0.5), percentile(c, 0.9)) for c in columns]


def _filters(table: Table, query: Query) -> list[Any]:
    conditions = []
    if query.channel:
        conditions.append(table.c.channel == query.channel)
    if query.language:
        conditions.append(table.c.language == query.language)
    return conditions


def _started_within(f: Table, first: str, last: str) -> list[Any]:
    """Conditions for conversations started from day ``first`` to day ``last``, both included."""
    return [f.c.started_at >= midnight(first), f.c.started_at < midnight(last) + 86400]


def _answered(f: Table) -> Any:
    return f.c.last_bot_at.isnot(None) & (f.c.last_bot_at >= func.coalesce(f.c.last_user_at, 0.0))


def _undecided(f: Table) -> Any:
    """SQL: conversations whose verdict waits for the containment window (see ``_eventual``)."""
    return ~(
        f.c.handoff_at.isnot(None)
        | (f.c.user_messages == 0)
        | ((f.c.confirmed == 1) & _answered(f))
    )


def _contained_later(f: Table) -> Any:
    """SQL: an undecided conversation that counts as contained once the window has passed."""
    return _answered(f) & (f.c.last_not_understood == 0) & (f.c.open_flows == 0)


def _eventual(row: dict[str, Any]) -> str:
    """Figures' containment rule for one facts row, as it stands once the window has passed:
    ``contained``, ``not_contained`` or ``none``.

    Handed off: not contained. No customer message: none. Contained when the bot answered the
    last message and the customer confirmed; otherwise, once the customer has been silent for
    the window (until then the conversation is still open, which the figures work out at
    query time), contained when the last message was answered and understood and no customer
    flow was left half done.
    """
    if row["handoff_at"] is not None:
        return "not_contained"
    if row["user_messages"] == 0:
        return "none"
    answered = row["last_bot_at"] is not None and row["last_bot_at"] >= (row["last_user_at"] or 0.0)
    if answered and (
        row["confirmed"] or (not row["last_not_understood"] and not row["open_flows"])
    ):
        return "contained"
    return "not_contained"


def _figure_counts(row: dict[str, Any]) -> Counter[tuple[str, str]]:
    """What one facts row adds to its day's sums, by (kind, name)."""
    out: Counter[tuple[str, str]] = Counter()
    out[FIGURE, "conversations"] = 1
    out[FIGURE, "with_messages"] = int(row["user_messages"] > 0)
    out[FIGURE, "not_understood"] = int(row["unknown_count"])
    if row["handoff_at"] is not None:
        out[FIGURE, "handoffs"] = 1
        out[FIGURE, "resolved_handoffs"] = int(row["resolved_at"] is not None)
        out[HANDOFF_REASON, row["handoff_reason"] or ASKED] = 1
    verdict = _eventual(row)
    out[FIGURE, "eventually_settled"] = int(verdict != "none")
    out[FIGURE, "eventually_contained"] = int(verdict == "contained")
    if row["csat"] is not None:
        out[CSAT, str(row["csat"])] = 1
    return out


def _handoff_change(old: dict[str, Any] | None, new: dict[str, Any]) -> HandoffTimes | None:
    """The handoff's claim or resolution this refresh saw happen, if any."""
    if new["handoff_at"] is None:
        return None
    claimed = new["claimed_at"] is not None and (old is None or old["claimed_at"] is None)
    resolved = new["resolved_at"] is not None and (old is None or old["resolved_at"] is None)
    if not claimed and not resolved:
        return None
    return HandoffTimes(
        channel=new["channel"],
        handoff_at=new["handoff_at"],
        claimed_at=new["claimed_at"] if claimed else None,
        resolved_at=new["resolved_at"] if resolved else None,
        handling_from=new["claimed_at"],
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
