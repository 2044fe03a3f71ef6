"""Posts to one Slack channel are paced, in order, against a Slack double that enforces
Slack's pace (429 with Retry-After for a post that comes too soon)."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.desk import Ticket
from bot.errors import TransientDeliveryError
from bot.testing.slack_double import SlackApiDouble
from channels.slack_board import SlackBoard
from channels.slack_pace import ChannelPacer

DESK = "C0DESK"
OTHER = "C0OTHER"


def _client(slack: SlackApiDouble, *, retries: int) -> AsyncWebClient:
    return AsyncWebClient(
        token=slack.token,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=retries)],
    )


def _ticket(thread: str) -> Ticket:
    return Ticket(
        conversation_id="telegram:1",
        number=1,
        channel="telegram",
        customer="Alice",
        language="en",
        reason="customer asked for a human",
        opened_at=0.0,
        thread=thread,
    )


async def test_a_burst_to_one_channel_is_paced_in_order_and_never_refused() -> None:
    async with SlackApiDouble(post_interval=1.0) as slack:
        board = SlackBoard(_client(slack, retries=0), channel=DESK)
        ts = await board.post_ticket(_ticket("unused"))
        ticket = _ticket(ts)
        await asyncio.gather(
            *(board.post_in_thread(ticket, f"message {i}", from_customer=True) for i in range(5))
        )
        assert [m["text"] for m in slack.thread(DESK, ts)] == [
            f"*Alice:* message {i}" for i in range(5)
        ]
        assert slack.rate_limited == []  # no retries allowed: a single 429 would have failed


async def test_without_pacing_the_double_refuses_a_burst() -> None:
    async with SlackApiDouble(post_interval=1.0) as slack:
        board = SlackBoard(_client(slack, retries=0), channel=DESK, pacer=ChannelPacer(0.0))
        ts = await board.post_ticket(_ticket("unused"))
        with pytest.raises(TransientDeliveryError) as refused:
            await board.post_in_thread(_ticket(ts), "too soon")
        assert refused.value.retry_after == 1.0
        assert [c.method for c in slack.rate_limited] == ["chat.postMessage"]


async def test_retry_after_is_waited_out_and_holds_the_queue_behind_it() -> None:
    async with SlackApiDouble() as slack:
        slack.rate_limit("chat.postMessage", retry_after=1, times=1)
        board = SlackBoard(_client(slack, retries=2), channel=DESK, pacer=ChannelPacer(0.0))
        ticket = _ticket("1.000001")
        await asyncio.gather(
            board.post_in_thread(ticket, "first"), board.post_in_thread(ticket, "second")
        )
        assert [m["text"] for m in slack.thread(DESK, "1.000001")] == ["first", "second"]
        assert len(slack.rate_limited) == 1


async def test_a_rate_limit_that_outlasts_the_retries_quiets_the_channel() -> None:
    now = [100.0]
    pacer = ChannelPacer(1.0, clock=lambda: now[0])
    with pytest.raises(TransientDeliveryError):
        async with pacer.turn(DESK):
            raise TransientDeliveryError("Slack answered 429", retry_after=30.0)
    assert pacer.delay(DESK) == pytest.approx(30.0)
    async with pacer.turn(OTHER):  # another channel is not held back
        pass
    assert pacer.delay(OTHER) == pytest.approx(1.0)
    now[0] += 29.5
    assert pacer.delay(DESK) == pytest.approx(0.5)
    assert pacer.delay(OTHER) == 0.0
