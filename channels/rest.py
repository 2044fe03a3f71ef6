"""Rasa's REST channel: one HTTP request carries a customer's message, its response the replies.

Contract: ``POST /webhooks/rest/webhook`` with ``{"sender", "message", "metadata"?}`` answers a
JSON list of ``{"recipient_id", "text"?, "buttons"?, "image"?, "custom"?}``. kefu adds an
optional ``"message_id"`` so that a client retrying after a network error is processed once:
the retry is answered with the first request's replies again, from the store.

The sender id *is* the customer: whoever posts with it continues that conversation, verified
order included. That is right behind a shop's own back end, which knows who its customer is;
from a public page it is not, so ``token`` (``KEFU_REST_TOKEN``) makes the webhook require
``Authorization: Bearer <token>``. The web chat page has an endpoint of its own
(:mod:`channels.webchat`) and needs no token.

Every body is parsed once, here, within limits (:mod:`bot.edge`): only ``application/json``
(415 otherwise), and any malformed body gets 400 with the reason, never 500. A turn that
cannot be saved for now (another process kept winning the race for the conversation) gets a
retryable 503.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.channel import Channel, MessageHandler
from bot.edge import json_size, parse_json, to_record
from bot.errors import BadRequestError, PermanentDeliveryError, TransientError
from bot.events import BotMessage, UserMessage, conversation_id_for, profile_from

__all__ = ["MAX_SENDER_CHARS", "RestBody", "RestChannel", "answer_json_message", "parse_message"]

log = logging.getLogger(__name__)

MAX_SENDER_CHARS = 256
"""Longer sender (and message) ids are refused: they end up in every key of the store."""
RETRY_AFTER_SECONDS = 1
"""What a 503 asks the client to wait before sending the same message (same id) again."""
_INTERNAL_METADATA = frozenset({"command", "truncated", "edited"})
"""Flags kefu's own channels set; from outside they are dropped, never obeyed."""


class RestBody(msgspec.Struct, kw_only=True):
    """A REST (or web chat) request body, as the edge accepts it."""

    sender: str
    message: str
    message_id: str | None = None
    metadata: dict[str, Any] | None = None


class RestChannel(Channel):
    """Rasa-compatible REST webhook, optionally behind a bearer token."""

    name = "rest"
    replies_inline = True
    pushes = False

    def __init__(self, *, token: str | None = None) -> None:
        super().__init__()
        self._token = token.encode() if token else None

    def routes(self) -> Sequence[BaseRoute]:
        """``GET /webhooks/rest/`` (status) and ``POST /webhooks/rest/webhook``."""
        return (
            Route("/webhooks/rest/", self._status, methods=["GET"]),
            Route("/webhooks/rest/webhook", self._webhook, methods=["POST"]),
        )

    async def send(self, message: BotMessage) -> None:
        """Refused: REST has no way to reach a customer outside their request."""
        raise PermanentDeliveryError("REST replies travel in the HTTP response")

    async def _status(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _webhook(self, request: Request) -> Response:
        if self._token is not None and not _authorised(request, self._token):
            return JSONResponse(
                {"error": "a valid 'Authorization: Bearer <token>' header is required"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        return await answer_json_message(request, self.handler, channel=self.name)


async def answer_json_message(
    request: Request,
    handler: MessageHandler,
    *,
    channel: str,
    sender_pattern: re.Pattern[str] | None = None,
    with_metadata: bool = True,
) -> Response:
    """Run one REST-shaped request through ``handler`` and answer its replies (or the error).

    ``sender_pattern`` restricts the sender ids ``channel`` accepts;
    ``with_metadata=False`` ignores the body's metadata.
    """
    unsupported = _unsupported_media_type(request)
    if unsupported is not None:
        return unsupported
    body = await request.body()  # outside the try: the server answers an oversized body
    try:
        message = parse_message(
            body, channel=channel, sender_pattern=sender_pattern, with_metadata=with_metadata
        )
        replies = await handler(message)
    except BadRequestError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except TransientError as exc:
        log.warning("a %s message could not be processed for now: %s", channel, type(exc).__name__)
        return JSONResponse(
            {"error": "busy: send the same message again shortly"},
            status_code=503,
            headers={"retry-after": str(RETRY_AFTER_SECONDS)},
        )
    except Exception:
        log.exception("handling a %s message failed", channel)
        return JSONResponse({"error": "internal error"}, status_code=500)
    sender = message.sender_id
    return JSONResponse([reply.to_rest(sender) for reply in replies])


def _authorised(request: Request, token: bytes) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (constant-time compare)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token
    )


def _unsupported_media_type(request: Request) -> Response | None:
    """415 unless the body is declared ``application/json`` (UTF-8, the only JSON encoding)."""
    media_type, *params = request.headers.get("content-type", "").lower().split(";")
    charsets = {
        value.strip().strip('"')
        for name, _, value in (param.partition("=") for param in params)
        if name.strip() == "charset"
    }
    if media_type.strip() == "application/json" and charsets <= {"utf-8", "utf8"}:
        return None
    return JSONResponse(
        {"error": "send the body as 'Content-Type: application/json' (UTF-8)"}, status_code=415
    )


def parse_message(
    body: bytes,
    *,
    channel: str = RestChannel.name,
    sender_pattern: re.Pattern[str] | None = None,
    with_metadata: bool = True,
) -> UserMessage:
    """Turn a webhook body into a :class:`UserMessage`, or raise ``BadRequestError`` saying why."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequestError("body must be a JSON object")
    record = to_record(data, RestBody)
    sender = _identifier(record.sender, "sender")
    if sender_pattern is not None and not sender_pattern.fullmatch(sender):
        raise BadRequestError('"sender" is not an id this endpoint issues')
    message_id = None if record.message_id is None else _identifier(record.message_id, "message_id")
    metadata: dict[str, Any] = {}
    if with_metadata and record.metadata:
        if json_size(record.metadata) > constants.MAX_METADATA_BYTES:
            raise BadRequestError(
                f'"metadata" must be at most {constants.MAX_METADATA_BYTES} bytes'
            )
        metadata = {k: v for k, v in record.metadata.items() if k not in _INTERNAL_METADATA}
    text = record.message
    return UserMessage(
        channel=channel,
        conversation_id=conversation_id_for(channel, sender),
        sender_id=sender,
        text=text,
        payload=text if text.startswith("/") else None,
        message_id=message_id,
        metadata=metadata,
        profile=profile_from(metadata),
    )


def _identifier(value: str, key: str) -> str:
    if not value.strip():
        raise BadRequestError(f'"{key}" must not be empty')
    if len(value) > MAX_SENDER_CHARS:
        raise BadRequestError(f'"{key}" must be at most {MAX_SENDER_CHARS} characters')
    return value
