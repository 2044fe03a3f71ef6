"""Which language a conversation is in: its own, the customer's platform setting, or the
domain's default; and switching it when the customer writes in another."""

from __future__ import annotations

from bot.dialogue.turn import Turn

__all__ = ["base_language", "initial_language", "set_language"]


def base_language(code: str) -> str:
    """The language of a locale code: ``zh-hans`` → ``zh``, ``en_GB`` → ``en``."""
    return code.replace("_", "-").split("-")[0].lower()


def initial_language(current: str | None, platform: str | None, default: str) -> str:
    """The language to understand a message in: the conversation's, else the customer's
    platform setting, else ``default``."""
    return current or (base_language(platform) if platform else None) or default


def set_language(turn: Turn, language: str) -> None:
    """Switch the conversation to ``language``, in its ``language`` slot too when it has one."""
    if turn.state.language == language:
        return
    turn.state.language = language
    if "language" in turn.domain.slots:
        turn.set_slot("language", language)
