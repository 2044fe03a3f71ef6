"""Number settings: read as numbers, each bad value refused by its setting's name."""

from __future__ import annotations

import pytest

from bot.errors import SettingsError
from bot.settings import Settings


def test_numbers_and_scores_are_read() -> None:
    settings = Settings.from_env(
        {"KEFU_HANDOFF_SENTIMENT": " -0.5 ", "KEFU_RETENTION_DAYS": "30", "KEFU_CACHE_KEEP": "12"},
        env_file=None,
    )
    assert (settings.handoff_sentiment, settings.retention_days) == (-0.5, 30.0)
    assert settings.cache_keep == 12
    unset = Settings.from_env({}, env_file=None)
    assert (unset.handoff_sentiment, unset.retention_days) == (None, None)


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"KEFU_HANDOFF_SENTIMENT": "upset"},
            "KEFU_HANDOFF_SENTIMENT must be a number, got 'upset'",
        ),
        ({"KEFU_HANDOFF_SENTIMENT": "1.5"}, "KEFU_HANDOFF_SENTIMENT must be between -1 and 1"),
        ({"KEFU_RETENTION_DAYS": "soon"}, "KEFU_RETENTION_DAYS must be a number, got 'soon'"),
        ({"KEFU_RETENTION_DAYS": "-1"}, "KEFU_RETENTION_DAYS must not be negative, got '-1'"),
        ({"KEFU_CSAT_DELAY": "-2"}, "KEFU_CSAT_DELAY must not be negative"),
        ({"KEFU_CACHE_KEEP": "0"}, "KEFU_CACHE_KEEP must be at least 1, got 0"),
    ],
)
def test_a_bad_number_is_refused_by_name(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        Settings.from_env(env, env_file=None)
