"""The desk's board in Slack: tickets as messages with buttons, threads, private notices.

Implements ``bot.desk.DeskBoard`` over slack-sdk's async Web API client. Posts to the channel
(tickets, thread messages, files) take turns through a :class:`~channels.slack_pace.ChannelPacer`,
about one a second, in order. Slack's errors become kefu's: a rate limit that outlasts the
client's retries (it waits ``Retry-After`` each time), a 5xx or an unreachable Slack are
transient; anything else Slack refuses is permanent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import constants
from bot.desk import FileRef, Status, Ticket
from bot.desk.board import Mention
from bot.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from bot.files import FileBlob
from channels.slack_markup import escape
from channels.slack_pace import ChannelPacer

__all__ = [
    "CLAIM",
    "REOPEN",
    "RESOLVE",
    "RESOLVE_NO_SURVEY",
    "TICKET_EVENT",
    "SlackBoard",
    "ticket_blocks",
]

CLAIM = "kefu_claim"
RESOLVE = "kefu_resolve"
RESOLVE_NO_SURVEY = "kefu_resolve_no_survey"
REOPEN = "kefu_reopen"
_MEMBERS_TTL = 60.0
TICKET_EVENT = "kefu_ticket"
"""The Slack message metadata ``event_type`` of a ticket (its payload names the conversation
and the ticket's number)."""
_FIND_MARGIN = 600.0
"""Seconds before a ticket opened that its message is looked for (clocks differ)."""
_FIND_PAGES = 10
T = TypeVar("T")


class SlackBoard:
    """Posts tickets to the handoff channel; knows who the agents are."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        agent_ids: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.agent_ids = agent_ids
        self.pacer = pacer or ChannelPacer()
        self._clock = clock
        self._members: tuple[float, frozenset[str]] | None = None
        self._names: dict[str, str] = {}

    async def post_ticket(self, ticket: Ticket) -> str:
        """Post a new ticket in the handoff channel; its message ts (the thread). The message
        carries Slack message metadata naming the ticket, for :meth:`find_ticket`."""
        async with self.pacer.turn(self.channel):
            response = await _call(
                self.client.chat_postMessage(
                    channel=self.channel,
                    text=_summary(ticket),
                    blocks=ticket_blocks(ticket),
                    metadata={
                        "event_type": TICKET_EVENT,
                        "event_payload": {
                            "conversation_id": ticket.conversation_id,
                            "number": ticket.number,
                        },
                    },
                )
            )
        return str(response["ts"])

    async def find_ticket(self, ticket: Ticket) -> str | None:
        """The ts of the ticket's message in the channel, by its metadata, if it was posted
        (``conversations.history`` since shortly before the ticket opened, newest first)."""
        oldest = f"{max(ticket.opened_at - _FIND_MARGIN, 0.0):.6f}"
        cursor: str | None = None
        for _ in range(_FIND_PAGES):
            page = await _call(
                self.client.conversations_history(
                    channel=self.channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            )
            for message in page.get("messages") or ():
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if (
                    metadata.get("event_type") == TICKET_EVENT
                    and payload.get("conversation_id") == ticket.conversation_id
                    and payload.get("number") == ticket.number
                ):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    async def update_ticket(self, ticket: Ticket) -> None:
        """Show the ticket's current state in its channel message."""
        if ticket.thread is None:
            return
        await _call(
            self.client.chat_update(
                channel=self.channel,
                ts=ticket.thread,
                text=_summary(ticket),
                blocks=ticket_blocks(ticket),
            )
        )

    async def post_in_thread(
        self,
        ticket: Ticket,
        text: str,
        *,
        from_customer: bool = False,
        files: Sequence[FileBlob] = (),
        mention: Mention | None = None,
    ) -> None:
        """Post ``text`` in the ticket's thread."""
        assert ticket.thread is not None
        line = f"*{escape(ticket.customer)}:* {escape(text)}" if from_customer else escape(text)
        if mention == "agent" and ticket.agent:
            line = f"<@{ticket.agent}> {line}"
        async with self.pacer.turn(self.channel):
            if mention == "channel":
                await _call(
                    self.client.chat_postMessage(
                        channel=self.channel,
                        thread_ts=ticket.thread,
                        reply_broadcast=True,  # seen in the channel, not only in the thread
                        text=f"<!here> {line}",
                    )
                )
                return
            if files:
                await _call(
                    self.client.files_upload_v2(
                        channel=self.channel,
                        thread_ts=ticket.thread,
                        initial_comment=line if text else None,
                        file_uploads=[
                            {"content": blob.data, "filename": blob.name, "title": blob.name}
                            for blob in files
                        ],
                    )
                )
                return
            await _call(
                self.client.chat_postMessage(
                    channel=self.channel, thread_ts=ticket.thread, text=line or "(empty message)"
                )
            )

    async def tell(self, user: str, text: str, *, thread: str | None = None) -> None:
        """A message only ``user`` sees, in the handoff channel (or a thread)."""
        await _call(
            self.client.chat_postEphemeral(
                channel=self.channel, user=user, text=text, thread_ts=thread
            )
        )

    async def is_agent(self, user: str) -> bool:
        """True for the agents named in the settings and the handoff channel's members."""
        if user in self.agent_ids:
            return True
        now = self._clock()
        if self._members is None or now - self._members[0] > _MEMBERS_TTL:
            members: set[str] = set()
            cursor = None
            while True:
                page = await _call(
                    self.client.conversations_members(
                        channel=self.channel, cursor=cursor, limit=1000
                    )
                )
                members.update(page.get("members") or ())
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
            self._members = (now, frozenset(members))
        return user in self._members[1]

    async def display_name(self, user: str) -> str:
        """The Slack user's display name (remembered)."""
        name = self._names.get(user)
        if name is None:
            response = await _call(self.client.users_info(user=user))
            info = response.get("user") or {}
            profile = info.get("profile") or {}
            name = (
                profile.get("real_name")
                or profile.get("display_name")
                or info.get("real_name")
                or info.get("name")
                or user
            )
            self._names[user] = str(name)
        return self._names[user]

    async def download(self, ref: FileRef) -> FileBlob:
        """Fetch a file from Slack with the bot token (scope ``files:read``)."""
        limit = constants.MAX_FILE_BYTES
        if ref.size > limit:
            raise PermanentDeliveryError(f"{ref.name} is larger than {limit // 1_000_000} MB")
        headers = {"Authorization": f"Bearer {self.client.token}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
                session.get(ref.url, headers=headers) as response,
            ):
                if response.status == 429 or response.status >= 500:
                    raise TransientDeliveryError(f"Slack answered {response.status} for a file")
                if response.status != 200:
                    raise PermanentDeliveryError(f"Slack refused the file ({response.status})")
                data = await response.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDeliveryError(f"Slack is unreachable: {exc!r}") from exc
        if len(data) > limit:
            raise PermanentDeliveryError(f"{ref.name} is larger than {limit // 1_000_000} MB")
        return FileBlob(name=ref.name, mime_type=ref.mime_type, data=data)


async def _call(request: Awaitable[T]) -> T:
    """Await one Web API call, with Slack's failures turned into kefu's delivery errors."""
    try:
        return await request
    except SlackApiError as exc:
        raise _api_error(exc) from exc
    except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as exc:
        raise TransientDeliveryError(f"Slack is unreachable: {exc!r}") from exc


def _api_error(exc: SlackApiError) -> DeliveryError:
    status = exc.response.status_code
    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
    if status == 429 or status >= 500:
        headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
        wait = headers.get("retry-after")
        if isinstance(wait, list):
            wait = wait[0] if wait else None
        retry_after = float(wait) if wait and str(wait).isdigit() else None
        return TransientDeliveryError(f"Slack answered {status} ({error})", retry_after=retry_after)
    return PermanentDeliveryError(f"Slack refused the call: {error or status}")


def _summary(ticket: Ticket) -> str:
    return (
        f"Handoff #{ticket.number}: {escape(ticket.customer)} ({ticket.channel}) — {_state(ticket)}"
    )


def _state(ticket: Ticket) -> str:
    if ticket.status is Status.RESOLVED:
        took = ""
        if ticket.resolved_at is not None:
            took = f" after {max(int((ticket.resolved_at - ticket.opened_at) // 60), 0)} min"
        if ticket.withdrawn:
            return f"closed: the customer went back to the bot{took}"
        survey = "" if ticket.survey else ", without a survey"
        return f"resolved by {ticket.resolved_by}{took}{survey}"
    if ticket.agent_name:
        return f"{ticket.agent_name} has it"
    if ticket.with_bot:
        return "waiting for an agent · the customer left a message"
    return "waiting for an agent"


def _survey(ticket: Ticket) -> str | None:
    """The survey's answer as the ticket shows it, when there is one."""
    if ticket.csat is None:
        return None
    stars = "★" * ticket.csat + "☆" * (5 - ticket.csat)
    comment = f" · “{escape(ticket.csat_comment)}”" if ticket.csat_comment else ""
    return f"*Survey:* {ticket.csat}/5 {stars}{comment}"


def ticket_blocks(ticket: Ticket) -> list[dict[str, Any]]:
    """The ticket as Block Kit: who, why, what they want, the last turns, and its buttons."""
    facts = [
        f"*Channel:* {ticket.channel}",
        f"*Language:* {ticket.language}",
        f"*Reason:* {escape(ticket.reason)}",
        f"*Intent:* {escape(ticket.intent or '—')}",
        f"*Sentiment:* {'—' if ticket.sentiment is None else f'{ticket.sentiment:+.2f}'}",
    ]
    facts += [f"*{escape(k)}:* {escape(str(v))}" for k, v in sorted(ticket.slots.items())][:5]
    transcript = "\n".join(
        f"{'*customer*' if who == 'user' else '_bot_'}: {escape(text)}"
        for who, text in ticket.transcript
    )
    status = _state(ticket)
    if ticket.unreachable:
        status += " · :warning: the customer can no longer be reached"
    survey = _survey(ticket)
    if survey:
        status += "\n" + survey
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*Handoff #{ticket.number} · {escape(ticket.customer)}*\n{status}",
            },
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts[:10]]},
    ]
    if transcript:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": transcript[:2900]}})
    buttons = []
    if ticket.status is Status.RESOLVED:
        buttons.append(_button("Reopen", REOPEN))
    else:
        if ticket.agent is None:
            buttons.append(_button("Claim", CLAIM, style="primary"))
        buttons.append(_button("Resolve", RESOLVE))
        buttons.append(_button("Resolve without survey", RESOLVE_NO_SURVEY))
    blocks.append({"type": "actions", "block_id": "ticket_actions", "elements": buttons})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Reply in the thread to talk to the customer; "
                    "start with `note:` to keep it internal.",
                }
            ],
        }
    )
    return blocks


def _button(title: str, action_id: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": title},
        "action_id": action_id,
        "value": action_id,
    }
    if style:
        button["style"] = style
    return button
