"""When a conversation's session starts: at its first message, after the domain's
``session_expiration_time`` of silence, or when the customer asks (Telegram's /start)."""

from __future__ import annotations

from bot.state import ConversationState

__all__ = ["session_expired", "starts_session"]


def session_expired(state: ConversationState, now: float, *, expiration_minutes: float) -> bool:
    """True when the customer was last active more than ``expiration_minutes`` ago (0: never)."""
    return (
        expiration_minutes > 0
        and state.last_active_at > 0
        and now - state.last_active_at > expiration_minutes * 60
    )


def starts_session(
    state: ConversationState, now: float, *, expiration_minutes: float, restart: bool
) -> bool:
    """Whether this message starts a new session. While an agent has the conversation
    (paused) the bot starts nothing: the message is theirs."""
    if state.paused:
        return False
    new = not state.session_started_at or session_expired(
        state, now, expiration_minutes=expiration_minutes
    )
    return new or restart
