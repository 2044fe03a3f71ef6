"""Settings, read in one place: the environment, then a ``.env`` file, then a Rasa project's
``endpoints.yml`` / ``config.yml`` (see `bot.rasa_config`), then defaults.

A malformed value fails loudly, naming the setting. Nothing else in kefu reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from bot import constants
from bot.errors import SettingsError
from bot.hours import BusinessHours, HoursError
from bot.rasa_config import read_rasa_config


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting kefu knows (see the table in README.md)."""

    database_url: str = constants.DEFAULT_DATABASE_URL
    host: str = constants.DEFAULT_HOST
    port: int = constants.DEFAULT_PORT
    action_endpoint: str | None = None

    telegram_bot_token: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_base_url: str | None = None

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_handoff_channel: str | None = None
    slack_api_base_url: str | None = None
    slack_agent_ids: frozenset[str] = frozenset()
    desk_language: str = constants.DEFAULT_DESK_LANGUAGE
    """The agents' language: the desk's copilot translates customers' messages into it."""
    handoff_not_understood: int = constants.DEFAULT_HANDOFF_NOT_UNDERSTOOD
    """Messages in a row not understood before a handoff; 0 turns the trigger off."""
    handoff_sentiment: float | None = None
    """A message scoring at or below this (-1..1) hands off; None turns the trigger off."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    llm_model: str | None = None
    llm_timeout: float = constants.DEFAULT_LLM_TIMEOUT
    llm_routing: str = "unsure"
    llm_approved_only: bool = False
    llm_prompt_template: str | None = None
    """A Jinja prompt for the LLM command generator (a Rasa project's ``prompt_template``)."""

    api_token: str | None = None
    rest_token: str | None = None
    handoff_sla: float = constants.DEFAULT_HANDOFF_SLA
    handoff_max_wait: float = constants.DEFAULT_HANDOFF_MAX_WAIT
    csat_delay: float = constants.DEFAULT_CSAT_DELAY
    retention_days: float | None = None
    business_hours: BusinessHours | None = None
    """When staff answer handoffs; None: always."""
    containment_window: float = constants.DEFAULT_CONTAINMENT_WINDOW
    metrics_token: str | None = None
    db_pool_size: int = constants.DEFAULT_DB_POOL_SIZE
    db_max_overflow: int = constants.DEFAULT_DB_MAX_OVERFLOW
    db_lock_pool_size: int = constants.DEFAULT_DB_LOCK_POOL_SIZE
    """PostgreSQL connections per worker holding conversation locks (turns run at once)."""
    db_timeout: float = constants.DEFAULT_DB_TIMEOUT
    """Seconds to connect or wait for a pooled connection before a retryable failure."""
    db_lock_timeout: float = constants.DEFAULT_DB_LOCK_TIMEOUT
    """Seconds a turn waits for another worker's turn of the same conversation."""
    leader_retry: float = constants.DEFAULT_LEADER_RETRY
    """Seconds between a follower's attempts to take over as the leader."""
    cache_dir: Path | None = field(default_factory=lambda: _cache_dir(os.environ))
    """Where trained models and knowledge vectors are kept (``KEFU_CACHE_DIR``, read from the
    environment for settings built in code too); None: the project's ``.kefu/models``."""
    cache_keep: int = field(default_factory=lambda: _cache_keep(os.environ))
    """How many trained classifiers the cache folder keeps, the most recently used
    (``KEFU_CACHE_KEEP``, read from the environment for settings built in code too)."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | Path | None = ".env",
        project_dir: Path | None = None,
    ) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``), falling back to ``env_file``,
        then to what ``project_dir``'s Rasa ``endpoints.yml`` and ``config.yml`` say."""
        source: dict[str, str] = {}
        if project_dir is not None:
            source.update(read_rasa_config(project_dir).values)
        if env_file is not None and Path(env_file).is_file():
            source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        source.update(os.environ if environ is None else environ)
        reader = _Reader(source)
        return cls(
            database_url=reader.text("KEFU_DATABASE_URL") or constants.DEFAULT_DATABASE_URL,
            host=reader.text("KEFU_HOST") or constants.DEFAULT_HOST,
            port=reader.integer("KEFU_PORT", constants.DEFAULT_PORT),
            action_endpoint=reader.url("KEFU_ACTION_ENDPOINT"),
            telegram_bot_token=reader.text("TELEGRAM_BOT_TOKEN"),
            telegram_webhook_url=reader.url("TELEGRAM_WEBHOOK_URL"),
            telegram_webhook_secret=reader.text("TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_base_url=reader.url("TELEGRAM_API_BASE_URL"),
            slack_bot_token=reader.text("SLACK_BOT_TOKEN"),
            slack_signing_secret=reader.text("SLACK_SIGNING_SECRET"),
            slack_app_token=reader.text("SLACK_APP_TOKEN"),
            slack_handoff_channel=reader.text("SLACK_HANDOFF_CHANNEL"),
            slack_api_base_url=reader.url("SLACK_API_BASE_URL"),
            slack_agent_ids=reader.id_set("SLACK_AGENT_IDS"),
            desk_language=reader.language("KEFU_DESK_LANGUAGE", constants.DEFAULT_DESK_LANGUAGE),
            handoff_not_understood=reader.count(
                "KEFU_HANDOFF_NOT_UNDERSTOOD", constants.DEFAULT_HANDOFF_NOT_UNDERSTOOD
            ),
            handoff_sentiment=reader.score("KEFU_HANDOFF_SENTIMENT"),
            openai_api_key=reader.text("OPENAI_API_KEY"),
            openai_base_url=reader.url("OPENAI_BASE_URL"),
            llm_model=reader.text("KEFU_LLM_MODEL"),
            llm_timeout=reader.number("KEFU_LLM_TIMEOUT", constants.DEFAULT_LLM_TIMEOUT),
            llm_routing=reader.choice("KEFU_LLM_ROUTING", constants.LLM_ROUTING_MODES),
            llm_approved_only=reader.boolean("KEFU_LLM_APPROVED_ONLY"),
            llm_prompt_template=reader.text("KEFU_LLM_PROMPT_TEMPLATE"),
            api_token=reader.text("KEFU_API_TOKEN"),
            rest_token=reader.text("KEFU_REST_TOKEN"),
            handoff_sla=reader.number("KEFU_HANDOFF_SLA", constants.DEFAULT_HANDOFF_SLA),
            handoff_max_wait=reader.number(
                "KEFU_HANDOFF_MAX_WAIT", constants.DEFAULT_HANDOFF_MAX_WAIT
            ),
            csat_delay=reader.number("KEFU_CSAT_DELAY", constants.DEFAULT_CSAT_DELAY),
            retention_days=reader.optional_number("KEFU_RETENTION_DAYS"),
            business_hours=reader.business_hours(),
            containment_window=reader.number(
                "KEFU_CONTAINMENT_WINDOW", constants.DEFAULT_CONTAINMENT_WINDOW
            ),
            metrics_token=reader.text("KEFU_METRICS_TOKEN"),
            db_pool_size=reader.positive("KEFU_DB_POOL_SIZE", constants.DEFAULT_DB_POOL_SIZE),
            db_max_overflow=reader.count("KEFU_DB_MAX_OVERFLOW", constants.DEFAULT_DB_MAX_OVERFLOW),
            db_lock_pool_size=reader.positive(
                "KEFU_DB_LOCK_POOL_SIZE", constants.DEFAULT_DB_LOCK_POOL_SIZE
            ),
            db_timeout=reader.seconds("KEFU_DB_TIMEOUT", constants.DEFAULT_DB_TIMEOUT),
            db_lock_timeout=reader.seconds(
                "KEFU_DB_LOCK_TIMEOUT", constants.DEFAULT_DB_LOCK_TIMEOUT
            ),
            leader_retry=reader.seconds("KEFU_LEADER_RETRY", constants.DEFAULT_LEADER_RETRY),
            cache_dir=_cache_dir(source) or _cache_dir(os.environ),
            cache_keep=_cache_keep(source if "KEFU_CACHE_KEEP" in source else os.environ),
        )

    def require(self, name: str) -> str:
        """The value of a setting a feature cannot run without; raises naming it when unset."""
        value = getattr(self, name.lower().removeprefix("kefu_"), None)
        if not value:
            raise SettingsError(f"{name} is not set")
        return str(value)


def _cache_dir(source: Mapping[str, str]) -> Path | None:
    value = (source.get("KEFU_CACHE_DIR") or "").strip()
    return Path(value).expanduser() if value else None


def _cache_keep(source: Mapping[str, str]) -> int:
    return _Reader(source).positive("KEFU_CACHE_KEEP", constants.DEFAULT_CACHE_KEEP)


class _Reader:
    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    def text(self, name: str) -> str | None:
        value = self._source.get(name, "").strip()
        return value or None

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and "://" not in value:
            raise SettingsError(f"{name} must be a URL with a scheme, got {value!r}")
        return value.rstrip("/") if value else None

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        """One of ``options`` (the first is the default), case-insensitive."""
        value = (self.text(name) or options[0]).lower()
        if value not in options:
            raise SettingsError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return value

    def language(self, name: str, default: str) -> str:
        """A language code such as ``en``, ``zh`` or ``pt-BR``."""
        value = self.text(name) or default
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", value):
            raise SettingsError(f"{name} must be a language code such as en or zh, got {value!r}")
        return value

    def boolean(self, name: str) -> bool:
        value = (self.text(name) or "false").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {value!r}")

    def number(self, name: str, default: float) -> float:
        value = self.optional_number(name)
        return default if value is None else value

    def optional_number(self, name: str) -> float | None:
        number = self._float(name)
        if number is not None and number < 0:
            raise SettingsError(f"{name} must not be negative, got {self.text(name)!r}")
        return number

    def business_hours(self) -> BusinessHours | None:
        names = {
            "hours": "KEFU_BUSINESS_HOURS",
            "timezone": "KEFU_BUSINESS_TIMEZONE",
            "holidays": "KEFU_HOLIDAYS",
        }
        hours, zone, holidays = (self.text(name) for name in names.values())
        if hours is None:
            if zone is not None or holidays is not None:
                raise SettingsError(
                    "KEFU_BUSINESS_TIMEZONE and KEFU_HOLIDAYS need KEFU_BUSINESS_HOURS"
                )
            return None
        days_off = [day for day in (holidays or "").split(",") if day.strip()]
        try:
            return BusinessHours.parse(hours, timezone=zone or "UTC", holidays=days_off)
        except HoursError as err:
            raise SettingsError(f"{names[err.part]}: {err}") from None

    def integer(self, name: str, default: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {value!r}") from None

    def count(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if value < 0:
            raise SettingsError(f"{name} must not be negative, got {value}")
        return value

    def positive(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if value < 1:
            raise SettingsError(f"{name} must be at least 1, got {value}")
        return value

    def seconds(self, name: str, default: float) -> float:
        """A duration that must be more than zero (a zero timeout would fail every call)."""
        value = self.number(name, default)
        if value <= 0:
            raise SettingsError(f"{name} must be more than 0 seconds, got {value}")
        return value

    def id_set(self, name: str) -> frozenset[str]:
        """A comma- or space-separated list of ids (Slack user ids: ``U0123ABC``)."""
        ids = frozenset(part for part in re.split(r"[\s,]+", self.text(name) or "") if part)
        bad = sorted(i for i in ids if not re.fullmatch(r"[A-Z0-9]+", i))
        if bad:
            raise SettingsError(f"{name} must list Slack user ids like U0123ABC, got {bad[0]!r}")
        return ids

    def score(self, name: str) -> float | None:
        """A sentiment score between -1 and 1, or None when unset."""
        number = self._float(name)
        if number is not None and not -1.0 <= number <= 1.0:
            raise SettingsError(f"{name} must be between -1 and 1, got {self.text(name)!r}")
        return number

    def _float(self, name: str) -> float | None:
        """The setting as a number; None when unset."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
