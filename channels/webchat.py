"""The web chat: a static page, the endpoint it posts to, and what reaches it live.

The assets ship as package data and are read once with ``importlib.resources``, so kefu
serves them from a wheel or a zip as well as from a checkout, with no build step and no
external URL: the page works on a shop's intranet with no internet at all.

The page posts to ``POST /webchat/webhook``, the REST channel's body and answer under a
conversation id of its own (``webchat:<sender>``). Its sender id is the random one the page
makes and keeps (``web-`` and 32 hex digits, 128 bits): whoever knows it is that visitor, so
it is the conversation's token. Metadata from the page is ignored: nothing a public page says
about its visitor is trusted. With the same id as ``Authorization: Bearer``, the page reads
``GET /webchat/history`` (the conversation from the store: a reload shows it again), listens
to ``GET /webchat/events`` (server-sent events: an agent's replies and files during a
handoff), sends a picture or PDF with ``POST /webchat/files`` and fetches a file of its
conversation with ``GET /webchat/files/<id>``. Live pushes reach the browsers connected to
this process, or, relayed (:meth:`WebChatChannel.relay_through`), those connected to any
worker; the store keeps them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import mimetypes
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote, unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bot.channel import Channel
from bot.errors import PermanentDeliveryError
from bot.events import AgentMessage, Attachment, BotMessage, UserMessage, conversation_id_for
from bot.files import FileBlob, StoredFiles
from bot.ports import EventLog, KeyValueStore
from channels.rest import answer_json_message

__all__ = ["HISTORY_LIMIT", "SENDER_PATTERN", "Greeting", "WebChatChannel"]

log = logging.getLogger(__name__)

HISTORY_LIMIT = 200
"""How many of the latest messages a reload shows."""
_KEEPALIVE = 15.0
_QUEUE = 100
SENDER_PATTERN = re.compile(r"web-[0-9a-f]{32}")
"""The sender ids the page makes (``chat.js``): anything else is refused."""
Greeting = Callable[[str], BotMessage | None]
"""The shop's greeting in a language (a browser's ``zh-CN``, ``en-GB``), or None."""
_MAX_LANGUAGE_CHARS = 35
_UPLOADS = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/gif": "image",
    "image/webp": "image",
    "application/pdf": "document",
}
"""What a customer may send, and the attachment kind each becomes."""
_CONTENT = frozenset({"text", "buttons", "image", "files"})
"""Keys of a message the page has something to show for."""
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    # Bot text is rendered as text; this is the second line of defence against injection.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' https: http: data: blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-cache",
}


class WebChatStore(EventLog, KeyValueStore, Protocol):
    """The part of the conversation store the web chat uses: a conversation's log, and small
    values for the files customers send."""


class LivePushes(Protocol):
    """Pushes that reach every worker (``bot.store.live.PostgresLive``)."""

    async def publish(self, topic: str, item: dict[str, Any]) -> None: ...

    def subscribe(self, receiver: Callable[[str, dict[str, Any]], None]) -> None: ...


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
    """Serves the page at ``GET /``, its assets under ``/webchat/static/`` and its API."""

    name = "webchat"
    replies_inline = True
    sends_files = True

    def __init__(
        self, store: WebChatStore | None = None, *, greeting: Greeting | None = None
    ) -> None:
        super().__init__()
        self._assets = {name: _Asset(name) for name in _TYPES}
        self._store = store
        self._greeting = greeting
        self._listeners: defaultdict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._live: LivePushes | None = None

    def relay_through(self, live: LivePushes) -> None:
        """Send live pushes through ``live``, so that a stream held by another worker gets
        them; what ``live`` brings from any worker is shown on this worker's streams."""
        self._live = live
        live.subscribe(self._show)

    def routes(self) -> Sequence[BaseRoute]:
        """The page, its assets and the web chat's API routes."""
        return (
            Route("/", self._page, methods=["GET"]),
            Route("/webchat/static/{name}", self._asset, methods=["GET"]),
            Route("/webchat/webhook", self._webhook, methods=["POST"]),
            Route("/webchat/files", self._file, methods=["POST"]),
            Route("/webchat/files/{file_id}", self._download, methods=["GET"]),
            Route("/webchat/history", self._history, methods=["GET"]),
            Route("/webchat/events", self._events, methods=["GET"]),
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
        """Push a message to the conversation's open streams (the store already keeps it)."""
        item = _shown(message)
        if self._live is not None:
            await self._live.publish(message.conversation_id, item)
        else:
            self._show(message.conversation_id, item)

    def _show(self, conversation_id: str, item: dict[str, Any]) -> None:
        """Put ``item`` on the streams this process holds for the conversation."""
        for queue in list(self._listeners.get(conversation_id, ())):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # a stalled browser: it reloads the history on reconnect
                self._listeners[conversation_id].discard(queue)

    # --- endpoints -----------------------------------------------------------------------

    async def _page(self, request: Request) -> Response:
        return self._assets["index.html"].response(request)

    async def _asset(self, request: Request) -> Response:
        asset = self._assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(status_code=404)
        return asset.response(request)

    async def _webhook(self, request: Request) -> Response:
        return await answer_json_message(
            request,
            self.handler,
            channel=self.name,
            sender_pattern=SENDER_PATTERN,
            with_metadata=False,
        )

    async def _file(self, request: Request) -> Response:
        """A photo or PDF the customer sends: the raw bytes, its type in ``Content-Type`` and
        its name in ``X-Filename``; kept in the store and run as a turn with the attachment."""
        conversation_id = _conversation(request)
        if self._store is None:
            return JSONResponse({"error": "files need a store"}, status_code=503)
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime not in _UPLOADS:
            return JSONResponse(
                {"error": "only JPEG, PNG, GIF or WebP pictures and PDF files can be sent"},
                status_code=415,
            )
        data = await request.body()
        if not data:
            return JSONResponse({"error": "the file is empty"}, status_code=400)
        name = _file_name(request.headers.get("x-filename"), mime)
        attachment = await StoredFiles(self._store).put(
            FileBlob(name, mime, data), owner=conversation_id
        )
        if _UPLOADS[mime] != attachment.kind:
            attachment = dataclasses.replace(attachment, kind=_UPLOADS[mime])
        message = UserMessage(
            channel=self.name,
            conversation_id=conversation_id,
            sender_id=conversation_id.partition(":")[2],
            attachments=(attachment,),
        )
        replies = await self.handler(message)
        return JSONResponse([reply.to_rest(message.sender_id) for reply in replies])

    async def _download(self, request: Request) -> Response:
        """A file of the token's conversation (an agent's, or the customer's own), always
        as a download: it never runs as a page of this site."""
        conversation_id = _conversation(request)
        if self._store is None:
            raise HTTPException(status_code=404)
        wanted = Attachment(kind="document", file_id=request.path_params["file_id"])
        try:
            blob = await StoredFiles(self._store).get(wanted, owner=conversation_id)
        except PermanentDeliveryError:
            raise HTTPException(status_code=404) from None
        media_type = blob.mime_type if blob.mime_type in _UPLOADS else "application/octet-stream"
        return Response(
            blob.data,
            media_type=media_type,
            headers={
                "content-disposition": f"attachment; filename*=UTF-8''{quote(blob.name)}",
                "content-security-policy": "default-src 'none'; sandbox",
                "x-content-type-options": "nosniff",
                "cache-control": "private, no-store",
            },
        )

    async def fetch(self, attachment: Attachment) -> FileBlob:
        """A file a web chat customer sent (the desk's ``FileSource``)."""
        if self._store is None:
            raise PermanentDeliveryError("web chat files need a store")
        return await StoredFiles(self._store).get(attachment)

    async def _history(self, request: Request) -> Response:
        conversation_id = _conversation(request)
        return JSONResponse(
            await self._recent(conversation_id), headers={"cache-control": "no-store"}
        )

    async def _events(self, request: Request) -> Response:
        conversation_id = _conversation(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=_QUEUE)
        self._listeners[conversation_id].add(queue)

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while True:
                    try:
                        async with asyncio.timeout(_KEEPALIVE):
                            item = await queue.get()
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: message\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
            finally:
                listeners = self._listeners.get(conversation_id)
                if listeners is not None:
                    listeners.discard(queue)
                    if not listeners:
                        with contextlib.suppress(KeyError):
                            del self._listeners[conversation_id]

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _recent(self, conversation_id: str) -> list[dict[str, Any]]:
        if self._store is None:
            return []
        shown = [
            _shown(stored.event)
            for stored in await self._store.events(conversation_id)
            if isinstance(stored.event, UserMessage | BotMessage | AgentMessage)
        ]
        return [item for item in shown if any(item.get(key) for key in _CONTENT)][-HISTORY_LIMIT:]


def _conversation(request: Request) -> str:
    """The conversation of the page's sender id, sent as ``Authorization: Bearer``; 401
    without a well-formed one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not SENDER_PATTERN.fullmatch(token):
        raise HTTPException(
            status_code=401,
            detail="the page's id is required (Authorization: Bearer web-<32 hex digits>)",
        )
    return conversation_id_for(WebChatChannel.name, token)


def _shown(event: UserMessage | BotMessage | AgentMessage) -> dict[str, Any]:
    """A message as the page renders it; ``id`` lets it drop one it already shows."""
    if isinstance(event, UserMessage):
        files = " ".join(f"📎 {a.name or a.kind}" for a in event.attachments)
        text = f"{event.text} {files}".strip() if files else event.text
        return {"id": f"{event.timestamp:.6f}", "from": "user", "text": text}
    if isinstance(event, AgentMessage):
        item: dict[str, Any] = {"from": "agent", "agent": event.agent}
        if event.text:
            item["text"] = event.text
    else:
        item = event.to_rest(event.conversation_id)
        del item["recipient_id"]
        agent = event.metadata.get("agent")
        item |= {"from": "agent", "agent": agent} if agent else {"from": "bot"}
    if event.attachments:
        item["files"] = [
            {"id": a.file_id, "name": a.name, "kind": a.kind, "mime_type": a.mime_type}
            for a in event.attachments
        ]
    return {"id": f"{event.timestamp:.6f}", **item}


def _file_name(header: str | None, mime: str) -> str:
    """The customer's file name, percent-decoded and reduced to a safe form."""
    name = unquote(header or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .")[:100]
    return name or "file" + (mimetypes.guess_extension(mime) or "")
