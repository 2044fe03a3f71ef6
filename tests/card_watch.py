"""A watch over the whole test suite: no card number is stored or logged.

Every SQL statement any test's store sends (SQLite or PostgreSQL, through SQLAlchemy) and
every log record any test makes is checked for a full payment card number; ``conftest``
starts the watch and fails a test during which one was ``seen``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bot.privacy import contains_card_number

seen: list[str] = []
"""Where a card number was seen since the last check: ``"stored: ..."`` or ``"logged: ..."``."""


def start() -> None:
    """Watch every statement of every SQLAlchemy engine and every log record from now on."""
    event.listen(Engine, "before_cursor_execute", _watch_statement)
    logging.getLogger().addHandler(_WatchLogs())


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("latin-1")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _watch_statement(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    for text in (statement, *_strings(parameters)):
        if contains_card_number(text):
            seen.append(f"stored: {statement.split()[0]} ... {text[:300]!r}")


class _WatchLogs(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = logging.Formatter().format(record)
        if contains_card_number(text):
            seen.append(f"logged: {text[:300]!r}")
