"""The store's tables, and the per-turn statements built once from them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    literal_column,
    select,
    tuple_,
    union_all,
)


class Tables:
    """The schema; ``prefix`` lets several stores (or test runs) share one database."""

    def __init__(self, prefix: str) -> None:
        self.metadata = md = MetaData()
        big_id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER
        self.conversations = Table(
            f"{prefix}conversations",
            md,
            Column("id", String(), primary_key=True),
            Column("channel", String(), nullable=False),
            Column("sender_id", String(), nullable=False),
            Column("state", Text, nullable=False),
            Column("version", Integer, nullable=False),
            Column("last_seq", Integer, nullable=False),
            Column("last_active_at", Double, nullable=False),
            Column("created_at", Double, nullable=False),
            Index(f"{prefix}ix_conversations_last_active_at", "last_active_at"),
        )
        # One row per turn: its events as a JSON array, ``seq`` being the first one's number.
        # A turn appends a dozen events; one row instead of twelve is most of a save's cost.
        self.events = Table(
            f"{prefix}events",
            md,
            Column("id", big_id, primary_key=True, autoincrement=True),
            Column("conversation_id", String(), nullable=False),
            Column("seq", Integer, nullable=False),
            Column("count", Integer, nullable=False),
            Column("timestamp", Double, nullable=False),
            Column("data", Text, nullable=False),
            UniqueConstraint("conversation_id", "seq", name=f"{prefix}uq_events_conversation_seq"),
        )
        self.processed = Table(
            f"{prefix}processed_messages",
            md,
            Column("channel", String(), primary_key=True),
            Column("message_id", String(), primary_key=True),
            Column("conversation_id", String(), nullable=False),
            Column("processed_at", Double, nullable=False),
            Index(f"{prefix}ix_processed_messages_conversation_id", "conversation_id"),
        )
        # The action journal (bot.journal): each custom action's result the moment it returns,
        # under the message key its turn will claim; that turn's save deletes the rows.
        self.journal = Table(
            f"{prefix}action_journal",
            md,
            Column("channel", String(), primary_key=True),
            Column("message_id", String(), primary_key=True),
            Column("step", Integer, primary_key=True, autoincrement=False),
            Column("conversation_id", String(), nullable=False),
            Column("action", String(), nullable=False),
            Column("result", Text, nullable=False),
            Column("recorded_at", Double, nullable=False),
            Index(f"{prefix}ix_action_journal_conversation_id", "conversation_id"),
        )
        self.outbox = Table(
            f"{prefix}outbox",
            md,
            Column("id", big_id, primary_key=True, autoincrement=True),
            Column("conversation_id", String(), nullable=False),
            Column("channel", String(), nullable=False),
            Column("message", Text, nullable=False),
            Column("status", String(), nullable=False),
            Column("attempts", Integer, nullable=False),
            Column("next_attempt_at", Double, nullable=False),
            Column("last_error", Text),
            Column("created_at", Double, nullable=False),
            Index(f"{prefix}ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
            Index(f"{prefix}ix_outbox_conversation_id", "conversation_id"),
        )
        self.kv = Table(
            f"{prefix}kv",
            md,
            Column("namespace", String(), primary_key=True),
            Column("key", String(), primary_key=True),
            Column("value", Text, nullable=False),
            Column("updated_at", Double, nullable=False),
        )
        # Scheduled work (bot/scheduling): one row per pending one-shot job, its data as JSON.
        self.jobs = Table(
            f"{prefix}scheduled_jobs",
            md,
            Column("id", String(), primary_key=True),
            Column("kind", String(), nullable=False),
            Column("conversation_id", String()),
            Column("run_at", Double, nullable=False),
            Column("data", Text, nullable=False),
            Column("created_at", Double, nullable=False),
            Index(f"{prefix}ix_scheduled_jobs_conversation_id", "conversation_id"),
            Index(f"{prefix}ix_scheduled_jobs_run_at", "run_at"),
        )
        # Statements of the per-turn reads, built once: building one costs more than running it.
        conv, processed = self.conversations, self.processed
        self.select_state = select(conv.c.state, conv.c.version).where(
            conv.c.id == bindparam("conversation_id")
        )
        events = self.events
        self.select_events = (
            select(events.c.seq, events.c.data)
            .where(
                events.c.conversation_id == bindparam("conversation_id"),
                events.c.seq + events.c.count > bindparam("after"),
            )
            .order_by(events.c.seq)
        )
        self.insert_conversation = conv.insert()
        self.insert_events = events.insert()
        self.insert_processed = processed.insert()
        self.select_versions = (
            select(conv.c.id, conv.c.version, conv.c.last_seq)
            .where(conv.c.id.in_(bindparam("ids", expanding=True)))
            .order_by(conv.c.id)
        )
        self.select_claimed = select(processed.c.channel, processed.c.message_id).where(
            tuple_(processed.c.channel, processed.c.message_id).in_(
                bindparam("keys", expanding=True)
            )
        )
        journal = self.journal
        journal_key = (
            journal.c.channel == bindparam("channel"),
            journal.c.message_id == bindparam("message_id"),
        )
        # A turn's dedupe check and its journal in one statement: a claimed message comes
        # first, as step -1 (bot.journal reads the journal only while it is not claimed).
        self.select_journal = union_all(
            select(
                literal_column("-1").label("step"),
                literal_column("''").label("action"),
                literal_column("''").label("result"),
            ).where(
                processed.c.channel == bindparam("channel"),
                processed.c.message_id == bindparam("message_id"),
            ),
            select(journal.c.step, journal.c.action, journal.c.result).where(*journal_key),
        ).order_by("step")
        self.delete_journal = journal.delete().where(*journal_key)
        self.select_processed = select(processed.c.channel).where(
            processed.c.channel == bindparam("channel"),
            processed.c.message_id == bindparam("message_id"),
        )
