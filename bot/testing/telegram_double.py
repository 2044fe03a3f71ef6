"""A local double of the Telegram Bot API, for tests that run a real client offline.

Point python-telegram-bot (or kefu's ``TELEGRAM_API_BASE_URL``) at ``api.base_url``::

    async with TelegramBotApiDouble(token="123:abc") as api:
        api.queue_update({"message": {...}})          # served by getUpdates
        await api.wait_for("sendMessage")
        assert api.sent_messages[-1]["text"] == "Hello!"

It answers with Telegram's envelopes and error shapes, enforces Telegram's limits (4096
characters of text, 1024 of caption, 64 bytes of ``callback_data``), records every call, and
lets a test script failures (:meth:`fail_next`, :meth:`block_chat`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.testing.local_server import LocalServer

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_BYTES = 64
WAIT_LIMIT = 5.0
_MEDIA: dict[str, dict[str, Any]] = {
    "document": {},
    "audio": {"duration": 0},
    "voice": {"duration": 0},
    "video": {"width": 640, "height": 360, "duration": 0},
    "animation": {"width": 320, "height": 240, "duration": 0},
    "video_note": {"length": 240, "duration": 0},
    "sticker": {
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
    },
}
"""Media kinds beside photos, with the fields Telegram's object for each requires."""
_TEXT_FIELDS = frozenset(
    {"text", "caption", "url", "secret_token", "photo", "callback_query_id", "action"}
    | {"title", "address", "phone_number", "first_name", "last_name", "vcard"}
    | _MEDIA.keys()
)
_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    403: "Forbidden: bot was blocked by the user",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class UploadedFile:
    """A file a client uploaded in a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ApiCall:
    """One request the double received: the method as called and its decoded parameters."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``), for latency measurements."""


class ApiError(Exception):
    """Raised inside the double to answer with Telegram's error envelope."""

    def __init__(self, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        """The Bot API's error body for this failure."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return JSONResponse(body, status_code=self.status)


class TelegramBotApiDouble:
    """The Bot API methods a shop bot uses, served by uvicorn on 127.0.0.1 at a free port."""

    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",
        username: str = "kefu_test_bot",
        max_poll_wait: float = 1.0,
    ) -> None:
        self.token = token
        self.bot_user = {
            "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 123456,
            "is_bot": True,
            "first_name": "Kefu Test Shop",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.max_poll_wait = max_poll_wait
        self.calls: list[ApiCall] = []
        self.sent_messages: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}
        self.blocked_chats: set[int] = set()
        self.files: dict[str, bytes] = {}
        """Files customers sent, by file id, served by getFile and the file download URL."""
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._failures: defaultdict[str, deque[ApiError]] = defaultdict(deque)
        self._news = asyncio.Event()
        self._closing = False
        self._port: int | None = None
        self._http: LocalServer | None = None
        self._handlers: dict[str, Handler] = {
            name.lower(): handler
            for name, handler in {
                "getMe": self._get_me,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "getUpdates": self._get_updates,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                **{_method(kind): self._media_sender(kind) for kind in _MEDIA},
                "sendLocation": self._send_location,
                "sendVenue": self._send_venue,
                "sendContact": self._send_contact,
                "sendChatAction": self._send_chat_action,
                "answerCallbackQuery": self._answer_callback_query,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "getFile": self._get_file,
            }.items()
        }
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """The API root, as ``TELEGRAM_API_BASE_URL`` wants it (``https://api.telegram.org``)."""
        if self._port is None:
            raise RuntimeError("the Telegram double is not running; use `async with`")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> TelegramBotApiDouble:
        self._http = LocalServer(self.app)
        self._port = await self._http.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._notify()
        if self._http is not None:
            await self._http.stop()

    # --- what a test does ------------------------------------------------------------------

    def queue_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; an ``update_id`` is assigned when it has none."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._notify()
        return update

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        description: str | None = None,
    ) -> None:
        """Make the next call to ``method`` fail with Telegram's error for ``status``."""
        if status == 429:
            retry_after = 1 if retry_after is None else retry_after
            text = description or f"Too Many Requests: retry after {retry_after}"
        else:
            text = description or _DESCRIPTIONS.get(status, "Bad Request")
        self._failures[method.lower()].append(ApiError(status, text, retry_after))

    def host_file(self, file_id: str, data: bytes) -> None:
        """Keep a file a customer sent (a photo's ``file_id``) for getFile and its download."""
        self.files[file_id] = data

    def block_chat(self, chat_id: int) -> None:
        """The customer blocked the bot: every send to ``chat_id`` now answers 403."""
        self.blocked_chats.add(int(chat_id))

    def calls_to(self, method: str) -> list[ApiCall]:
        """The calls received for ``method``, oldest first."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    async def wait_for(self, method: str, count: int = 1) -> list[ApiCall]:
        """Wait until ``method`` was called ``count`` times.

        Gives up with TimeoutError after ``WAIT_LIMIT`` seconds so that a test never hangs;
        wrap it in ``asyncio.timeout`` for a shorter bound.
        """
        try:
            async with asyncio.timeout(WAIT_LIMIT):
                while len(self.calls_to(method)) < count:
                    await self._news.wait()
        except TimeoutError:
            seen = len(self.calls_to(method))
            raise TimeoutError(f"{method} called {seen} of {count} times") from None
        return self.calls_to(method)

    # --- the HTTP side ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    async def _endpoint(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        method = request.path_params["method"]
        handler = self._handlers.get(method.lower())
        if handler is None:
            return ApiError(404, "Not Found").response()
        try:
            params = await _params(request)
        except ValueError as exc:
            return ApiError(400, f"Bad Request: {exc}").response()
        self.calls.append(ApiCall(method, params))
        self._notify()
        try:
            if self._failures[method.lower()]:
                raise self._failures[method.lower()].popleft()
            return JSONResponse({"ok": True, "result": await handler(params)})
        except ApiError as error:
            return error.response()

    # --- methods ---------------------------------------------------------------------------

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        if not params.get("url"):
            raise ApiError(400, "Bad Request: bad webhook: URL must be provided")
        self.webhook = {
            "url": params["url"],
            "secret_token": params.get("secret_token"),
            "allowed_updates": params.get("allowed_updates"),
        }
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook = {}
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        info = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        if self.webhook.get("url"):
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), self.max_poll_wait)
        while not self._updates and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), remaining)
        return self._updates[:limit]

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._message(chat_id, params, text=text)

    async def _send_photo(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        photo = params.get("photo")
        if not photo:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        if isinstance(caption, str) and _utf16_len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        file_id = photo.filename if isinstance(photo, UploadedFile) else str(photo)
        size = {"file_id": file_id, "file_unique_id": f"u{file_id[:16]}", "width": 800}
        content: dict[str, Any] = {"photo": [{**size, "height": 600}]}
        if caption:
            content["caption"] = caption
        return self._message(chat_id, params, **content)

    def _media_sender(self, kind: str) -> Handler:
        async def send(params: dict[str, Any]) -> Any:
            chat_id = self._chat(params)
            media = params.get(kind)
            if not media:
                raise ApiError(400, f"Bad Request: there is no {kind} in the request")
            caption = params.get("caption")
            if isinstance(caption, str) and _utf16_len(caption) > MAX_CAPTION:
                raise ApiError(400, "Bad Request: message caption is too long")
            file_id = media.filename if isinstance(media, UploadedFile) else str(media)
            sent = {"file_id": file_id, "file_unique_id": f"u{file_id[:16]}", **_MEDIA[kind]}
            content: dict[str, Any] = {kind: sent}
            if caption:
                content["caption"] = caption
            return self._message(chat_id, params, **content)

        return send

    async def _send_location(self, params: dict[str, Any]) -> Any:
        return self._message(self._chat(params), params, location=_location(params))

    async def _send_venue(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        location = _location(params)
        if not params.get("title") or not params.get("address"):
            raise ApiError(400, "Bad Request: venue title and address must be non-empty")
        venue = {"location": location, "title": params["title"], "address": params["address"]}
        return self._message(chat_id, params, venue=venue, location=location)

    async def _send_contact(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        if not params.get("phone_number") or not params.get("first_name"):
            raise ApiError(400, "Bad Request: phone number and first name must be non-empty")
        fields = ("phone_number", "first_name", "last_name", "vcard")
        contact = {name: params[name] for name in fields if params.get(name)}
        return self._message(chat_id, params, contact=contact)

    async def _send_chat_action(self, params: dict[str, Any]) -> Any:
        self._chat(params)
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired")
        return True

    async def _get_file(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id[:16]}",
            "file_size": len(self.files[file_id]),
            "file_path": f"files/{file_id}",
        }

    async def _download(self, request: Request) -> Response:
        path = request.path_params["path"]
        data = self.files.get(path.removeprefix("files/"))
        if request.path_params["token"] != self.token or data is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        return Response(data, media_type="application/octet-stream")

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        for message in self.sent_messages:
            if message["chat"]["id"] == chat_id and message["message_id"] == params.get(
                "message_id"
            ):
                _check_markup(params.get("reply_markup"))
                message.pop("reply_markup", None)
                if params.get("reply_markup"):
                    message["reply_markup"] = params["reply_markup"]
                return message
        raise ApiError(400, "Bad Request: message to edit not found")

    def _chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked_chats:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _message(self, chat_id: int, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        markup = params.get("reply_markup")
        _check_markup(markup)
        chat_type = "private" if chat_id > 0 else "supergroup"
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type},
            "from": self.bot_user,
            **content,
        }
        if markup:
            message["reply_markup"] = markup
        self.sent_messages.append(message)
        return message


def _check_markup(markup: Any) -> None:
    if not isinstance(markup, dict):
        return
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_BYTES:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


def _method(kind: str) -> str:
    """``video_note`` is sent with ``sendVideoNote``."""
    return "send" + kind.title().replace("_", "")


def _location(params: dict[str, Any]) -> dict[str, float]:
    location: dict[str, float] = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > bound:
            raise ApiError(400, "Bad Request: wrong coordinates specified")
        location[name] = float(value)
    return location


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _params(request: Request) -> dict[str, Any]:
    """Parameters from the query string and a JSON, form-encoded or multipart body."""
    raw: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if body and content_type.startswith("application/json"):
        decoded = json.loads(body)
        if not isinstance(decoded, dict):
            raise ValueError("JSON body must be an object")
        raw.update(decoded)
    elif body and content_type.startswith("application/x-www-form-urlencoded"):
        raw.update(parse_qsl(body.decode(), keep_blank_values=True))
    elif body and content_type.startswith("multipart/form-data"):
        raw.update(_multipart(content_type, body))
    return {name: _decode(name, value) for name, value in raw.items()}


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            continue
        filename = part.get_filename()
        if filename:
            fields[name] = UploadedFile(filename, part.get_content_type(), data)
        else:
            fields[name] = data.decode(part.get_content_charset() or "utf-8")
    return fields


def _decode(name: str, value: Any) -> Any:
    """Clients send every non-string parameter JSON-encoded as a string (PTB does); undo it."""
    if not isinstance(value, str) or name in _TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
