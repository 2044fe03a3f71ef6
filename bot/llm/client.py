"""The one seam to a language model: chat completions over the ``openai`` async client.

Any OpenAI-compatible server works (OpenAI, vLLM, Ollama, llama.cpp's server): the base URL,
key and model come from settings. A call has one deadline; 429 and 5xx answers and lost
connections are retried with backoff while the deadline allows, a ``Retry-After`` the deadline
cannot wait for ends the call. After several failed calls in a row the circuit opens: calls
fail at once for a while, so a dead backend costs the customer no waiting. Every call is
logged with its tokens and latency, never its text, and told to the client's observers
(the dashboard's usage log, /metrics) as an :class:`LLMCall`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from bot import constants
from bot.errors import LLMError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolCall:
    """A function call the model answered with; ``arguments`` as the model wrote them."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """What the model said, and what it cost."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    """Seconds from the first request to the answer, retries included."""


@dataclass(frozen=True)
class LLMCall:
    """One finished call as the client's observers see it: what it cost, never its text."""

    purpose: str
    model: str
    ok: bool
    latency: float
    """Seconds from the first request to the answer or the failure, retries included."""
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure: str = ""
    """Why the call failed (``timeout``, ``status 400``, ``RateLimitError``...); empty if ok."""


CallObserver = Callable[[LLMCall], None]
"""Told of every finished call, on the event loop: it must return at once (count, not write)."""


@dataclass
class Usage:
    """Running totals of a client's calls, for a shop to see what its model costs."""

    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CircuitBreaker:
    """Opens after ``threshold`` failures in a row; after ``cooldown`` lets one trial through."""

    def __init__(
        self,
        *,
        threshold: int = constants.LLM_BREAKER_THRESHOLD,
        cooldown: float = constants.LLM_BREAKER_COOLDOWN,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        """True while calls fail at once."""
        return self._opened_at is not None

    def allow(self, now: float) -> bool:
        """True if a call may go out now (at most one trial while half-open)."""
        if self._opened_at is None:
            return True
        if now - self._opened_at < self.cooldown or self._trial:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        """A call answered: close the circuit."""
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failed(self, now: float) -> None:
        """A call failed at ``now`` (monotonic seconds)."""
        self._failures += 1
        self._trial = False
        if self._failures >= self.threshold:
            if self._opened_at is None:
                log.warning(
                    "LLM circuit open for %.0f s after %d failures", self.cooldown, self._failures
                )
            self._opened_at = now


class LLMClient:
    """Chat completions with a deadline, retries, a circuit breaker and cost logging."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 15.0,
        breaker: CircuitBreaker | None = None,
        max_tokens: int = constants.LLM_MAX_COMPLETION_TOKENS,
        temperature: float = 0.0,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.breaker = breaker or CircuitBreaker()
        self.usage = Usage()
        self._observers: list[CallObserver] = []
        # Local servers (Ollama, llama.cpp) need no key, but the client insists on one.
        # aiohttp as the transport: with many calls in flight, httpx's connection pool scans
        # every open connection per request, which costs more than the rest of a turn.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "no-key",
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    def observe(self, observer: CallObserver) -> None:
        """Tell ``observer`` of every call from now on; its failures are logged, never raised."""
        self._observers.append(observer)

    def _tell(self, call: LLMCall) -> None:
        for observer in self._observers:
            try:
                observer(call)
            except Exception:
                log.exception("an LLM call observer failed")

    async def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        purpose: str,
        deadline: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask the model; raise :class:`LLMError` on anything but a usable answer by ``deadline``.

        ``deadline`` is a ``time.monotonic()`` instant; without one the call gets ``timeout``.
        ``purpose`` names the call in the logs (``answer``, ``commands``...).
        """
        started = time.monotonic()
        end = min(deadline, started + self.timeout) if deadline else started + self.timeout
        if end <= started:
            raise LLMError("no time left in this turn for an LLM call")
        if not self.breaker.allow(started):
            self._tell(
                LLMCall(
                    purpose=purpose,
                    model=self.model,
                    ok=False,
                    latency=0.0,
                    attempts=0,
                    failure="circuit open",
                )
            )
            raise LLMError("LLM circuit is open: recent calls failed")
        attempt = 0
        while True:
            attempt += 1
            remaining = end - time.monotonic()
            if remaining <= 0:
                self._failed(purpose, attempt - 1, started, "deadline passed")
                raise LLMError(f"LLM did not answer within {end - started:.1f} s")
            try:
                # ``post`` is the client's documented way to send a body as is: it skips the
                # per-call walk over typed parameters that ``chat.completions.create`` makes.
                response = await asyncio.wait_for(
                    self._client.post(
                        "/chat/completions",
                        cast_to=ChatCompletion,
                        body={
                            "model": self.model,
                            "messages": list(messages),
                            "max_tokens": max_tokens or self.max_tokens,
                            "temperature": self.temperature,
                        },
                        options={"timeout": remaining},
                    ),
                    timeout=remaining,
                )
            except (TimeoutError, openai.APITimeoutError):
                self._failed(purpose, attempt, started, "timeout")
                raise LLMError(f"LLM did not answer within {end - started:.1f} s") from None
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIConnectionError,
            ) as err:
                wait = _backoff(attempt, err)
                if time.monotonic() + wait >= end or attempt >= constants.LLM_MAX_ATTEMPTS:
                    self._failed(purpose, attempt, started, type(err).__name__)
                    raise LLMError(f"LLM failed: {type(err).__name__}") from None
                log.info(
                    "LLM %s attempt %d failed (%s); retrying in %.2f s",
                    purpose,
                    attempt,
                    type(err).__name__,
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            except openai.APIStatusError as err:
                self._failed(purpose, attempt, started, f"status {err.status_code}")
                raise LLMError(f"LLM refused the request: status {err.status_code}") from None
            except openai.OpenAIError as err:
                self._failed(purpose, attempt, started, type(err).__name__)
                raise LLMError(f"LLM failed: {type(err).__name__}") from None
            return self._completion(response, purpose=purpose, attempt=attempt, started=started)

    def _completion(
        self, response: object, *, purpose: str, attempt: int, started: float
    ) -> Completion:
        if not isinstance(response, ChatCompletion) or not response.choices:
            self._failed(purpose, attempt, started, "malformed answer")
            raise LLMError("LLM answer is not a chat completion")
        choice = response.choices[0]
        message = choice.message
        if getattr(message, "refusal", None) or choice.finish_reason == "content_filter":
            self._failed(purpose, attempt, started, "refusal")
            raise LLMError("LLM refused to answer")
        calls: list[ToolCall] = []
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)  # custom tool calls have none
            if function is not None:
                calls.append(ToolCall(name=function.name, arguments=function.arguments or ""))
        text = (message.content or "").strip()
        if not text and not calls:
            self._failed(purpose, attempt, started, "empty answer")
            raise LLMError("LLM answer is empty")
        usage = response.usage
        latency = time.monotonic() - started
        self.breaker.succeeded()
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        self.usage.calls += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        log.info(
            "LLM %s ok model=%s prompt_tokens=%d completion_tokens=%d latency_ms=%.0f attempts=%d",
            purpose,
            self.model,
            prompt_tokens,
            completion_tokens,
            latency * 1000,
            attempt,
        )
        self._tell(
            LLMCall(
                purpose=purpose,
                model=self.model,
                ok=True,
                latency=latency,
                attempts=attempt,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )
        return Completion(
            text=text,
            tool_calls=tuple(calls),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency=latency,
        )

    def _failed(self, purpose: str, attempts: int, started: float, reason: str) -> None:
        self.breaker.failed(time.monotonic())
        self.usage.calls += 1
        self.usage.failures += 1
        latency = time.monotonic() - started
        log.warning(
            "LLM %s failed model=%s reason=%s latency_ms=%.0f attempts=%d",
            purpose,
            self.model,
            reason,
            latency * 1000,
            attempts,
        )
        self._tell(
            LLMCall(
                purpose=purpose,
                model=self.model,
                ok=False,
                latency=latency,
                attempts=attempts,
                failure=reason,
            )
        )


def _backoff(attempt: int, err: openai.OpenAIError) -> float:
    """Seconds to wait before the next attempt: the server's ``Retry-After``, else exponential."""
    response = getattr(err, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return float(min(constants.LLM_BACKOFF_MAX, constants.LLM_BACKOFF_BASE * 2 ** (attempt - 1)))
