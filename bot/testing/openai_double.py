"""A local double of an OpenAI-compatible chat completions server, for offline tests.

Point the ``openai`` client (or kefu's ``OPENAI_BASE_URL``) at ``server.base_url``::

    async with OpenAIDouble() as server:
        server.script(Reply(text="Standard shipping takes 3-5 days."))
        server.script(Reply(status=429, retry_after=0.1), Reply(text="start flow track_order"))
        ...
        assert "KF-10001" in server.requests[-1].user_text

Scripted replies are served in order; when none is left, ``responder`` (a function of the
request) answers, by default with ``default_text``. Every request is recorded. A reply can be
text, tool calls, an HTTP error (429 with ``Retry-After``, 500...), slow (``delay``), a
refusal, empty, or a malformed body.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.testing.local_server import LocalServer


@dataclass(frozen=True)
class ToolCall:
    """A function call the double answers with (``arguments`` is sent as a JSON string)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``status`` other than 200 answers with OpenAI's error envelope; ``malformed`` answers 200
    with a body that is not a chat completion; ``delay`` seconds pass before any answer.
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    malformed: bool = False
    refusal: str | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A chat completion request as the double received it."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's chat messages."""
        return list(self.body.get("messages") or [])

    @property
    def system_text(self) -> str:
        """Every system message's content, joined."""
        return "\n".join(_content(m) for m in self.messages if m.get("role") == "system")

    @property
    def user_text(self) -> str:
        """Every user message's content, joined."""
        return "\n".join(_content(m) for m in self.messages if m.get("role") == "user")

    @property
    def prompt(self) -> str:
        """All messages' contents, joined: what left for the model."""
        return "\n".join(_content(m) for m in self.messages)


Responder = Callable[[RecordedRequest], Reply]


class OpenAIDouble:
    """``POST /v1/chat/completions`` (and ``GET /v1/models``) on 127.0.0.1 at a free port."""

    def __init__(
        self, *, default_text: str = "OK", model: str = "double-model", record: bool = True
    ) -> None:
        self.default_text = default_text
        self.record = record
        self.model = model
        self.responder: Responder | None = None
        """Answers when no scripted reply is left (default: ``default_text``)."""
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._port: int | None = None
        self._http: LocalServer | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` wants: the root with ``/v1``."""
        if self._port is None:
            raise RuntimeError("the OpenAI double is not running; use `async with`")
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies, served one per request in order."""
        self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not served yet."""
        return len(self._script)

    async def __aenter__(self) -> OpenAIDouble:
        self._http = LocalServer(self.app, backlog=1024)
        self._port = await self._http.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.stop()

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is required")
        recorded = RecordedRequest(
            body=body, headers=dict(request.headers), received_at=time.time()
        )
        if self.record:
            self.requests.append(recorded)
        if self._script:
            reply = self._script.popleft()
        elif self.responder is not None:
            reply = self.responder(recorded)
        else:
            reply = Reply(text=self.default_text)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            headers = {"retry-after": str(reply.retry_after)} if reply.retry_after else None
            return _error(reply.status, f"scripted status {reply.status}", headers=headers)
        if reply.malformed:
            return PlainTextResponse("<html>upstream said something else</html>")
        return JSONResponse(self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in reply.tool_calls
            ]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        prompt_tokens = sum(len(_content(m).split()) for m in body["messages"])
        completion_tokens = len((reply.text or "").split())
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _error(status: int, text: str, *, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": text, "type": "double_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


async def serve(*, port: int, delay: float, text: str) -> None:
    """Serve the double on 127.0.0.1:``port`` until cancelled, every call answered with ``text``
    after ``delay`` seconds (for benchmarks, and to try kefu's LLM path without a model)."""
    double = OpenAIDouble(default_text=text, record=False)
    double.responder = lambda request: Reply(text=text, delay=delay)
    config = uvicorn.Config(
        double.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        backlog=2048,
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    """``python -m bot.testing.openai_double [--port 8001] [--delay 0] [--text TEXT]``"""
    import argparse

    parser = argparse.ArgumentParser(description="An OpenAI-compatible test server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--text", default="NOT_SURE")
    args = parser.parse_args()
    print(f"OPENAI_BASE_URL=http://127.0.0.1:{args.port}/v1", flush=True)
    asyncio.run(serve(port=args.port, delay=args.delay, text=args.text))


if __name__ == "__main__":
    main()
