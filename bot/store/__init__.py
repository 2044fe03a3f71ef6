"""The conversation store on SQLAlchemy: SQLite by default, PostgreSQL for several processes.

Three things keep a turn's storage cost tiny:

- Loads are served from a bounded write-through cache of the latest saved state, so a turn
  rarely reads the database. The version check in ``save`` stays the source of truth: a stale
  entry (another process wrote) costs one ``ConcurrentUpdateError`` and is evicted. Workers
  sharing PostgreSQL (``shared``) use an entry only once the conversation's lock found it
  current (``bot.store.advisory``), so a turn never runs on a stale state there.
- Writes go through one writer task that commits everything queued meanwhile in a single
  transaction (group commit), and the turns of a batch are written with a handful of statements
  in all, not a handful each. Stale versions and duplicate message ids are found by reading
  under the write lock before anything is written, so they fail only their own caller; any
  other failure rolls the batch back and replays it with a savepoint per write.
- Each batch is one call into the database layer: for SQLite, a dedicated thread running the
  standard ``sqlite3`` driver (an async driver hops threads on every statement, which costs
  more than the statement); for PostgreSQL, asyncpg inside ``run_sync``.

SQLite suits one process; run several processes on PostgreSQL.
"""

from bot.store.engines import database_url
from bot.store.sql_store import SqlStore, open_store

__all__ = ["SqlStore", "database_url", "open_store"]
