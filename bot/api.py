"""kefu's HTTP API for the shop's own systems: ``POST /api/notify`` (proactive notices).

Every call carries ``Authorization: Bearer <KEFU_API_TOKEN>``, compared in constant time;
without the setting the API is off (403). The body is parsed once, here: a malformed one is a
400 naming the field, never a 500.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.domain import Domain
from bot.ports import ConversationRepository, KeyValueStore
from bot.scheduling.notices import Notices

__all__ = ["NotifyApi", "NotifyRequest"]


class NotifyStore(ConversationRepository, KeyValueStore, Protocol):
    """What the API reads: the conversation, and whether its platform refused it (a small value
    under ``constants.UNREACHABLE_NAMESPACE``)."""


class _BadRequest(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class NotifyRequest:
    """A checked ``/api/notify`` body."""

    conversation_id: str
    text: str | None
    response: str | None
    at: float | None

    @classmethod
    def parse(cls, body: Any, domain: Domain) -> NotifyRequest:
        """Check every field; raise naming the first one that is wrong."""
        if not isinstance(body, dict):
            raise _BadRequest("body", "must be a JSON object")
        unknown = sorted(set(body) - {"conversation_id", "text", "response", "at"})
        if unknown:
            raise _BadRequest(unknown[0], "is not a field of this request")
        cid = body.get("conversation_id")
        if not isinstance(cid, str) or ":" not in cid.strip(":") or len(cid) > 256:
            raise _BadRequest("conversation_id", "must be '<channel>:<chat id>'")
        text, response = body.get("text"), body.get("response")
        if (text is None) == (response is None):
            raise _BadRequest("text", "give either text or response")
        if text is not None and (
            not isinstance(text, str) or not text.strip() or len(text) > constants.MAX_MESSAGE_CHARS
        ):
            limit = constants.MAX_MESSAGE_CHARS
            raise _BadRequest("text", f"must be a non-empty string of at most {limit} characters")
        if response is not None and (
            not isinstance(response, str) or not domain.has_response(response)
        ):
            raise _BadRequest("response", "must name a response of the domain (utter_...)")
        return cls(conversation_id=cid, text=text, response=response, at=_instant(body.get("at")))


def _instant(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRequest("at", "must be an ISO 8601 date and time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequest("at", "must be an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        raise _BadRequest("at", "must give its time zone (Z or +08:00)")
    return moment.timestamp()


class NotifyApi:
    """The ``/api/notify`` route; ``can_push(channel)`` says whether a channel can deliver
    a message nobody asked for (REST answers only in its responses)."""

    def __init__(
        self,
        notices: Notices,
        store: NotifyStore,
        domain: Domain,
        *,
        token: str | None,
        can_push: Callable[[str], bool],
    ) -> None:
        self.notices = notices
        self.store = store
        self.domain = domain
        self._token = token.encode() if token else None
        self.can_push = can_push

    def routes(self) -> Sequence[BaseRoute]:
        """The API's routes, for the server to mount."""
        return [Route("/api/notify", self.notify, methods=["POST"])]

    def _authorised(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self._token)

    async def notify(self, request: Request) -> Response:
        """``POST /api/notify``: check the token and the body, then send or schedule."""
        if self._token is None:
            return _error(403, "the API is off: set KEFU_API_TOKEN to turn it on")
        if not self._authorised(request):
            return _error(401, "missing or wrong bearer token", auth=True)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return _error(400, "body: must be JSON")
        try:
            notice = NotifyRequest.parse(body, self.domain)
        except _BadRequest as err:
            return JSONResponse({"error": str(err), "field": err.field}, status_code=400)
        state = await self.store.load(notice.conversation_id)
        if state is None:
            return _error(404, f"no conversation {notice.conversation_id!r}")
        if not self.can_push(state.channel):
            return _error(409, f"the {state.channel} channel cannot send unasked messages")
        blocked = await self._unreachable(notice.conversation_id, state.last_active_at)
        if blocked is not None:
            return _error(409, f"the customer cannot be reached: {blocked}")
        accepted = await self.notices.notify(
            notice.conversation_id, text=notice.text, response=notice.response, at=notice.at
        )
        return JSONResponse(
            {
                "id": accepted.id,
                "status": "sent" if accepted.sent else "scheduled",
                "at": datetime.fromtimestamp(accepted.at, UTC).isoformat(),
            },
            status_code=202,
        )

    async def _unreachable(self, conversation_id: str, last_active_at: float) -> str | None:
        """Why the platform refused the chat, unless the customer wrote since."""
        raw = await self.store.get_value(constants.UNREACHABLE_NAMESPACE, conversation_id)
        if raw is None:
            return None
        try:
            note = json.loads(raw)
            reason, since = str(note["reason"]), float(note["at"])
        except (ValueError, KeyError, TypeError):
            return None
        return reason if since >= last_active_at else None


def _error(status: int, message: str, *, auth: bool = False) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if auth else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
