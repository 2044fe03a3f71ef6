"""Shared fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def postgres_url() -> str:
    """The test PostgreSQL server's URL; the test is skipped when none is configured."""
    url = os.environ.get("KEFU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KEFU_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server")
    return url
