"""The desk's parts on their own: Slack markup, settings, triggers, tickets, web chat input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.desk import HandoffTriggers, Status, Ticket
from bot.dialogue.default_actions import survey_rating
from bot.errors import SettingsError
from bot.events import ConversationPaused, FlowStarted, HandoffRequested
from bot.server import create_app, running
from bot.settings import Settings
from bot.state import ConversationState
from bot.testing.recording_core import RecordingCore
from channels.slack_board import RESOLVE_NO_SURVEY, ticket_blocks
from channels.slack_markup import escape, mentioned_users, to_plain_text
from channels.webchat import WebChatChannel


async def _names(user: str) -> str:
    return {"U0DANA": "Dana Lee"}.get(user, user)


@pytest.mark.parametrize(
    ("markup", "plain"),
    [
        ("hi <@U0DANA>", "hi @Dana Lee"),
        ("hi <@U0DANA|dana>", "hi @Dana Lee"),
        ("see <#C0123|general>", "see #general"),
        ("<!here> look", "@here look"),
        (
            "<https://shop.example/a?b=1&amp;c=2|the page>",
            "the page (https://shop.example/a?b=1&c=2)",
        ),
        ("<https://shop.example>", "https://shop.example"),
        ("<mailto:help@shop.example|help@shop.example>", "help@shop.example"),
        (":thumbsup: :+1::skin-tone-3: :not_an_emoji_code:", "👍 👍 :not_an_emoji_code:"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
        ("<!date^1392734382^{date}|Feb 18, 2014>", "Feb 18, 2014"),
    ],
)
async def test_slack_markup_becomes_plain_text(markup: str, plain: str) -> None:
    assert await to_plain_text(markup, _names) == plain


def test_customer_text_cannot_ping_or_link_in_slack() -> None:
    assert escape("<!channel> & <http://x|y>") == "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    assert mentioned_users("<@U1> <@W2|x> <@U1>") == ["U1", "W2"]


def test_desk_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "SLACK_AGENT_IDS": "U0DANA, U0SAM W0ENT",
            "KEFU_HANDOFF_NOT_UNDERSTOOD": "0",
            "KEFU_HANDOFF_SENTIMENT": "-0.6",
        },
        env_file=None,
    )
    assert settings.slack_agent_ids == frozenset({"U0DANA", "U0SAM", "W0ENT"})
    assert settings.handoff_not_understood == 0
    assert settings.handoff_sentiment == -0.6
    assert Settings.from_env({}, env_file=None).handoff_not_understood == 3
    for name, value in [
        ("SLACK_AGENT_IDS", "dana"),
        ("KEFU_HANDOFF_NOT_UNDERSTOOD", "-1"),
        ("KEFU_HANDOFF_NOT_UNDERSTOOD", "three"),
        ("KEFU_HANDOFF_SENTIMENT", "-2"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value}, env_file=None)


def test_slack_desk_settings_fail_by_name() -> None:
    from bot.desk import Desk
    from channels.slack import SlackDeskChannel

    desk = Desk(store=_NoStore(), channels=["telegram"])
    for env, missing in [
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "SLACK_HANDOFF_CHANNEL"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_HANDOFF_CHANNEL": "C1"}, "SLACK_SIGNING_SECRET"),
    ]:
        with pytest.raises(SettingsError, match=missing):
            SlackDeskChannel.from_settings(Settings.from_env(env, env_file=None), desk)
    socket = Settings.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_HANDOFF_CHANNEL": "C1", "SLACK_APP_TOKEN": "xapp-1"},
        env_file=None,
    )
    assert SlackDeskChannel.from_settings(socket, desk).routes() == ()


class _NoStore:
    """A key-value store that is never reached (building a channel reads nothing)."""

    async def get_value(self, namespace: str, key: str) -> str | None:
        raise AssertionError("not reached")

    async def put_value(self, namespace: str, key: str, value: str) -> None:
        raise AssertionError("not reached")


def _state(**latest: object) -> ConversationState:
    state = ConversationState(conversation_id="telegram:1", channel="telegram", sender_id="1")
    state.latest_message = {"text": "hello", **latest}
    return state


class _FixedScorer:
    """A sentiment scorer that scores every message the same (the real one plugs in here)."""

    def __init__(self, score: float) -> None:
        self.value = score
        self.seen: list[tuple[str, str]] = []

    def score(self, text: str, language: str) -> float:
        self.seen.append((text, language))
        return self.value


def test_triggers_not_understood_in_a_row() -> None:
    triggers = HandoffTriggers(not_understood=2)
    state = _state()
    missed = [FlowStarted(flow_id="pattern_cannot_handle")]
    assert triggers.after_turn(state, missed) is None
    assert triggers.after_turn(state, []) is None  # understood: the count starts again
    assert triggers.after_turn(state, missed) is None
    assert triggers.after_turn(state, missed) == "the bot did not understand 2 messages in a row"
    assert state.not_understood == 0
    assert HandoffTriggers(not_understood=0).after_turn(state, missed) is None


def test_triggers_action_pause_and_requested_handoff() -> None:
    triggers = HandoffTriggers(not_understood=3)
    state = _state()
    state.paused = True
    state.latest_action = "action_escalate"
    reason = triggers.after_turn(state, [ConversationPaused()])
    assert reason == "the action action_escalate paused the conversation"
    assert state.paused is False  # the handoff pattern pauses it, with a ticket
    state.not_understood = 2
    assert triggers.after_turn(state, [HandoffRequested(reason="x")]) is None
    assert state.not_understood == 0


def test_triggers_sentiment_from_parse_data_or_the_scorer() -> None:
    assert HandoffTriggers(not_understood=0).after_turn(_state(sentiment=-0.9), []) is None
    strict = HandoffTriggers(not_understood=0, sentiment_threshold=-0.5)
    assert strict.after_turn(_state(sentiment=-0.9), []) == (
        "the customer's sentiment turned negative (-0.90)"
    )
    assert strict.after_turn(_state(sentiment=-0.2), []) is None
    scorer = _FixedScorer(-0.7)
    scored = HandoffTriggers(not_understood=0, sentiment_threshold=-0.5, scorer=scorer)
    assert scored.after_turn(_state(), []) is not None
    assert scorer.seen == [("hello", "en")]


def test_ticket_survives_the_store_as_json() -> None:
    ticket = Ticket(
        conversation_id="webchat:abc",
        number=7,
        channel="webchat",
        customer="Alice",
        language="zh",
        reason="customer asked for a human",
        opened_at=1.0,
        transcript=[("user", "人工")],
        status=Status.ACTIVE,
        outbox=[{"kind": "customer", "text": "hi", "attachments": []}],
    )
    again = Ticket.from_json(ticket.to_json())
    assert again == ticket and again.status is Status.ACTIVE


def test_the_ticket_shows_the_survey_and_how_it_ended() -> None:
    ticket = Ticket(
        conversation_id="telegram:1",
        number=3,
        channel="telegram",
        customer="Alice <b>",
        language="en",
        reason="customer asked for a human",
        opened_at=0.0,
    )
    shown = json.dumps(ticket_blocks(ticket))
    assert RESOLVE_NO_SURVEY in shown and "waiting for an agent" in shown
    ticket.with_bot = True
    assert "the customer left a message" in json.dumps(ticket_blocks(ticket))
    ticket.status, ticket.resolved_at, ticket.resolved_by = Status.RESOLVED, 600.0, "Dana Lee"
    ticket.csat, ticket.csat_comment = 2, "slow <reply>"
    shown = json.dumps(ticket_blocks(ticket), ensure_ascii=False)
    assert "resolved by Dana Lee after 10 min" in shown and "without a survey" not in shown
    assert "2/5 ★★☆☆☆" in shown and "slow &lt;reply&gt;" in shown
    ticket.survey = False
    assert "without a survey" in json.dumps(ticket_blocks(ticket))
    ticket.withdrawn = True
    assert "the customer went back to the bot" in json.dumps(ticket_blocks(ticket))


@pytest.mark.parametrize(
    ("value", "score"),
    [(4, 4), (5.0, 5), ("3", 3), (0, None), (6, None), (2.5, None), (True, None), ("x", None)],
)
def test_a_survey_rating_is_a_whole_number_from_1_to_5(value: object, score: int | None) -> None:
    assert survey_rating(value) == score


@pytest.fixture
async def webchat() -> AsyncIterator[httpx.AsyncClient]:
    channel = WebChatChannel()
    channel.attach(RecordingCore())
    async with (
        running(create_app(channels=[channel])) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        yield http


async def test_web_chat_files_and_history_bad_input_gets_4xx(webchat: httpx.AsyncClient) -> None:
    auth = {"Authorization": "Bearer web-" + "ab" * 16}
    for headers in ({}, {"Authorization": "Bearer alice"}, {"Authorization": "web-" + "ab" * 16}):
        assert (await webchat.get("/webchat/history", headers=headers)).status_code == 401
        assert (await webchat.get("/webchat/files/x", headers=headers)).status_code == 401
    # Without a store (as here) there is no history and no file to keep.
    assert (await webchat.get("/webchat/history", headers=auth)).json() == []
    response = await webchat.post(
        "/webchat/files", content=b"x", headers={**auth, "Content-Type": "image/png"}
    )
    assert response.status_code == 503 and "error" in response.json()
    assert (await webchat.get("/webchat/files/x", headers=auth)).status_code == 404
