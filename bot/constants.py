"""Defaults in one place."""

from __future__ import annotations

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///kefu.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_LLM_TIMEOUT = 15.0
DEFAULT_DESK_LANGUAGE = "en"
DEFAULT_HANDOFF_SLA = 300.0
DEFAULT_HANDOFF_MAX_WAIT = 1800.0
DEFAULT_CSAT_DELAY = 60.0
DEFAULT_CONTAINMENT_WINDOW = 86400.0
"""Seconds of customer silence after the bot's answer before a conversation counts as resolved."""
DASHBOARD_REFRESH_BUDGET = 0.5
"""Seconds a dashboard page (or a scrape) spends bringing the reporting rollup up to date."""
REPORTING_REFRESH_INTERVAL = 60.0
"""Seconds between the background refreshes of the reporting rollup."""
DESK_METRICS_HORIZON = 3600.0
"""Seconds after a claim or resolution within which /metrics still counts it when the rollup
sees it (older ones, met when the reporting tables are rebuilt, are history, not operations)."""
DASHBOARD_SESSION_SECONDS = 12 * 3600
"""How long a dashboard login lasts."""
LOGIN_FREE_FAILURES = 5
"""Wrong dashboard tokens one client address may send before it has to wait."""
LOGIN_BASE_DELAY = 1.0
"""Seconds the first refused login waits; each further wrong token doubles it."""
LOGIN_MAX_DELAY = 900.0
"""The longest wait a client address is given after wrong dashboard tokens."""
LOGIN_FORGET_AFTER = 3600.0
"""Seconds without a wrong token after which an address's failures are forgotten."""
LOGIN_TRACKED_ADDRESSES = 10_000
"""Client addresses whose failures are remembered at most (the oldest are forgotten first)."""
DEFAULT_HANDOFF_NOT_UNDERSTOOD = 3
"""Messages in a row the bot failed to understand before it hands the customer to a person."""

SLACK_ACK_SECONDS = 3.0
"""Slack wants every event, button press and slash command acknowledged within this."""
SLACK_TIMESTAMP_WINDOW = 300.0
"""Signed Slack requests older (or newer) than this many seconds are refused."""
SLACK_RATE_LIMIT_RETRIES = 3
"""How often one Slack call is retried after HTTP 429 (waiting Retry-After each time)."""
SLACK_POST_INTERVAL = 1.0
"""Seconds between two posts to one Slack channel (Slack allows about one a second)."""
DESK_FLUSH_DELAYS = (1.0, 5.0, 15.0, 30.0, 60.0)
"""Seconds between attempts to post what waits for Slack (the last delay then repeats)."""
DESK_FLUSH_LEASE = 120.0
"""Seconds a worker's claim on posting one ticket's waiting messages lasts (renewed at each
post): another worker leaves them to it meanwhile, and takes over once it lapses (the
worker died). Longer than the longest retry delay plus a paced post."""
DESK_NEW_TICKET_WAIT = 5.0
"""Seconds a press on a just-posted ticket waits for the ticket's thread to be recorded."""
DESK_NUMBER_WAIT = 2.0
"""Seconds a command naming a ticket (``/kefu translate on #7``) waits for it to be posted."""
DESK_NEW_TICKET_POLL = 0.05
"""Seconds between looks for a just-posted ticket's thread while a press waits for it."""
DESK_TRANSCRIPT_TURNS = 6
"""How many of the last utterances a ticket shows."""
DESK_WINDOW_TURNS = 12
"""Messages since the handoff a ticket keeps for the copilot's drafts (the latest ones)."""
DESK_FORWARDED_IDS = 50
"""Ids of a ticket's latest forwarded customer messages it keeps, to recognise a turn run
again (the platform redelivered a message whose turn failed to save)."""
DESK_RECORD_DELAYS = (0.2, 1.0, 5.0, 15.0)
"""Seconds between tries to record what the desk posted while the store is away: the post
itself is never made again, so the record is tried until the store is back."""
DESK_COPILOT_MAX_CHARS = 1500
"""A translation or drafted reply is cut to this many characters."""
DESK_THREAD_CACHE = 10_000
"""How many thread → conversation links the desk keeps in memory (the store has them all)."""
MAX_FILE_BYTES = 10_000_000
"""The largest file an agent may pass on to a customer (Telegram bots may send 50 MB)."""
DESK_TICKET_CACHE = 10_000
"""How many tickets the desk keeps in memory (the store has them all)."""

MAX_MESSAGE_CHARS = 4000
"""Longer user texts are cut before understanding; the bot answers politely, nothing crashes."""
MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Inbound HTTP bodies above this size are refused with 413."""
MAX_JSON_DEPTH = 32
"""Inbound JSON nested deeper is refused (real payloads nest a handful of levels)."""
MAX_METADATA_BYTES = 64 * 1024
"""A REST message's ``metadata``, encoded, is refused above this size: it is stored per turn."""

CONFLICT_RETRY_DEADLINE = 30.0
"""Seconds a turn keeps retrying when other processes keep saving its conversation first."""
CONFLICT_RETRY_DELAYS = (0.005, 0.5)
"""First and largest wait between those retries (doubling, with full jitter)."""
JOURNAL_WRITE_DEADLINE = 15.0
"""Seconds a custom action's journal record is retried while the database is unreachable: the
action ran, and without its record a retried turn would run it again (``bot.journal``)."""

TRACKER_EVENTS = 30
"""How many of the latest events a custom action sees as rasa-sdk's ``tracker.events``."""
TRANSCRIPT_TURNS = 10
"""How many recent utterances the state keeps for the answer backend's context."""
TRANSCRIPT_CHARS = 500
"""Each kept utterance is cut to this many characters."""
MAX_ACTIONS_PER_TURN = 50
"""A guard against flows that loop without waiting for the customer."""
MAX_OFFERED_PAYLOADS = 50
"""How many button payloads of the bot's latest turn a conversation remembers as pressable."""

DELIVERY_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0)
"""Seconds between outbox delivery attempts; after the last one a message is marked failed."""

DELIVERY_RETRY_INTERVAL = 1.0
"""Seconds between two passes of the outbox retry loop (``bot.delivery``)."""

DELIVERY_LEASE = 30.0
"""Seconds a sender owns an outbox entry before the retry loop may take it over."""

DEFAULT_SESSION_EXPIRATION_MINUTES = 60.0
CACHE_DIR = ".kefu"

SCHEDULER_RETRY_DELAY = 60.0
"""Seconds before a scheduled job that failed for a transient reason (database busy) reruns."""
SCHEDULER_SYNC_SECONDS = 60.0
"""How often the scheduler reads the job table for jobs other processes stored."""
SCHEDULER_MAX_ROUNDS = 10
"""``Scheduler.run_due`` fires at most this many rounds of jobs that became due meanwhile."""
RETENTION_HOUR_UTC = 3
"""The hour (UTC) at which the daily retention job deletes old conversations."""
NOTICE_MISFIRE_GRACE = 3600
"""Seconds a scheduled notice or reminder may still go out late (kefu was down); then dropped."""
UNREACHABLE_NAMESPACE = "unreachable"
"""Key-value namespace: conversation id → why the platform refused its chat for good (blocked,
gone) and since when, as JSON ``{"reason", "at"}``; read by ``/api/notify``."""
DESK_TICKET_NAMESPACE = "desk.ticket"
"""Key-value namespace: conversation id → its latest handoff ticket (JSON, with the transcript)."""
DESK_OPEN_NAMESPACE = "desk.open"
"""Key-value namespace: conversation id → its open ticket's number (one row per open ticket)."""
DESK_THREAD_NAMESPACE = "desk.thread"
"""Key-value namespace: a ticket's Slack thread (message ts) → its conversation id."""
DESK_NUMBER_NAMESPACE = "desk.number"
"""Key-value namespace: a ticket number → its conversation id."""
CONVERSATION_NAMESPACES = (UNREACHABLE_NAMESPACE, DESK_TICKET_NAMESPACE, DESK_OPEN_NAMESPACE)
"""Key-value namespaces keyed by conversation id: retention deletes their rows with it."""
CONVERSATION_VALUE_NAMESPACES = (DESK_THREAD_NAMESPACE, DESK_NUMBER_NAMESPACE)
"""Key-value namespaces whose value is a conversation id: retention deletes their rows with it."""
FILE_NAMESPACE = "file"
"""Key-value namespace of stored files (``bot.files``): file id → JSON whose first key is the
owning conversation (``{"owner": ...}``); retention deletes a deleted conversation's files."""
COLLECT_FAILURES_BEFORE_CHANGE = 2
"""Answers to one question that did not fit, after which the bot changes tack (explains,
offers a person) instead of asking the same question a third time."""

# --- LLM backend (bot/llm/) ---------------------------------------------------------------
LLM_MAX_ATTEMPTS = 4
"""Attempts per LLM call (429, 5xx and lost connections are retried) within its deadline."""
LLM_BACKOFF_BASE = 0.25
LLM_BACKOFF_MAX = 2.0
"""Seconds between attempts: base, doubled each time, capped (a ``Retry-After`` wins)."""
LLM_BREAKER_THRESHOLD = 3
"""Failed calls in a row after which the circuit opens (calls fail at once)."""
LLM_BREAKER_COOLDOWN = 30.0
"""Seconds the circuit stays open before one trial call goes out."""
LLM_MAX_COMPLETION_TOKENS = 400
LLM_MAX_ANSWER_CHARS = 700
"""A grounded answer longer than this is cut at a sentence end."""
LLM_HISTORY_TURNS = 6
"""Utterances of the conversation a prompt carries (the latest ones)."""
LLM_PASSAGES = 3
"""Knowledge passages a grounded-answer prompt carries."""
LLM_PASSAGE_CHARS = 1200
LLM_SLOT_CHARS = 200
"""Each slot value in a prompt is cut to this many characters."""
LLM_ROUTING_MODES = ("unsure", "always")
"""When the LLM is asked for commands: when understanding is unsure or no flow matches
(default), or on every typed message (Rasa CALM's way)."""

HANDOFF_LEAVE_MESSAGE = "/handoff_leave_message"
"""The button payload with which a customer waiting for a person chooses to leave a message."""
HANDOFF_BACK_TO_BOT = "/handoff_back_to_bot"
"""The button payload with which a customer waiting for a person goes back to the bot."""
LEFT_MESSAGE_KEY = "left_message"
"""``UserMessage.metadata`` key of a message the customer left for the team (a flow took it)."""
SURVEY_MISFIRE_GRACE = 6 * 3600
"""Seconds a satisfaction survey may still go out late (kefu was down); later it is dropped."""

# --- several workers on one PostgreSQL (bot/store/advisory.py, bot/store/live.py) -----------
DEFAULT_DB_POOL_SIZE = 5
"""Connections the store keeps open per worker (SQLAlchemy ``pool_size``)."""
DEFAULT_DB_MAX_OVERFLOW = 5
"""Extra store connections a worker may open under load, closed when idle again."""
DEFAULT_DB_LOCK_POOL_SIZE = 8
"""Connections per worker that hold conversation locks: the turns a worker runs at once."""
DEFAULT_DB_TIMEOUT = 10.0
"""Seconds to connect, or to wait for a pooled connection, before a retryable failure."""
DEFAULT_DB_LOCK_TIMEOUT = 30.0
"""Seconds a turn waits for another worker's turn of the same conversation."""
DEFAULT_LEADER_RETRY = 2.0
"""Seconds between a follower's attempts to become the leader (and the leader's checks)."""
DEFAULT_CACHE_KEEP = 4
"""How many trained classifiers a cache folder keeps (the most recently used)."""
LEADER_LOCK_KEY = (0x6B656675, 1)
"""The session advisory lock (two-int key space, apart from conversation locks) of the leader."""
DB_START_WAIT = 30.0
"""Seconds ``kefu run`` waits at start for a PostgreSQL it cannot reach (one restarting)."""
SHARED_SCHEDULER_SYNC_SECONDS = 5.0
"""How often the leader reads the jobs that other workers stored (they only store them)."""
LIVE_CHANNEL = "kefu_live"
"""The PostgreSQL ``NOTIFY`` channel that carries live pushes between workers."""
