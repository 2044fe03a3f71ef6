"""Defaults in one place."""

from __future__ import annotations

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///kefu.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_LLM_TIMEOUT = 15.0
DEFAULT_HANDOFF_SLA = 300.0
DEFAULT_HANDOFF_MAX_WAIT = 1800.0
DEFAULT_CSAT_DELAY = 60.0

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

DELIVERY_LEASE = 30.0
"""Seconds a sender owns an outbox entry before the retry loop may take it over."""

DEFAULT_SESSION_EXPIRATION_MINUTES = 60.0
CACHE_DIR = ".kefu"

COLLECT_FAILURES_BEFORE_CHANGE = 2
"""Answers to one question that did not fit, after which the bot changes tack (explains,
offers a person) instead of asking the same question a third time."""
