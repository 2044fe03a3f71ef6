"""A local double of the Slack Web API and Socket Mode, for tests that run slack-sdk offline.

Point slack-sdk (or kefu's ``SLACK_API_BASE_URL``) at ``api.base_url``::

    async with SlackApiDouble(members={"C0DESK": ["U0AGENT"]}) as api:
        ...                                   # kefu posts a ticket
        [call] = await api.wait_for("chat.postMessage")
        body, headers = signed(secret, slack_payloads.thread_reply(...))

It serves ``auth.test``, ``chat.postMessage`` (with message metadata) / ``update`` /
``postEphemeral``, ``conversations.members``, ``conversations.history`` (paged, with the
metadata under ``include_all_metadata``), ``users.info``, the external file upload
(``files.getUploadURLExternal``, the upload URL, ``files.completeUploadExternal``), file
downloads (``url_private``), ``response_url`` posts and Socket Mode (``apps.connections.open``
and its WebSocket). It records every call and can answer 429 with ``Retry-After``
(:meth:`rate_limit`), enforce Slack's pace of posts per channel (:attr:`post_interval`: a
post that comes too soon after the previous one to that channel is answered 429 with
``Retry-After``, as Slack answers a burst), or be down altogether (:attr:`down`); a test acts
at the moment a call arrives through :attr:`on_call` (cuts the database link). The helpers
at the bottom build Slack's own payload shapes and sign them as Slack signs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bot.testing.local_server import LocalServer

__all__ = [
    "ApiCall",
    "SlackApiDouble",
    "block_action",
    "event_callback",
    "file_share",
    "signed",
    "slash_command",
    "thread_reply",
]

WAIT_LIMIT = 10.0
_POSTING_METHODS = {"chat.postMessage": "channel", "files.completeUploadExternal": "channel_id"}
"""Methods that add a message to a channel, and the parameter that names the channel."""


@dataclass(frozen=True)
class ApiCall:
    """One Web API call as the double received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``), for latency measurements."""


@dataclass
class UploadedFile:
    """A file uploaded through the external upload."""

    id: str
    filename: str
    length: int
    data: bytes = b""
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    complete: bool = False


@dataclass
class _Socket:
    websocket: WebSocket
    acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


class SlackApiDouble:
    """The Web API methods kefu's desk uses, served by uvicorn on 127.0.0.1 at a free port."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        bot_user_id: str = "UKEFUBOT",
        team_id: str = "T0KEFU",
        members: dict[str, list[str]] | None = None,
        users: dict[str, dict[str, Any]] | None = None,
        post_interval: float | None = None,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.bot_user_id = bot_user_id
        self.bot_id = "BKEFUBOT"
        self.team_id = team_id
        self.members = {k: list(v) for k, v in (members or {}).items()}
        self.users = dict(users or {})
        self.calls: list[ApiCall] = []
        self.messages: list[dict[str, Any]] = []
        """Every message posted with chat.postMessage, with its ``ts``."""
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        """Bodies posted to ``response_url``s."""
        self.files: dict[str, UploadedFile] = {}
        self.hosted: dict[str, tuple[str, bytes]] = {}
        """Files the double serves at ``url_private`` (id → (name, data))."""
        self.down = False
        """While True every call fails as an unreachable Slack would (HTTP 503)."""
        self.on_call: Callable[[str], None] | None = None
        """Called with each Web API method (``chat.postMessage``...; ``files.download`` for a
        file's ``url_private``) as the call arrives, before it is answered."""
        self.post_interval = post_interval
        """When set, a post to a channel less than this many seconds after the previous post
        there is refused with 429 and ``Retry-After`` (whole seconds, as Slack sends)."""
        self.rate_limited: list[ApiCall] = []
        """Calls answered 429, scripted by :meth:`rate_limit` or for coming too soon."""
        self._last_post: dict[str, float] = {}
        self._limits: defaultdict[str, deque[int]] = defaultdict(deque)
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._news = asyncio.Event()
        self._sockets: list[_Socket] = []
        self._socket_ready = asyncio.Event()
        self._port: int | None = None
        self._http: LocalServer | None = None
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
                Route("/files/{file_id}/{name}", self._download, methods=["GET"]),
                Route("/respond/{hook}", self._respond, methods=["POST"]),
                WebSocketRoute("/socket-mode", self._socket_mode),
            ]
        )

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>`` of the running double."""
        if self._port is None:
            raise RuntimeError("the Slack double is not running; use `async with`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The Web API root, as ``SLACK_API_BASE_URL`` wants it (``https://slack.com/api/``)."""
        return f"{self.root}/api/"

    async def __aenter__(self) -> SlackApiDouble:
        self._http = LocalServer(self.app, websockets=True)
        self._port = await self._http.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in list(self._sockets):
            with contextlib.suppress(Exception):
                await connection.websocket.close()
        if self._http is not None:
            await self._http.stop()

    # --- what a test does ------------------------------------------------------------------

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with 429 and ``Retry-After``."""
        self._limits[method].extend([retry_after] * times)

    def host_file(
        self, name: str, data: bytes, *, mimetype: str = "application/octet-stream"
    ) -> dict[str, Any]:
        """Keep a file as Slack keeps one an agent attached; return its file object."""
        file_id = f"F{next(self._ids):08d}"
        self.hosted[file_id] = (name, data)
        url = f"{self.root}/files/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": url,
            "url_private_download": url,
        }

    def calls_to(self, method: str) -> list[ApiCall]:
        """The recorded calls of Web API method ``method``, oldest first."""
        return [call for call in self.calls if call.method == method]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies posted in the thread of message ``ts``, oldest first."""
        return [
            m for m in self.messages if m.get("channel") == channel and m.get("thread_ts") == ts
        ]

    async def wait_for(self, method: str, count: int = 1) -> list[ApiCall]:
        """Wait until ``method`` was called ``count`` times (TimeoutError after WAIT_LIMIT)."""
        async with asyncio.timeout(WAIT_LIMIT):
            while len(self.calls_to(method)) < count:
                self._news.clear()
                await self._news.wait()
        return self.calls_to(method)

    async def wait_until(self, check: Any, limit: float = WAIT_LIMIT) -> None:
        """Wait until ``check()`` is true, re-checking whenever a call arrives."""
        async with asyncio.timeout(limit):
            while not check():
                self._news.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._news.wait()

    async def socket_send(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0
    ) -> dict[str, Any]:
        """Send an envelope over the Socket Mode connection; return the app's ack."""
        async with asyncio.timeout(WAIT_LIMIT):
            await self._socket_ready.wait()
        connection = self._sockets[-1]
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        connection.acks[envelope_id] = future
        await connection.websocket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        async with asyncio.timeout(WAIT_LIMIT):
            return await future

    # --- the Web API ---------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        method = request.path_params["method"]
        params = await _params(request)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() or params.get("token")
        self.calls.append(ApiCall(method, params, token))
        self._news.set()
        if self.on_call is not None:
            self.on_call(method)
        if self.down:
            return JSONResponse({"ok": False, "error": "service_unavailable"}, status_code=503)
        wait = self._limits[method].popleft() if self._limits[method] else self._too_soon(params)
        if wait is not None:
            self.rate_limited.append(self.calls[-1])
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        expected = self.app_token if method == "apps.connections.open" else self.token
        if token != expected:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if method in _POSTING_METHODS and self.post_interval is not None:
            self._last_post[str(params.get(_POSTING_METHODS[method]))] = time.monotonic()
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return JSONResponse({"ok": False, "error": "unknown_method"})
        result = handler(params)
        return JSONResponse(
            {"ok": True, **result} if "error" not in result else {"ok": False, **result}
        )

    def _too_soon(self, params: dict[str, Any]) -> int | None:
        """Seconds to wait (Retry-After) when this post comes too soon after the last one."""
        method = self.calls[-1].method
        if self.post_interval is None or method not in _POSTING_METHODS:
            return None
        last = self._last_post.get(str(params.get(_POSTING_METHODS[method])))
        if last is None:
            return None
        left = last + self.post_interval - time.monotonic()
        return max(1, math.ceil(left)) if left > 0 else None

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://kefu-test.slack.com/",
            "team": "kefu test",
            "user": "kefu",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"error": "no_text"}
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return {"error": "invalid_metadata_format"}
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": self._new_ts(),
            **{
                k: v
                for k, v in params.items()
                if k in {"text", "blocks", "thread_ts", "reply_broadcast"}
            },
            "channel": channel,
        }
        if metadata is not None:
            message["metadata"] = {
                "event_type": metadata["event_type"],
                "event_payload": metadata["event_payload"],
            }
        self.messages.append(message)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages newest first, as Slack pages them: those in the channel
        itself (a thread's parent, a reply also sent to the channel), not thread replies;
        ``oldest``/``latest`` bound the ts (exclusive unless ``inclusive``); message metadata
        only with ``include_all_metadata``."""
        channel = params.get("channel")
        if channel not in self.members and not any(m["channel"] == channel for m in self.messages):
            return {"error": "channel_not_found"}
        inclusive = _flag(params.get("inclusive"))
        oldest = float(params.get("oldest") or 0)
        latest = float(params["latest"]) if params.get("latest") else math.inf
        with_metadata = _flag(params.get("include_all_metadata"))
        limit = max(1, min(int(params.get("limit") or 100), 999))
        start = int(params.get("cursor") or 0)
        found = [
            m
            for m in reversed(self.messages)
            if m["channel"] == channel
            and (not m.get("thread_ts") or m.get("reply_broadcast"))
            and (
                oldest <= float(m["ts"]) <= latest
                if inclusive
                else oldest < float(m["ts"]) < latest
            )
        ]
        page = found[start : start + limit]
        more = start + limit < len(found)
        return {
            "messages": [
                {
                    k: v
                    for k, v in m.items()
                    if k != "channel" and (with_metadata or k != "metadata")
                }
                for m in page
            ],
            "has_more": more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        for message in self.messages:
            if message["channel"] == params.get("channel") and message["ts"] == params.get("ts"):
                message.update({k: v for k, v in params.items() if k in {"text", "blocks"}})
                return {
                    "channel": message["channel"],
                    "ts": message["ts"],
                    "text": message.get("text"),
                }
        return {"error": "message_not_found"}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("user") or not params.get("channel"):
            return {"error": "user_not_in_channel"}
        self.ephemerals.append(dict(params))
        return {"message_ts": self._new_ts()}

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if channel not in self.members:
            return {"error": "channel_not_found"}
        return {"members": self.members[channel], "response_metadata": {"next_cursor": ""}}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user")))
        if user is None:
            return {"error": "user_not_found"}
        return {"user": user}

    def _files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        name, length = params.get("filename"), params.get("length")
        if not name or length is None:
            return {"error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = UploadedFile(file_id, str(name), int(length))
        return {"upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        done = []
        for item in files or []:
            uploaded = self.files.get(item.get("id"))
            if uploaded is None or len(uploaded.data) != uploaded.length:
                return {"error": "file_not_found"}
            uploaded.title = item.get("title")
            uploaded.channel = params.get("channel_id")
            uploaded.thread_ts = params.get("thread_ts")
            uploaded.complete = True
            done.append({"id": uploaded.id, "name": uploaded.filename, "title": uploaded.title})
        return {"files": done}

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self._port}/socket-mode"}

    async def _upload(self, request: Request) -> Response:
        uploaded = self.files.get(request.path_params["file_id"])
        if uploaded is None:
            return Response("not found", status_code=404)
        uploaded.data = await request.body()
        self._news.set()
        return Response(f"OK - {len(uploaded.data)}", status_code=200)

    async def _download(self, request: Request) -> Response:
        if self.on_call is not None:
            self.on_call("files.download")
        hosted = self.hosted.get(request.path_params["file_id"])
        if request.headers.get("authorization") != f"Bearer {self.token}" or hosted is None:
            return Response("not found", status_code=404)
        return Response(hosted[1], media_type="application/octet-stream")

    async def _respond(self, request: Request) -> Response:
        self.responses.append({"hook": request.path_params["hook"], **await _params(request)})
        self._news.set()
        return Response("ok")

    async def _socket_mode(self, websocket: WebSocket) -> None:
        await websocket.accept()
        connection = _Socket(websocket)
        self._sockets.append(connection)
        await websocket.send_json(
            {"type": "hello", "num_connections": len(self._sockets), "debug_info": {}}
        )
        self._socket_ready.set()
        try:
            while True:
                message = await websocket.receive_json()
                future = connection.acks.pop(str(message.get("envelope_id")), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except WebSocketDisconnect:
            pass
        finally:
            self._sockets.remove(connection)
            if not self._sockets:
                self._socket_ready.clear()


def _flag(value: Any) -> bool:
    """A boolean Web API argument as slack-sdk sends it (``1``, ``true``) or JSON's."""
    return value is True or str(value).lower() in {"1", "true"}


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    kind = request.headers.get("content-type", "")
    if "json" in kind:
        data = json.loads(body)
        if isinstance(data, dict):
            params.update(data)
    else:
        params.update(dict(parse_qsl(body.decode(), keep_blank_values=True)))
    for key in ("blocks", "files"):
        if isinstance(params.get(key), str) and params[key].startswith("["):
            params[key] = json.loads(params[key])
    return params


# --- Slack's payloads, signed as Slack signs them ----------------------------------------


def signed(
    secret: str, body: bytes, *, timestamp: int | None = None, content_type: str | None = None
) -> dict[str, str]:
    """The headers Slack sends with ``body``: ``X-Slack-Request-Timestamp`` and the v0
    ``X-Slack-Signature`` (HMAC-SHA256 of ``v0:{timestamp}:{body}``)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    kind = content_type or (
        "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded"
    )
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": kind,
    }


def event_callback(event: dict[str, Any], *, team_id: str = "T0KEFU") -> bytes:
    """An Events API request body carrying ``event``."""
    return json.dumps(
        {
            "token": "verification-token-unused",
            "team_id": team_id,
            "api_app_id": "A0KEFU",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "team_id": team_id,
                    "user_id": "UKEFUBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    ).encode()


def thread_reply(
    *, channel: str, user: str, text: str, thread_ts: str, ts: str | None = None
) -> dict[str, Any]:
    """A ``message`` event: a person's reply in a thread."""
    stamp = ts or f"{time.time():.6f}"
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": stamp,
        "thread_ts": thread_ts,
        "event_ts": stamp,
        "channel_type": "channel",
        "client_msg_id": str(uuid.uuid4()),
    }


def file_share(
    *, channel: str, user: str, text: str, thread_ts: str, files: list[dict[str, Any]]
) -> dict[str, Any]:
    """A ``message`` event of subtype ``file_share``: files attached to a thread reply."""
    event = thread_reply(channel=channel, user=user, text=text, thread_ts=thread_ts)
    return {**event, "subtype": "file_share", "files": files, "upload": False}


def block_action(
    *,
    user: str,
    channel: str,
    message_ts: str,
    action_id: str,
    value: str = "",
    response_url: str = "",
) -> bytes:
    """An interactivity request body (``payload=`` form field) for a button press."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0KEFU"},
        "api_app_id": "A0KEFU",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().int % 10**12}",
        "team": {"id": "T0KEFU", "domain": "kefu-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "support"},
        "message": {"type": "message", "ts": message_ts, "user": "UKEFUBOT", "text": "ticket"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "ticket_actions",
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def slash_command(
    *, user: str, channel: str, text: str, command: str = "/kefu", response_url: str = ""
) -> bytes:
    """A slash command request body, form-encoded as Slack sends it."""
    return urlencode(
        {
            "token": "verification-token-unused",
            "team_id": "T0KEFU",
            "team_domain": "kefu-test",
            "channel_id": channel,
            "channel_name": "support",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0KEFU",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().int % 10**12}",
        }
    ).encode()
