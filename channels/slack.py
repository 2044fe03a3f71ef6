"""The Slack front of the handoff desk, on slack-bolt's async app.

Over HTTP, ``POST /slack/events`` takes events, interactivity (the ticket's buttons) and the
``/kefu`` slash command; bolt checks Slack's v0 signature with ``SLACK_SIGNING_SECRET`` and
refuses (401) a forged one or one more than five minutes off. With ``SLACK_APP_TOKEN`` the
same listeners run over Socket Mode instead, so a shop needs no public address.

A request is acknowledged once it is handled (bolt's ``process_before_response``): an agent's
reply is recorded in the conversation and queued for the customer before Slack hears 200.
When that fails (the database is away), Slack gets an error instead (503 for a failure that
passes, 500 for a bug; over Socket Mode, no acknowledgement): it sends an event again, and
shows an agent's press or command as failed, for them to try again. Slack's retries, and a
reply that Slack sent again because its handling took longer than Slack's 3 seconds (a
translated reply, files), are recognised by the desk through the store, on any worker: the
customer gets each reply once.

The adapter only translates: Slack payloads become the desk's calls with plain values
(markup turned into plain text), and the desk's private notices become ephemeral messages.
Events from other channels, from bots and from kefu itself are ignored (no echo loops).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.channel import Channel
from bot.desk import Desk, FileRef
from bot.errors import KefuError, PermanentDeliveryError, TransientError
from bot.events import BotMessage
from bot.settings import Settings
from channels.slack_board import CLAIM, REOPEN, RESOLVE, RESOLVE_NO_SURVEY, SlackBoard
from channels.slack_markup import to_plain_text

__all__ = ["EVENTS_PATH", "SlackDeskChannel"]

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
_RELAYED_SUBTYPES = {None, "file_share", "thread_broadcast"}
NO_SURVEY = "--no-survey"
"""``/kefu resolve --no-survey``: hand back without asking the customer to rate it."""
_TICKET = re.compile(r"^#?(\d+)$")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")


class SlackDeskChannel(Channel):
    """Serves the desk in Slack. It carries agents, not customers: :meth:`send` refuses."""

    name = "slack"
    pushes = False

    def __init__(
        self,
        *,
        desk: Desk,
        token: str,
        signing_secret: str,
        handoff_channel: str,
        app_token: str | None = None,
        agent_ids: frozenset[str] = frozenset(),
        base_url: str | None = None,
    ) -> None:
        super().__init__()
        self.desk = desk
        self.signing_secret = signing_secret
        self.handoff_channel = handoff_channel
        self.app_token = app_token
        self.client = AsyncWebClient(
            token=token,
            base_url=_api_root(base_url),
            retry_handlers=[
                AsyncRateLimitErrorRetryHandler(max_retry_count=constants.SLACK_RATE_LIMIT_RETRIES),
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
            ],
        )
        self.board = SlackBoard(self.client, channel=handoff_channel, agent_ids=agent_ids)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            process_before_response=True,
            raise_error_for_unhandled_request=False,
        )
        self.app.error(self._on_error)
        self.app.event("message")(self._on_message)
        for action_id in (CLAIM, RESOLVE, RESOLVE_NO_SURVEY, REOPEN):
            self.app.action(action_id)(self._on_button)
        self.app.command("/kefu")(self._on_command)
        self._http = AsyncSlackRequestHandler(self.app)
        self._socket: AsyncSocketModeHandler | None = None

    @classmethod
    def from_settings(cls, settings: Settings, desk: Desk) -> SlackDeskChannel:
        """Build from ``SLACK_*`` settings; raises ``SettingsError`` naming what is missing."""
        return cls(
            desk=desk,
            token=settings.require("SLACK_BOT_TOKEN"),
            signing_secret=settings.slack_signing_secret or ""
            if settings.slack_app_token
            else settings.require("SLACK_SIGNING_SECRET"),
            handoff_channel=settings.require("SLACK_HANDOFF_CHANNEL"),
            app_token=settings.slack_app_token,
            agent_ids=settings.slack_agent_ids,
            base_url=settings.slack_api_base_url,
        )

    def routes(self) -> Sequence[BaseRoute]:
        """``POST /slack/events``, only with a signing secret to check requests against."""
        if not self.signing_secret:
            return ()
        return (Route(EVENTS_PATH, self._endpoint, methods=["POST"]),)

    async def start(self) -> None:
        """Resume posting what waited for Slack; connect over Socket Mode when an app token
        is set (HTTP needs nothing started)."""
        await self.desk.start()
        if self.app_token:
            self._socket = AsyncSocketModeHandler(self.app, self.app_token)
            await self._socket.connect_async()

    async def stop(self) -> None:
        """Disconnect Socket Mode; stop the desk's flushers."""
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.desk.stop()

    async def send(self, message: BotMessage) -> None:
        """Refused: the Slack channel carries agents, never customers."""
        raise PermanentDeliveryError("Slack carries the agents, not customers")

    async def _endpoint(self, request: Request) -> Response:
        try:
            response: Response = await self._http.handle(request)
        except ValueError:  # bolt parses the body before it checks the signature
            return JSONResponse({"error": "the body is not valid JSON"}, status_code=400)
        return response

    async def _on_error(self, error: Exception) -> BoltResponse:
        """A listener failed: Slack hears an error (and sends an event again)."""
        if isinstance(error, TransientError):
            log.warning("a Slack request was not handled for now: %s", error)
            return BoltResponse(status=503, body="")
        log.error("handling a Slack request failed", exc_info=error)
        return BoltResponse(status=500, body="")

    # --- listeners: Slack hears their ack() only once they return ------------------------

    async def _on_message(self, event: dict[str, Any]) -> None:
        if (
            event.get("channel") != self.handoff_channel
            or event.get("bot_id")
            or event.get("subtype") not in _RELAYED_SUBTYPES
            or not event.get("user")
        ):
            return
        thread, ts = event.get("thread_ts"), event.get("ts")
        if not thread or not ts or thread == ts:
            return  # a message in the channel itself, not a reply in a ticket's thread
        user = str(event["user"])
        text = await to_plain_text(str(event.get("text") or ""), self._name)
        notice = await self.desk.on_reply(
            thread=str(thread),
            user=user,
            text=text,
            message_id=str(ts),
            files=[ref for f in event.get("files") or () if (ref := _file_ref(f)) is not None],
        )
        if notice:
            await self._tell(user, notice, thread=str(thread))

    async def _on_button(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        user = str((body.get("user") or {}).get("id") or "")
        thread = container.get("message_ts")
        if container.get("channel_id") != self.handoff_channel or not thread or not user:
            return
        action = ((body.get("actions") or [{}])[0]).get("action_id")
        if action == RESOLVE_NO_SURVEY:
            notice = await self.desk.resolve(thread=str(thread), user=user, survey=False)
        else:
            move = {CLAIM: self.desk.claim, RESOLVE: self.desk.resolve, REOPEN: self.desk.reopen}
            notice = await move[action](thread=str(thread), user=user)
        if notice:
            await self._tell(user, notice)

    async def _on_command(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str(command.get("user_id") or "")
        words = str(command.get("text") or "").split()
        name = words[0].lower() if words else "queue"
        number = target = argument = None
        survey = True
        for word in words[1:]:
            if word.lower() == NO_SURVEY:
                survey = False
            elif match := _TICKET.match(word):
                number = int(match.group(1))
            elif match := _MENTION.match(word):
                target = match.group(1)
            elif argument is None:
                argument = word  # `/kefu translate on`
        reply = await self.desk.command(
            user=user,
            name=name,
            number=number,
            target=target,
            thread=command.get("thread_ts"),
            argument=argument,
            survey=survey,
        )
        try:
            await respond(text=reply, response_type="ephemeral")
        except Exception as err:  # no usable response_url: say it in the channel instead
            log.warning("answering /kefu through its response_url failed: %r", err)
            await self._tell(user, reply)

    async def _tell(self, user: str, text: str, *, thread: str | None = None) -> None:
        try:
            await self.board.tell(user, text, thread=thread)
        except KefuError as err:
            log.warning("could not tell an agent privately: %s", err)

    async def _name(self, user: str) -> str:
        try:
            return await self.board.display_name(user)
        except KefuError:
            return user


def _file_ref(file: Any) -> FileRef | None:
    """A file object of a ``file_share`` message, as the desk wants it."""
    if not isinstance(file, dict):
        return None
    url = file.get("url_private_download") or file.get("url_private")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return None
    size = file.get("size")
    return FileRef(
        name=str(file.get("name") or file.get("title") or "file"),
        mime_type=str(file.get("mimetype") or "application/octet-stream"),
        url=url,
        size=size if isinstance(size, int) else 0,
    )


def _api_root(base_url: str | None) -> str:
    """slack-sdk wants the API root with its trailing slash."""
    if not base_url:
        return AsyncWebClient.BASE_URL
    return base_url if base_url.endswith("/") else base_url + "/"
