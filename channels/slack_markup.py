"""Slack's message markup turned into the plain text a customer's channel shows.

Mentions become ``@name``, channel links ``#name``, links ``label (url)``, emoji codes the
emoji themselves, and Slack's three HTML entities their characters. Text going the other way
(a customer's words posted in Slack) is escaped so that it can neither ping nor link.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import emoji

__all__ = ["escape", "mentioned_users", "to_plain_text"]

_ANGLE = re.compile(r"<([^<>]*)>")
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_EMOJI = re.compile(r":([a-z0-9_+\-']+):(?::skin-tone-\d:)?")


def mentioned_users(text: str) -> list[str]:
    """The user ids ``text`` mentions, in order of first mention."""
    return list(dict.fromkeys(_USER.findall(text)))


async def to_plain_text(text: str, name_of: Callable[[str], Awaitable[str]]) -> str:
    """Slack markup → plain text; ``name_of`` gives a mentioned user's display name."""
    names = {user: await name_of(user) for user in mentioned_users(text)}
    plain = _ANGLE.sub(lambda m: _token(m.group(1), names), text)
    plain = _EMOJI.sub(_emoji, plain)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Plain text made safe for a Slack message: no mention, link or markup entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _token(inner: str, names: dict[str, str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user = target[1:]
        return "@" + (names.get(user) or label or user)
    if target.startswith("#"):
        return "#" + (label or "channel")
    if target.startswith("!"):
        if label:
            return label
        word = target[1:].split("^")[0]
        return "@" + word if word in {"here", "channel", "everyone"} else ""
    if target.startswith("mailto:"):
        return label or target.removeprefix("mailto:")
    if label and label != target:
        return f"{label} ({target})"
    return target


def _emoji(match: re.Match[str]) -> str:
    code = f":{match.group(1)}:"
    converted = emoji.emojize(code, language="alias")
    return converted if converted != code else match.group(0)
