"""Shared fixtures, and the suite-wide watch (``tests/card_watch.py``): a test during which a
full card number was stored or logged fails at its teardown, naming what was seen."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.privacy import install_log_redaction
from bot.testing.private_postgres import PrivatePostgres
from tests import card_watch

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""The pytest-xdist worker this process is (``gw0``, ``gw1``...), or None: the one process."""
_WORKER_DATABASE: list[tuple[URL, str | None]] = []
"""The worker's own database: the server's URL and the database's name."""


def pytest_configure(config: pytest.Config) -> None:
    install_log_redaction()  # as `kefu run`, `kefu shell` and the server do
    card_watch.start()
    # Trained models and knowledge vectors go to one folder for the session, not to the
    # repository's .kefu/ (``KEFU_CACHE_DIR`` is read for settings built in code too). The
    # workers inherit the folder the main process made: what one trains, the others read.
    if _WORKER is None:
        os.environ["KEFU_CACHE_DIR"] = tempfile.mkdtemp(prefix="kefu-test-cache-")
    # ... and keeps every classifier the session trains (in the test processes and in the
    # `kefu run` workers they start): the many small test projects would otherwise push the
    # reference shop's out of the `KEFU_CACHE_KEEP` used last, and each test after that would
    # train it again (about a minute). The folder goes at the session's end.
    os.environ["KEFU_CACHE_KEEP"] = "1000"
    # Under pytest-xdist each worker has a database of its own on the test server
    # (``test_gw0``...), made here and dropped at its end: the tests that share one database
    # never meet another worker's.
    url = os.environ.get("KEFU_TEST_POSTGRES_URL")
    if _WORKER is not None and url:
        server = make_url(url)
        mine = server.set(database=f"{server.database}_{_WORKER}")
        asyncio.run(_recreate(server, mine.database, create=True))
        os.environ["KEFU_TEST_POSTGRES_URL"] = mine.render_as_string(hide_password=False)
        _WORKER_DATABASE.append((server, mine.database))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _WORKER is None:
        shutil.rmtree(os.environ["KEFU_CACHE_DIR"], ignore_errors=True)
    for server, name in _WORKER_DATABASE:
        asyncio.run(_recreate(server, name, create=False))


async def _recreate(server: URL, name: str | None, *, create: bool) -> None:
    """Drop database ``name`` (a worker's own) on ``server``; make it anew when ``create``."""
    admin = await asyncpg.connect(
        server.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


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
    """The test PostgreSQL database's URL; the test is skipped when none is configured."""
    url = os.environ.get("KEFU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KEFU_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server")
    return url


KEFU_TABLES = ("conversations", "events", "processed_messages", "outbox", "kv", "scheduled_jobs")
"""The tables a kefu store and its scheduler make."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The test runs twice: on a SQLite file of its own, then on the test PostgreSQL database
    with kefu's tables dropped before and after (skipped when no server is configured)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    await _drop_kefu_tables(url)
    yield url
    await _drop_kefu_tables(url)


async def _drop_kefu_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for name in KEFU_TABLES:
                await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        await engine.dispose()


@pytest.fixture
async def fresh_postgres_url(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the test server, dropped afterwards: for tests
    whose assertions need a store nothing else (an earlier run, another test) wrote to."""
    server = make_url(postgres_url).set(drivername="postgresql")
    name = f"kefu_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, to stop and restart (never the shared one); the
    test is skipped, saying why, where one cannot run."""
    reason = PrivatePostgres.missing()
    if reason is not None:
        pytest.skip(f"a private PostgreSQL server cannot run here: {reason}")
    server = PrivatePostgres()
    try:
        await server.create()
        yield server
    finally:
        await server.destroy()
