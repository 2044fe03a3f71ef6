"""The web chat page: a static page, script and stylesheet, and the endpoint the page posts to.

The assets ship as package data and are read once with ``importlib.resources``, so kefu
serves them from a wheel or a zip as well as from a checkout, with no build step and no
external URL: the page works on a shop's intranet with no internet at all.

The page posts to ``POST /webchat/webhook``, the REST channel's body and answer under a
conversation id of its own (``webchat:<sender>``). Its sender id is the random one the page
makes (``web-`` and 32 hex digits, 128 bits): whoever knows it is that visitor, so it must be
unguessable, and a public page can never reach a REST customer's conversation. Metadata from
the page is ignored: nothing a public page says about its visitor is trusted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.channel import Channel
from bot.errors import PermanentDeliveryError
from bot.events import BotMessage
from channels.rest import answer_json_message

__all__ = ["SENDER_PATTERN", "Greeting", "WebChatChannel"]

SENDER_PATTERN = re.compile(r"web-[0-9a-f]{32}")
"""The sender ids the page makes (``chat.js``): anything else is refused."""
Greeting = Callable[[str], BotMessage | None]
"""The shop's greeting in a language (a browser's ``zh-CN``, ``en-GB``), or None."""
_MAX_LANGUAGE_CHARS = 35

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    # Bot text is rendered as text; this is the second line of defence against injection.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' https: http: data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-cache",
}


class _Asset:
    def __init__(self, name: str) -> None:
        self.body = (resources.files("channels") / "static" / name).read_bytes()
        self.media_type = _TYPES[name]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    def response(self, request: Request) -> Response:
        headers = {**_SECURITY_HEADERS, "etag": self.etag}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


class WebChatChannel(Channel):
    """Serves the page at ``GET /``, its assets under ``/webchat/static/``, and takes its
    messages at ``POST /webchat/webhook``, answering the replies inline."""

    name = "webchat"
    replies_inline = True

    def __init__(self, *, greeting: Greeting | None = None) -> None:
        super().__init__()
        self._assets = {name: _Asset(name) for name in _TYPES}
        self._greeting = greeting

    def routes(self) -> Sequence[BaseRoute]:
        return (
            Route("/", self._page, methods=["GET"]),
            Route("/webchat/static/{name}", self._asset, methods=["GET"]),
            Route("/webchat/webhook", self._webhook, methods=["POST"]),
            Route("/webchat/greeting", self._greet, methods=["GET"]),
        )

    async def _greet(self, request: Request) -> Response:
        """``{"text", "buttons"}``: what the page shows first, in the browser's language."""
        language = request.query_params.get("lang", "")[:_MAX_LANGUAGE_CHARS]
        message = self._greeting(language) if self._greeting is not None else None
        if message is None:
            return Response(status_code=204, headers=_SECURITY_HEADERS)
        body = {
            "text": message.text,
            "buttons": [{"title": b.title, "payload": b.payload} for b in message.buttons],
        }
        return JSONResponse(body, headers=_SECURITY_HEADERS)

    async def send(self, message: BotMessage) -> None:
        raise PermanentDeliveryError("web chat replies travel in the HTTP response")

    async def _page(self, request: Request) -> Response:
        return self._assets["index.html"].response(request)

    async def _webhook(self, request: Request) -> Response:
        return await answer_json_message(
            request,
            self.handler,
            channel=self.name,
            sender_pattern=SENDER_PATTERN,
            with_metadata=False,
        )

    async def _asset(self, request: Request) -> Response:
        asset = self._assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(status_code=404)
        return asset.response(request)
