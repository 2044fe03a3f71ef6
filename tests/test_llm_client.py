"""The LLM client: the real ``openai`` client against the OpenAI double on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import LLMError
from bot.llm.client import CircuitBreaker, LLMClient
from bot.testing.openai_double import OpenAIDouble, Reply, ToolCall

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpenAIDouble]:
    async with OpenAIDouble() as double:
        yield double


@pytest_asyncio.fixture(loop_scope="module")
async def client(server: OpenAIDouble) -> AsyncIterator[LLMClient]:
    server.responder = None
    llm = LLMClient(model="test-model", base_url=server.base_url, api_key="sk-test", timeout=5)
    yield llm
    await llm.close()
    assert server.pending == 0, "a test left scripted replies unserved"


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


async def test_text_answer_with_usage_and_request_recorded(
    server: OpenAIDouble, client: LLMClient
) -> None:
    server.script(Reply(text="Hi there, how can I help?"))
    completion = await client.complete(MESSAGES, purpose="test")
    assert completion.text == "Hi there, how can I help?"
    assert completion.completion_tokens == 6
    assert completion.prompt_tokens == 3
    request = server.requests[-1]
    assert request.body["model"] == "test-model"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.system_text == "be brief"
    assert request.user_text == "hello"


async def test_tool_calls_are_returned(server: OpenAIDouble, client: LLMClient) -> None:
    server.script(Reply(tool_calls=(ToolCall("start_flow", {"flow": "track_order"}),)))
    completion = await client.complete(MESSAGES, purpose="test")
    assert completion.text == ""
    assert [(c.name, c.arguments) for c in completion.tool_calls] == [
        ("start_flow", '{"flow": "track_order"}')
    ]


async def test_429_and_500_are_retried_within_the_deadline(
    server: OpenAIDouble, client: LLMClient
) -> None:
    before = len(server.requests)
    server.script(
        Reply(status=429, retry_after=0.05), Reply(status=500), Reply(status=503), Reply(text="ok")
    )
    completion = await client.complete(MESSAGES, purpose="test")
    assert completion.text == "ok"
    assert len(server.requests) - before == 4


async def test_a_retry_after_beyond_the_deadline_fails_at_once(server: OpenAIDouble) -> None:
    llm = LLMClient(model="m", base_url=server.base_url, timeout=1.0)
    before = len(server.requests)
    server.script(Reply(status=429, retry_after=30))
    with pytest.raises(LLMError):
        await llm.complete(MESSAGES, purpose="test")
    assert len(server.requests) - before == 1  # no second attempt: it could not finish in time
    await llm.close()


async def test_a_permanent_error_is_not_retried(server: OpenAIDouble, client: LLMClient) -> None:
    before = len(server.requests)
    server.script(Reply(status=400))
    with pytest.raises(LLMError, match="400"):
        await client.complete(MESSAGES, purpose="test")
    assert len(server.requests) - before == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(malformed=True),
        Reply(text=""),
        Reply(text="   "),
        Reply(text=None, refusal="I can't help with that."),
        Reply(text="blocked", finish_reason="content_filter"),
    ],
    ids=["malformed", "empty", "blank", "refusal", "content-filter"],
)
async def test_unusable_answers_raise(
    server: OpenAIDouble, client: LLMClient, reply: Reply
) -> None:
    server.script(reply)
    with pytest.raises(LLMError):
        await client.complete(MESSAGES, purpose="test")


async def test_a_slow_answer_times_out(server: OpenAIDouble) -> None:
    llm = LLMClient(model="m", base_url=server.base_url, timeout=0.3)
    server.script(Reply(text="late", delay=1.0))
    with pytest.raises(LLMError, match="within"):
        await llm.complete(MESSAGES, purpose="test")
    await llm.close()


async def test_a_passed_deadline_sends_nothing(server: OpenAIDouble, client: LLMClient) -> None:
    before = len(server.requests)
    with pytest.raises(LLMError):
        await client.complete(MESSAGES, purpose="test", deadline=time.monotonic() - 1)
    assert len(server.requests) == before


async def test_the_circuit_opens_after_repeated_failures_and_recovers(
    server: OpenAIDouble,
) -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=0.2)
    llm = LLMClient(model="m", base_url=server.base_url, timeout=1.0, breaker=breaker)
    server.script(Reply(status=400), Reply(status=400))
    for _ in range(2):
        with pytest.raises(LLMError):
            await llm.complete(MESSAGES, purpose="test")
    before = len(server.requests)
    with pytest.raises(LLMError, match="circuit"):
        await llm.complete(MESSAGES, purpose="test")
    assert len(server.requests) == before  # an open circuit costs no request
    breaker._opened_at = time.monotonic() - 1  # the cooldown has passed
    server.script(Reply(text="back"))
    assert (await llm.complete(MESSAGES, purpose="test")).text == "back"
    assert not breaker.is_open
    await llm.close()


async def test_half_open_lets_one_trial_through() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=10)
    breaker.failed(now=100.0)
    assert not breaker.allow(now=105.0)
    assert breaker.allow(now=111.0)
    assert not breaker.allow(now=111.0)  # the trial is out; others wait for its result
    breaker.failed(now=112.0)
    assert not breaker.allow(now=113.0)


async def test_calls_are_logged_with_tokens_and_latency_but_no_text(
    server: OpenAIDouble, client: LLMClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(Reply(text="Your parcel left Shanghai"), Reply(status=400))
    secret = [{"role": "user", "content": "my e-mail is carol@example.com"}]
    with caplog.at_level(logging.INFO, logger="bot.llm.client"):
        await client.complete(secret, purpose="answer")
        with pytest.raises(LLMError):
            await client.complete(secret, purpose="answer")
    assert (client.usage.calls, client.usage.failures) == (2, 1)
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (4, 4)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "prompt_tokens=4 completion_tokens=4" in logged
    assert "latency_ms=" in logged and "reason=status 400" in logged
    assert "carol" not in logged and "Shanghai" not in logged
