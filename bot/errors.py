"""One rooted exception hierarchy for kefu.

Callers retry :class:`TransientError` (a platform is down, rate limited, a write raced) and
report :class:`PermanentError` (a customer blocked the bot, a project is invalid).
"""

from __future__ import annotations

from dataclasses import dataclass


class KefuError(Exception):
    """Root of every error kefu raises on purpose."""


class TransientError(KefuError):
    """The same call may succeed later: retry with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(KefuError):
    """Retrying will not help: report it."""


class SettingsError(PermanentError):
    """A setting is missing or malformed. The message names the setting."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a project, with where it is."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ProjectError(PermanentError):
    """The project (domain, flows, NLU data, actions) is invalid; ``problems`` says where."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems) or "invalid project")


class TargetNotEmptyError(PermanentError):
    """``kefu init`` refuses to write into a directory that already holds files."""


class DeliveryError(KefuError):
    """A message could not be delivered to a platform."""


class TransientDeliveryError(DeliveryError, TransientError):
    """Delivery failed for now (network, 5xx, 429): the outbox retries it."""


class PermanentDeliveryError(DeliveryError, PermanentError):
    """Delivery can never succeed (the customer blocked the bot, the chat is gone): the
    conversation's later messages are given up too."""


class RejectedMessageError(PermanentDeliveryError):
    """The platform refused this one message (malformed, too long, a bad file id): it is
    given up, and the conversation's later messages still go."""


class ActionError(KefuError):
    """A custom action failed (raised, timed out, or its server answered with an error)."""


class LLMError(TransientError):
    """The LLM backend did not answer usefully in time."""


class StoreError(KefuError):
    """The conversation store failed."""


class ConcurrentUpdateError(StoreError, TransientError):
    """Another writer saved the conversation first; reload and run the turn again."""


class DatabaseUnavailableError(StoreError, TransientError):
    """The database cannot be reached for now (restarting, network cut, pool exhausted):
    the caller answers with a retryable error (REST 503), the platform sends again."""


class ConversationBusyError(TransientError):
    """Another worker held the conversation longer than ``KEFU_DB_LOCK_TIMEOUT``: retry."""


class ThreadNotRecordedError(TransientError):
    """A press in the thread of a ticket this worker posted whose thread the store has not
    recorded yet (it was away when the post came back): Slack hears an error, press again."""


class DuplicateMessageError(StoreError):
    """This platform message id was already processed."""


class EncoderDeferredError(KefuError):
    """A sentence encoder would have had to compute where the caller asked for cached answers
    only (``bot.understanding.encoder.cached_only``): do the work in a thread instead."""


class BadRequestError(PermanentError):
    """An inbound payload is malformed; the message is safe to show to the sender."""
