"""Shared fixtures, and the suite-wide watch (``tests/card_watch.py``): a test during which a
full card number was stored or logged fails at its teardown, naming what was seen."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bot.privacy import install_log_redaction
from tests import card_watch


def pytest_configure(config: pytest.Config) -> None:
    install_log_redaction()  # as `kefu run`, `kefu shell` and the server do
    card_watch.start()


@pytest.fixture(autouse=True)
def _no_card_number_kept() -> Iterator[None]:
    yield
    found, card_watch.seen[:] = list(card_watch.seen), []
    if found:
        pytest.fail("a full card number was stored or logged:\n" + "\n".join(found))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """What module-scoped fixtures stored or logged after the last test's check."""
    if card_watch.seen:
        print("\na full card number was stored or logged:\n" + "\n".join(card_watch.seen))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def postgres_url() -> str:
    """The test PostgreSQL server's URL; the test is skipped when none is configured."""
    url = os.environ.get("KEFU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KEFU_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server")
    return url
