"""Rasa's REST channel: one HTTP request carries a customer's message, its response the replies.

Contract: ``POST /webhooks/rest/webhook`` with ``{"sender", "message", "metadata"?}`` answers a
JSON list of ``{"recipient_id", "text"?, "buttons"?, "image"?, "custom"?}``. kefu adds an
optional ``"message_id"`` so that a client retrying after a network error is processed once:
the retry is answered with the first request's replies again, from the store. A malformed
body is the caller's mistake and gets 400 with the reason, never 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.channel import Channel
from bot.errors import BadRequestError, PermanentDeliveryError
from bot.events import BotMessage, UserMessage, conversation_id_for

__all__ = ["MAX_SENDER_CHARS", "RestChannel"]

log = logging.getLogger(__name__)

MAX_SENDER_CHARS = 256
"""Longer sender (and message) ids are refused: they end up in every key of the store."""


class RestChannel(Channel):
    """Rasa-compatible REST webhook; the web chat page talks to it too."""

    name = "rest"
    replies_inline = True
    pushes = False

    def routes(self) -> Sequence[BaseRoute]:
        return (
            Route("/webhooks/rest/", self._status, methods=["GET"]),
            Route("/webhooks/rest/webhook", self._webhook, methods=["POST"]),
        )

    async def send(self, message: BotMessage) -> None:
        raise PermanentDeliveryError("REST replies travel in the HTTP response")

    async def _status(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _webhook(self, request: Request) -> Response:
        body = await request.body()  # outside the try: the server answers an oversized body
        try:
            message = _parse(body)
            replies = await self.handler(message)
        except BadRequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception:
            log.exception("handling a REST message failed")
            return JSONResponse({"error": "internal error"}, status_code=500)
        sender = message.sender_id
        return JSONResponse([reply.to_rest(sender) for reply in replies])


def _parse(body: bytes) -> UserMessage:
    """Turn a webhook body into a :class:`UserMessage`, or raise ``BadRequestError`` saying why."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("body must be a JSON object")
    if b"\\u" in body:
        _check_escapes(body, data)
    sender = _identifier(data.get("sender"), "sender")
    text = data.get("message")
    if not isinstance(text, str):
        raise BadRequestError('"message" is required and must be a string')
    message_id = data.get("message_id")
    if message_id is not None:
        message_id = _identifier(message_id, "message_id")
    metadata: Any = data.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise BadRequestError('"metadata" must be a JSON object')
    return UserMessage(
        channel=RestChannel.name,
        conversation_id=conversation_id_for(RestChannel.name, sender),
        sender_id=sender,
        text=text,
        payload=text if text.startswith("/") else None,
        message_id=message_id,
        metadata=metadata,
    )


def _identifier(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise BadRequestError(f'"{key}" is required and must be a string')
    if not value.strip():
        raise BadRequestError(f'"{key}" must not be empty')
    if len(value) > MAX_SENDER_CHARS:
        raise BadRequestError(f'"{key}" must be at most {MAX_SENDER_CHARS} characters')
    return value


def _check_escapes(body: bytes, data: dict[str, Any]) -> None:
    """Refuse what JSON escapes allow but text stores cannot hold: lone surrogates, NUL."""
    if b"\\u0000" in body:
        raise BadRequestError("body must not contain NUL characters")
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequestError("body contains invalid Unicode (a lone surrogate)") from None
