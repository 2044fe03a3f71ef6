"""Platform commands (Telegram's ``/start``, ``/help``) as the dialogue understands them.

``/start`` restarts the session and says nothing else; any other command means its intent,
as a button with the payload ``/<command>`` would (and, like one, counts only where
``bot.dialogue.trust`` allows).
"""

from __future__ import annotations

__all__ = ["RESTART", "command_payload", "restarts_session"]

RESTART = "start"
"""The command that starts the conversation over."""


def restarts_session(command: str | None) -> bool:
    """True for the command that starts a new session."""
    return command == RESTART


def command_payload(command: str | None) -> str | None:
    """The payload a command stands for; None for no command and for ``/start``."""
    return f"/{command}" if command and command != RESTART else None
