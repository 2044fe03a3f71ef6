"""The desk: what happens to a ticket when a customer writes and when an agent acts.

Called from two sides. The customer's turn (with the conversation's lock held) calls
:meth:`Desk.request_handoff` and :meth:`Desk.forward`, which only record; a background
flusher per ticket then posts the ticket and the customer's messages to the board, in order,
and keeps them in the store while the board is down. The agents' workspace adapter calls
:meth:`Desk.on_reply`, :meth:`Desk.claim`, :meth:`Desk.command`... with plain values; what the
customer must hear goes through ``ConversationControl.intervene`` (the bot's own outbox).
Each returns the private notice for the acting agent, if any.

Every change to a ticket happens under its conversation's lock (the turn runner's
``ConversationLocks``), the same lock a customer's turn holds: with several workers on
PostgreSQL that lock is PostgreSQL's, so a ticket posted through one worker and claimed
through another is read fresh and changed by one of them at a time; two agents pressing Claim
on two workers get one claim and one notice. With several workers (``shared``) one worker at a
time posts a ticket's waiting messages: it claims them in the ticket (``poster``) for
``DESK_FLUSH_LEASE`` seconds, renewed at each post; another worker looks again once the claim
lapses, so a worker that dies leaves nothing unposted and nothing is posted twice meanwhile.
A ticket whose post was tried but never recorded (the worker died, or the database stayed
away past the claim) is looked for on the board before it is posted again (Slack: by the
message metadata naming it) and its thread kept.

What happens to a ticket is told to its watchers (:meth:`Desk.watch`): scheduled work sets and
cancels the handoff's timers there (waiting time, the agent's idle reminder, the survey).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot import constants
from bot.desk.board import DeskBoard, FileRef, FileSource
from bot.desk.tickets import Status, Ticket, TicketBook
from bot.errors import KefuError, PermanentError, ThreadNotRecordedError, TransientError
from bot.events import (
    AgentJoined,
    AgentLeft,
    AgentMessage,
    AgentNote,
    Attachment,
    Event,
    HandoffRequested,
    HandoffResolved,
    UserMessage,
)
from bot.files import FileBlob, StoredFiles
from bot.locks import ConversationLocks, LocalLocks
from bot.ports import ConversationControl, Delivery, Intervention, SharedValues
from bot.state import ConversationState

if TYPE_CHECKING:
    from bot.desk.copilot import DeskCopilot

__all__ = ["BACK_TO_BOT", "LEAVE_MESSAGE", "Desk", "TicketWatcher"]

log = logging.getLogger(__name__)

NOT_AGENT = "Only members of the handoff channel may act on kefu tickets."
UNKNOWN_THREAD = "This thread is not an open kefu handoff: nothing was sent to anyone."
FILES_NOT_RELAYED = (
    "Files can't be passed on to this customer's channel: your text was sent without them. "
    "Share a link instead."
)
RESOLVED = (
    "This handoff is resolved: nothing was sent to the customer. "
    "Press Reopen on the ticket to talk to them again."
)
NO_LLM = (
    "No LLM is configured for kefu (KEFU_LLM_MODEL), so the desk has no translations "
    "or drafted replies."
)
ALREADY_YOURS = "You already have this conversation."
TRANSLATION_LABEL = ":globe_with_meridians: _translation:_"
SENT_LABEL = ":globe_with_meridians: _sent to the customer:_"
DRAFT_LABEL = "Suggested reply (edit it, then send it yourself):"
_NOTE_PREFIX = "note:"
_CLAIM_KEY = "claim-"
"""``Ticket.joined_by`` of a ticket claimed with the button (or ``/kefu claim``): the claim's
key in the conversation, under which its join is recorded once."""
_FILE_KINDS = frozenset({"image", "document", "audio", "video"})
_HIDDEN_SLOTS = frozenset({"continue_interrupted_flow_confirmation", "language"})
Utter = tuple[str, Mapping[str, Any]]
TicketWatcher = Callable[[Ticket, str], Awaitable[None]]
"""Told of a ticket after each change, with its name: ``opened``, ``claim``, ``resolve``,
``reopen``, ``release``, ``transfer``, ``withdraw`` (the customer went back to the bot) or
``with_bot`` (the customer chose to leave a message)."""

LEAVE_MESSAGE = constants.HANDOFF_LEAVE_MESSAGE
BACK_TO_BOT = constants.HANDOFF_BACK_TO_BOT


class Desk:
    """Implements ``HandoffDesk``; build it, then :meth:`connect` the board and the turns.

    ``locks`` must be the turn runner's (a ticket changes under its conversation's lock);
    ``shared``: one of several workers on one database (no ticket cache, one poster at a time).
    """

    def __init__(
        self,
        *,
        store: SharedValues,
        channels: Collection[str],
        file_channels: Collection[str] = (),
        locks: ConversationLocks | None = None,
        shared: bool = False,
        clock: Callable[[], float] = time.time,
        flush_delays: Sequence[float] = constants.DESK_FLUSH_DELAYS,
    ) -> None:
        self._book = TicketBook(store, cache=not shared)
        self._locks = locks if locks is not None else LocalLocks()  # an idle one is falsy
        self._shared = shared
        self._worker = uuid.uuid4().hex
        """This desk's name in a ticket's ``poster`` (several workers)."""
        self._channels = frozenset(channels)
        self._file_channels = frozenset(file_channels)
        self._files = StoredFiles(store)
        self._clock = clock
        self._delays = tuple(flush_delays)
        self._tickets_posting = 0
        """Tickets posted whose thread is not recorded yet: a press on one waits for it."""
        self._board: DeskBoard | None = None
        self._conversations: ConversationControl | None = None
        self._copilot: DeskCopilot | None = None
        self._sources: dict[str, FileSource] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._sweeper: asyncio.Task[None] | None = None
        """Tickets another worker posts for: looked at again when its claim lapses."""
        self._again: set[str] = set()
        self._replying: dict[tuple[str, str], asyncio.Future[bool]] = {}
        """Agents' replies being handled, by (thread, Slack ts): whether each succeeded."""
        self._stopping = False
        self._watchers: list[TicketWatcher] = []

    def connect(
        self,
        *,
        board: DeskBoard,
        conversations: ConversationControl,
        copilot: DeskCopilot | None = None,
    ) -> None:
        """Give the desk its workspace and its way into conversations (before :meth:`start`),
        and the copilot when an LLM is configured."""
        self._board = board
        self._conversations = conversations
        self._copilot = copilot

    def watch(self, watcher: TicketWatcher) -> None:
        """Tell ``watcher`` of every change to a ticket (after it is saved)."""
        self._watchers.append(watcher)

    async def ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's latest ticket, if it ever had one."""
        return await self._book.get(conversation_id)

    def forget_cached(self) -> None:
        """Drop the tickets kept in memory: retention deleted conversations, and their
        tickets with them, in the store."""
        self._book.forget_cached()

    def add_file_source(self, channel: str, source: FileSource) -> None:
        """Let the desk fetch files customers send on ``channel`` to post them in threads."""
        self._sources[channel] = source

    async def start(self) -> None:
        """Resume posting whatever waited for the board when kefu last stopped; with several
        workers, look again every ``DESK_FLUSH_LEASE`` seconds for what a worker that died
        left unposted."""
        self._stopping = False
        await self._book.upgrade()
        await self._resume()
        if self._shared and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="kefu-desk-sweep")

    async def _resume(self) -> None:
        """Kick the flusher of every open ticket with something waiting to be posted."""
        for conversation_id in await self._book.open_ids():
            ticket = await self._book.get(conversation_id)
            if ticket is not None and (ticket.thread is None or ticket.outbox):
                self._kick(conversation_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(constants.DESK_FLUSH_LEASE)
            try:
                await self._resume()
            except KefuError as err:  # the database is away: next time
                log.warning("looking for tickets left unposted failed: %s", err)

    async def stop(self) -> None:
        """Stop the flushers; what they had not posted stays in the store (and another
        worker takes it up at once)."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for handle in self._later.values():
            handle.cancel()
        self._later.clear()
        flushing = dict(self._flushers)
        for task in flushing.values():
            task.cancel()
        for cid, task in flushing.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._shared:
                with contextlib.suppress(KefuError):
                    async with self._lock(cid):
                        await self._let_go(await self._book.get(cid))

    # --- the customer's side (HandoffDesk) ----------------------------------------------

    async def request_handoff(
        self, *, conversation_id: str, reason: str, state: ConversationState
    ) -> bool:
        """Open a ticket for the conversation (or keep the open one); False when the desk
        cannot serve the conversation's channel. The caller holds the conversation's lock."""
        if self._board is None or state.channel not in self._channels:
            return False
        current = await self._book.get(conversation_id)
        if current is not None and current.is_open:
            return True
        number = await self._book.new_number(conversation_id)
        ticket = _new_ticket(state, number=number, reason=reason, now=self._clock())
        await self._book.put(ticket, new=True)
        await self._book.set_open(ticket)
        self._kick(conversation_id)
        await self._tell_watchers(ticket, "opened")
        return True

    async def forward(self, message: UserMessage) -> bool:
        """Queue a customer's message (and its files) for the ticket's thread; False when
        the conversation has no open ticket. The caller holds the conversation's lock."""
        choice = message.payload if message.payload in (LEAVE_MESSAGE, BACK_TO_BOT) else None
        ticket = await self._book.get(message.conversation_id)
        if ticket is None or not ticket.is_open:
            log.warning("no open ticket for %s: the bot answers", message.conversation_id)
            return False
        if message.message_id and message.message_id in ticket.forwarded:
            return True  # the turn runs again (its save failed): queued the first time
        if choice == LEAVE_MESSAGE and ticket.with_bot:
            return False  # chosen before (the turn runs again): the bot has it already
        if choice is not None and ticket.agent is None:
            # The payload counts only where trusted (an offered button, or kefu's own
            # plain intent typed): bot.dialogue.trust. A claimed ticket takes it as words.
            move: str | None = self._stop_waiting(ticket, withdraw=choice == BACK_TO_BOT)
        else:
            move = None
            text = message.text or message.payload or ""
            if message.metadata.get(constants.LEFT_MESSAGE_KEY):
                text = f"(left a message) {text}"
            ticket.outbox.append(
                {
                    "kind": "customer",
                    "text": text,
                    "attachments": [dataclasses.asdict(a) for a in message.attachments],
                }
            )
            ticket.said("Customer", text)
            if message.message_id:
                ticket.forwarded.append(message.message_id)
                del ticket.forwarded[: -constants.DESK_FORWARDED_IDS]
            copilot = self._copilot
            if text and copilot is not None and copilot.translates(ticket.language):
                ticket.outbox.append({"kind": "translation", "text": text})
            ticket.last_activity_at = self._clock()
        if await self._book.put(ticket) and move == "withdraw":
            await self._book.set_open(ticket)
        self._kick(message.conversation_id)
        if move is not None:
            await self._tell_watchers(ticket, move)
            return False  # the bot takes the conversation (back)
        return True

    def _stop_waiting(self, ticket: Ticket, *, withdraw: bool) -> str:
        """The waiting customer pressed "leave a message" or "back to the bot"."""
        if withdraw:
            ticket.status = Status.RESOLVED
            ticket.withdrawn = True
            ticket.survey = False
            ticket.resolved_at = self._clock()
            ticket.resolved_by = "the customer"
            line = "The customer stopped waiting and went back to the bot."
        else:
            ticket.with_bot = True
            line = (
                "The customer chose to leave a message (the bot takes it; it follows here). "
                "Claim the ticket to talk to them."
            )
        ticket.outbox += [{"kind": "line", "text": line}, {"kind": "show"}]
        return "withdraw" if withdraw else "with_bot"

    async def escalate(
        self, conversation_id: str, *, number: int, text: str, mention: bool = True
    ) -> bool:
        """Say ``text`` in ticket ``number``'s thread, if it still waits for an agent;
        ``mention``: raised for every agent in the channel."""
        return await self._line(
            conversation_id, number, text, mention="channel" if mention else None, waiting=True
        )

    async def remind_agent(self, conversation_id: str, *, number: int, text: str) -> bool:
        """Call the agent who has ticket ``number`` in its thread, if they still have it."""
        return await self._line(conversation_id, number, text, mention="agent", waiting=False)

    async def record_survey(
        self, conversation_id: str, *, score: int | None = None, comment: str | None = None
    ) -> None:
        """Show the customer's survey answer (the score, then the comment if any) on their
        latest (resolved) ticket."""
        if score is None and not comment:
            return
        async with self._lock(conversation_id):
            ticket = await self._book.get(conversation_id)
            if ticket is None or ticket.is_open:
                return
            said = []
            if score is not None:
                ticket.csat = score
                said.append(f"Survey: the customer rated this handoff {score}/5.")
            if comment:
                ticket.csat_comment = comment
                said.append(f"Survey comment from the customer: {comment}")
            ticket.outbox += [{"kind": "line", "text": line} for line in said]
            ticket.outbox.append({"kind": "show"})
            await self._book.put(ticket)
        self._kick(conversation_id)

    async def _line(
        self, cid: str, number: int, text: str, *, mention: str | None, waiting: bool
    ) -> bool:
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None or ticket.number != number or not ticket.is_open:
                return False
            if (ticket.agent is None) is not waiting:
                return False
            ticket.outbox.append({"kind": "line", "text": text, "mention": mention})
            await self._book.put(ticket)
        self._kick(cid)
        return True

    # --- the agents' side ----------------------------------------------------------------

    async def on_reply(
        self,
        *,
        thread: str,
        user: str,
        text: str,
        message_id: str,
        files: Sequence[FileRef] = (),
    ) -> str | None:
        """An agent wrote in a thread: a note, a claim by first reply, or a reply to relay
        (with the files they attached, where the customer's channel takes files).

        The Slack message is recorded in the conversation with what it did, once: a retried
        event does nothing the second time, or completes what failed the first (a claim
        saved in the ticket whose join was not recorded in the conversation). Slack's retry
        of a reply still being handled here (a translation takes longer than Slack waits)
        waits for it, and does nothing when it succeeded (no second translation).
        """
        key = (thread, message_id)
        earlier = self._replying.get(key)
        if earlier is not None and await asyncio.shield(earlier):
            return None
        handled = asyncio.get_running_loop().create_future()
        self._replying[key] = handled
        try:
            notice = await self._on_reply(
                thread=thread, user=user, text=text, message_id=message_id, files=files
            )
        except BaseException:
            handled.set_result(False)
            raise
        else:
            handled.set_result(True)
        finally:
            if self._replying.get(key) is handled:
                del self._replying[key]
        return notice

    async def _on_reply(
        self,
        *,
        thread: str,
        user: str,
        text: str,
        message_id: str,
        files: Sequence[FileRef],
    ) -> str | None:
        found = await self._book.by_thread(thread)
        if found is None:
            return UNKNOWN_THREAD
        if not await self._may_act(user):
            return NOT_AGENT
        cid = found.conversation_id
        name = await self._name(user)
        body = text.strip()
        events: list[Event] = []
        utter: list[Utter] = []
        notice: str | None = None
        translate_to: str | None = None
        claimed = False
        pause: bool | None = None
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None or ticket.thread != thread:
                return UNKNOWN_THREAD
            if ticket.status is Status.RESOLVED:
                return RESOLVED
            if body.lower().startswith(_NOTE_PREFIX):
                events.append(AgentNote(agent=name, text=body[len(_NOTE_PREFIX) :].strip()))
            elif ticket.agent not in (None, user):
                events.append(AgentNote(agent=name, text=body))
                notice = (
                    f"{ticket.agent_name} has this conversation: your reply stays an internal "
                    "note. Ask them to `/kefu transfer` it to you."
                )
            else:
                if ticket.agent is None:
                    self._assign(ticket, user, name)
                    ticket.joined_by = message_id
                    ticket.join_pause = self._take_back(ticket)
                # Slack's retry of the claiming reply (the join failed to be recorded, or
                # was: then the conversation recognises the message) joins again.
                if ticket.joined_by == message_id and ticket.agent == user:
                    events.append(AgentJoined(agent=name))
                    utter.append(("utter_human_agent_joined", {"agent_name": _first(name)}))
                    claimed = True
                    pause = ticket.join_pause
                ticket.last_activity_at = self._clock()
                await self._book.put(ticket)
                attachments: list[Attachment] = []
                if files and ticket.channel in self._file_channels:
                    attachments, notice = await self._keep(cid, files)
                elif files:
                    notice = FILES_NOT_RELAYED
                if body or attachments:
                    events.append(
                        AgentMessage(agent=name, text=body, attachments=tuple(attachments))
                    )
                    if message_id not in ticket.said_ids:  # else Slack's retry of the reply
                        ticket.said("Agent", body, message_id=message_id)
                        await self._book.put(ticket)
                    if body and ticket.translate_replies and self._copilot is not None:
                        translate_to = ticket.language
        sent: list[str] = []
        if translate_to is not None:
            translated = await self._translated(cid, events, translate_to)
            if translated is None:
                notice = notice or "The translation failed: your reply was sent as you wrote it."
            else:
                events, sent = translated
        # Outside the desk's lock: a customer's turn holds the conversation's lock while it
        # takes the desk's (forward), so taking them the other way round could deadlock.
        result = await self._record(
            cid, events=events, utter=utter, pause=pause, key=(thread, message_id)
        )
        if result is None or result.duplicate:
            return None
        for text in sent:  # the thread keeps what the customer received
            await self._post_line(cid, f"{SENT_LABEL} {text}")
        await self._after_delivery(cid, result)
        if utter:
            await self._show(cid)
        if claimed:
            await self._tell_watchers(ticket, "claim")
        return notice

    async def claim(self, *, thread: str, user: str) -> str | None:
        """The Claim button: assign the ticket to ``user``."""
        return await self._act(thread, user, "claim")

    async def resolve(self, *, thread: str, user: str, survey: bool = True) -> str | None:
        """The Resolve button: hand the conversation back to the bot; ``survey=False``: the
        customer is not asked to rate it."""
        return await self._act(thread, user, "resolve", survey=survey)

    async def reopen(self, *, thread: str, user: str) -> str | None:
        """The Reopen button on a resolved ticket: the agent takes the conversation again."""
        return await self._act(thread, user, "reopen")

    async def command(
        self,
        *,
        user: str,
        name: str,
        number: int | None = None,
        target: str | None = None,
        thread: str | None = None,
        argument: str | None = None,
        survey: bool = True,
    ) -> str:
        """``/kefu queue | resolve [--no-survey] | release | reopen | transfer @someone |
        translate on|off | suggest`` (on ticket ``number``, the thread's ticket, or the agent's
        only claimed one)."""
        if not await self._may_act(user):
            return NOT_AGENT
        if name == "queue":
            return await self.queue()
        if name in {"translate", "suggest"}:
            return await self._copilot_command(
                user, name, number=number, thread=thread, argument=argument
            )
        if name not in {"resolve", "release", "reopen", "transfer", "claim"}:
            return (
                "Usage: `/kefu queue`, `/kefu resolve [#ticket] [--no-survey]`, "
                "`/kefu release|reopen [#ticket]`, `/kefu transfer [#ticket] @someone`, "
                "`/kefu translate on|off [#ticket]`, `/kefu suggest [#ticket]`."
            )
        if name == "transfer" and not target:
            return "Usage: `/kefu transfer [#ticket] @someone`."
        ticket = await self._find(user, number=number, thread=thread, name=name)
        if isinstance(ticket, str):
            return ticket
        assert ticket.thread is not None
        moved = await self._act(ticket.thread, user, name, target=target, survey=survey)
        return moved or "Done."

    async def queue(self) -> str:
        """Waiting and active tickets, oldest first, with how long they have waited."""
        now = self._clock()
        lines = []
        for cid in await self._book.open_ids():
            ticket = await self._book.get(cid)
            if ticket is None or not ticket.is_open:
                continue
            opened = _minutes(now - ticket.opened_at)
            who = f"with {ticket.agent_name}" if ticket.agent else f"waiting {opened}"
            lines.append(
                f"#{ticket.number} · {who} · opened {opened} ago · {ticket.customer} "
                f"({ticket.channel}, {ticket.language}) · {ticket.reason}"
            )
        if not lines:
            return "No one is waiting and no handoff is open."
        return "Open handoffs, oldest first:\n" + "\n".join(lines)

    # --- the copilot -----------------------------------------------------------------------

    async def _copilot_command(
        self,
        user: str,
        name: str,
        *,
        number: int | None,
        thread: str | None,
        argument: str | None,
    ) -> str:
        """``/kefu translate on|off`` and ``/kefu suggest``."""
        copilot = self._copilot
        if copilot is None:
            return NO_LLM
        switch = (argument or "").lower()
        if name == "translate" and switch not in {"on", "off"}:
            return "Usage: `/kefu translate on|off [#ticket]`."
        found = await self._find(user, number=number, thread=thread, name=name)
        if isinstance(found, str):
            return found
        cid = found.conversation_id
        if name == "translate":
            if switch == "on" and not copilot.translates(found.language):
                return (
                    f"The customer of #{found.number} writes {found.language}, the desk's "
                    "language: there is nothing to translate."
                )
            async with self._lock(cid):
                ticket = await self._book.get(cid)
                if ticket is None:
                    return UNKNOWN_THREAD
                ticket.translate_replies = switch == "on"
                await self._book.put(ticket)
            if switch == "on":
                return (
                    f"Translation on for #{found.number}: write in {copilot.desk_language}, "
                    f"the customer receives {found.language}; the thread keeps both."
                )
            return f"Translation off for #{found.number}: your replies go out as you write them."
        if found.status is Status.RESOLVED:
            return "This handoff is resolved: there is no reply to draft."
        history = [
            ("Customer" if who == "user" else "Assistant", text) for who, text in found.transcript
        ] + list(found.window)
        language = copilot.desk_language if found.translate_replies else found.language
        draft = await copilot.suggest(language=language, history=history, slots=found.slots)
        if draft is None:
            return "The LLM could not draft a reply just now: try again in a moment."
        await self._post_line(cid, f"{DRAFT_LABEL}\n{draft}")
        return f"A suggested reply is in the thread of #{found.number}."

    async def _translated(
        self, cid: str, events: list[Event], language: str
    ) -> tuple[list[Event], list[str]] | None:
        """The events with the agent's reply translated for the customer, and the
        translations; None when the model failed."""
        assert self._copilot is not None
        ticket = await self._book.get(cid)
        slots = ticket.slots if ticket is not None else {}
        out: list[Event] = []
        texts: list[str] = []
        for event in events:
            if isinstance(event, AgentMessage) and event.text:
                translated = await self._copilot.translate(
                    event.text, source=self._copilot.desk_language, target=language, slots=slots
                )
                if translated is None:
                    return None
                texts.append(translated)
                event = dataclasses.replace(event, text=translated)
            out.append(event)
        return out, texts

    async def _post_line(self, cid: str, text: str) -> None:
        """Queue a line from the desk for the ticket's thread."""
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None:
                return
            ticket.outbox.append({"kind": "line", "text": text})
            await self._book.put(ticket)
        self._kick(cid)

    async def _keep(
        self, cid: str, files: Sequence[FileRef]
    ) -> tuple[list[Attachment], str | None]:
        """Download an agent's files and keep them for delivery; a notice for those that fail."""
        assert self._board is not None
        kept: list[Attachment] = []
        failed: list[str] = []
        for ref in files:
            try:
                kept.append(await self._files.put(await self._board.download(ref), owner=cid))
            except KefuError as err:
                log.warning("an agent's file could not be passed on: %s", err)
                failed.append(ref.name)
        notice = f"Not sent to the customer: {', '.join(failed)}." if failed else None
        return kept, notice

    # --- agents' moves -------------------------------------------------------------------

    async def _act(
        self,
        thread: str,
        user: str,
        move: str,
        *,
        target: str | None = None,
        survey: bool = True,
    ) -> str | None:
        found = await self._ticket_of(thread)
        if found is None:
            return UNKNOWN_THREAD
        cid = found.conversation_id
        if not await self._may_act(user):
            return NOT_AGENT
        name = await self._name(user)
        target_name = await self._name(target) if target else None
        if target is not None and not await self._may_act(target):
            return f"{target_name} is not a member of the handoff channel."
        key: tuple[str, str] | None = None
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None or ticket.thread != thread:
                return UNKNOWN_THREAD
            change = self._move(ticket, move, user, name, target, target_name)
            if isinstance(change, str):
                return change
            events, utter, pause = change
            if move == "resolve":
                ticket.survey = survey
            if move == "claim":
                # The join is recorded in the conversation under the claim's own key: a
                # press again (the first failed after the claim was saved) records it then.
                assert ticket.joined_by is not None
                key = (thread, ticket.joined_by)
            if await self._book.put(ticket) and move in {"resolve", "reopen"}:
                await self._book.set_open(ticket)
        if key is not None:
            result = await self._record(cid, events=events, utter=utter, pause=pause, key=key)
            if result is not None and result.duplicate:
                return ALREADY_YOURS  # the join was recorded: a press again does nothing
            if result is not None:
                await self._after_delivery(cid, result)
            await self._show(cid)
        else:
            await self._apply(cid, events=events, utter=utter, pause=pause)
        if target is not None and move == "transfer":
            await self._quietly(self._tell(target, f"You now have kefu ticket #{ticket.number}."))
        await self._tell_watchers(ticket, move)
        return None

    def _move(
        self,
        ticket: Ticket,
        move: str,
        user: str,
        name: str,
        target: str | None,
        target_name: str | None,
    ) -> tuple[list[Event], list[Utter], bool | None] | str:
        """Change the ticket for one move; the events and messages it means, or why not."""
        if move == "reopen":
            if ticket.status is not Status.RESOLVED:
                return "This handoff is still open."
            ticket.status = Status.ACTIVE
            ticket.resolved_at = ticket.resolved_by = None
            self._assign(ticket, user, name)
            return (
                [HandoffRequested(reason=f"reopened by {name}"), AgentJoined(agent=name)],
                [("utter_human_handoff_reopened", {"agent_name": _first(name)})],
                True,
            )
        if ticket.status is Status.RESOLVED:
            return "This handoff is already resolved."
        if move == "claim":
            if ticket.agent == user and not (ticket.joined_by or "").startswith(_CLAIM_KEY):
                return ALREADY_YOURS  # claimed by a reply, a transfer or a reopen
            if ticket.agent not in (None, user):
                return (
                    f"{ticket.agent_name} has this conversation already; ask them to transfer it."
                )
            if ticket.agent is None:
                self._assign(ticket, user, name)
                ticket.joined_by = f"{_CLAIM_KEY}{uuid.uuid4().hex}"
                ticket.join_pause = self._take_back(ticket)
            # Else this agent claimed it before: its join is recorded again under the same
            # key, which does nothing when the first press recorded it.
            return (
                [AgentJoined(agent=name)],
                [("utter_human_agent_joined", {"agent_name": _first(name)})],
                ticket.join_pause,
            )
        if ticket.agent not in (None, user):
            return f"{ticket.agent_name} has this conversation; only they can do that."
        if move == "resolve":
            ticket.status = Status.RESOLVED
            ticket.resolved_at = self._clock()
            ticket.resolved_by = name
            return [HandoffResolved(agent=name)], [("utter_human_handoff_resolved", {})], False
        if move == "release":
            if ticket.agent is None:
                return "No one has this conversation yet."
            ticket.agent = ticket.agent_name = None
            ticket.status = Status.WAITING
            return [AgentLeft(agent=name)], [("utter_human_agent_released", {})], None
        # transfer
        assert target is not None and target_name is not None
        events: list[Event] = [AgentLeft(agent=name)] if ticket.agent else []
        self._assign(ticket, target, target_name)
        events.append(AgentJoined(agent=target_name))
        return (
            events,
            [("utter_human_agent_transferred", {"agent_name": _first(target_name)})],
            self._take_back(ticket),
        )

    @staticmethod
    def _take_back(ticket: Ticket) -> bool | None:
        """An agent takes a ticket whose customer talks to the bot meanwhile (they left a
        message): the conversation is theirs again (paused); else nothing changes."""
        if not ticket.with_bot:
            return None
        ticket.with_bot = False
        return True

    def _assign(self, ticket: Ticket, user: str, name: str) -> None:
        """Give the ticket to ``user``; the caller records how they joined (``joined_by``)."""
        ticket.agent = user
        ticket.joined_by = ticket.join_pause = None
        ticket.agent_name = name
        ticket.status = Status.ACTIVE
        ticket.claimed_at = ticket.last_activity_at = self._clock()

    async def _tell_watchers(self, ticket: Ticket, move: str) -> None:
        for watcher in self._watchers:
            try:
                await watcher(ticket, move)
            except Exception:  # a timer failing must not undo an agent's move
                log.exception("a ticket watcher failed on %s of #%s", move, ticket.number)

    async def _apply(
        self,
        cid: str,
        *,
        events: list[Event],
        utter: list[Utter],
        pause: bool | None = None,
    ) -> None:
        """Record a move in the conversation, deliver it, and show the ticket's new state."""
        result = await self._record(cid, events=events, utter=utter, pause=pause)
        if result is not None:
            await self._after_delivery(cid, result)
        await self._show(cid)

    async def _record(
        self,
        cid: str,
        *,
        events: list[Event],
        utter: list[Utter],
        pause: bool | None = None,
        key: tuple[str, str] | None = None,
    ) -> Intervention | None:
        if not events and not utter and pause is None:
            return None
        assert self._conversations is not None
        return await self._conversations.intervene(
            cid,
            events=events,
            utter=utter,
            pause=pause,
            message_key=("slack", "/".join(key)) if key else None,
        )

    async def _show(self, cid: str) -> None:
        ticket = await self._book.get(cid)
        if ticket is not None and ticket.thread is not None and self._board is not None:
            await self._quietly(self._board.update_ticket(ticket))

    async def _after_delivery(self, cid: str, result: Intervention) -> None:
        if result.delivery is not Delivery.UNREACHABLE:
            return
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None or ticket.unreachable:
                return
            ticket.unreachable = True
            ticket.outbox.append(
                {
                    "kind": "line",
                    "text": "The customer can no longer be reached on their channel "
                    "(they blocked the bot or deleted the chat): nothing more will reach them.",
                }
            )
            await self._book.put(ticket)
        self._kick(cid)

    async def _find(
        self, user: str, *, number: int | None, thread: str | None, name: str
    ) -> Ticket | str:
        if thread is not None:
            ticket = await self._book.by_thread(thread)
            if ticket is not None:
                return ticket
        if number is not None:
            ticket = await self._numbered(number)
            if ticket is None:
                return f"There is no ticket #{number} (or it was replaced by a newer one)."
            return ticket
        mine = []
        for cid in await self._book.open_ids():
            ticket = await self._book.get(cid)
            if ticket is not None and ticket.agent == user and ticket.thread is not None:
                mine.append(ticket)
        if len(mine) == 1:
            return mine[0]
        which = "no open ticket" if not mine else f"{len(mine)} tickets"
        return f"You have {which}: say which, e.g. `/kefu {name} #12`."

    # --- posting to the board ------------------------------------------------------------

    def _kick(self, cid: str) -> None:
        if self._stopping:
            return  # posted after the next start, from the store
        later = self._later.pop(cid, None)
        if later is not None:
            later.cancel()
        task = self._flushers.get(cid)
        if task is not None and not task.done():
            self._again.add(cid)
            return
        task = asyncio.create_task(self._flush(cid))
        self._flushers[cid] = task
        task.add_done_callback(lambda done: self._flushed(cid, done))

    def _flushed(self, cid: str, task: asyncio.Task[None]) -> None:
        if self._flushers.get(cid) is task:
            del self._flushers[cid]
        if not task.cancelled() and task.exception() is not None:
            log.error("posting ticket %s failed", cid, exc_info=task.exception())
        if cid in self._again:
            self._again.discard(cid)
            self._kick(cid)

    async def _flush(self, cid: str) -> None:
        """Post the ticket, then what waits in its outbox, oldest first, until none is left.

        A store that is away is waited for (:data:`~bot.constants.DESK_RECORD_DELAYS`, the
        last repeating), before a post as after it: what was posted is recorded before
        anything else is posted, and never posted again (a thread whose record was lost would
        leave the ticket orphaned in Slack and post a second one)."""
        failures = store_failures = 0
        while True:
            self._again.discard(cid)
            try:
                next_post = await self._next_post(cid)
            except TransientError as err:
                await self._wait_for_store(cid, err, store_failures)
                store_failures += 1
                continue
            store_failures = 0
            if next_post is None:
                return
            ticket, look = next_post
            item = ticket.outbox[0] if ticket.thread is not None else {"kind": "ticket"}
            new_ticket = item["kind"] == "ticket"
            self._tickets_posting += new_ticket
            try:
                posted = await self._post(ticket, item, look=look)
            except TransientError as err:
                self._tickets_posting -= new_ticket
                delay = self._delays[min(failures, len(self._delays) - 1)]
                failures += 1
                log.warning("the board is unavailable (%s); posting again in %.0f s", err, delay)
                await asyncio.sleep(max(delay, err.retry_after or 0.0))
                continue
            except PermanentError as err:
                self._tickets_posting -= new_ticket
                if new_ticket:  # a setup problem (bad channel): keep trying slowly
                    log.error("ticket for %s cannot be posted: %s", cid, err)
                    await asyncio.sleep(self._delays[-1])
                    continue
                log.error("a message for ticket %s was refused: %s", cid, err)
                posted = None
            failures = 0
            try:
                if not await self._posted(cid, new_ticket=new_ticket, posted=posted):
                    return
            finally:
                self._tickets_posting -= new_ticket

    async def _next_post(self, cid: str) -> tuple[Ticket, bool] | None:
        """The ticket, when something of it waits to be posted and this worker posts it;
        with whether to look for its message first (the ticket may be posted already: a
        post was tried, and its answer never recorded)."""
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None:
                return None
            if ticket.thread is None or ticket.outbox:
                if not await self._may_post(ticket):
                    return None
                look = ticket.thread is None and ticket.post_tried
                if ticket.thread is None and not ticket.post_tried:
                    ticket.post_tried = True  # before the post: whoever posts next looks
                    await self._book.put(ticket)
                return ticket, look
            await self._let_go(ticket)
            return None

    async def _posted(self, cid: str, *, new_ticket: bool, posted: str | None) -> bool:
        """Record what was just posted (the ticket's thread, or its oldest waiting item
        gone), waiting for a store that is away; False when the flusher stops (the ticket is
        gone, or another worker took over its posts)."""
        failures = 0
        while True:
            try:
                return await self._note_posted(cid, new_ticket=new_ticket, posted=posted)
            except TransientError as err:
                await self._wait_for_store(cid, err, failures)
                failures += 1

    async def _note_posted(self, cid: str, *, new_ticket: bool, posted: str | None) -> bool:
        async with self._lock(cid):
            ticket = await self._book.get(cid)
            if ticket is None:
                return False
            if self._shared and ticket.poster != self._worker:
                log.warning("ticket %s: another worker took over its posts", cid)
                # Its claim lapsed: a ticket is found again by the worker that took over;
                # a message just posted in its thread may show twice.
                return False
            if new_ticket:
                ticket.thread = posted
            elif ticket.outbox:
                ticket.outbox.pop(0)
            await self._book.put(ticket, new_thread=new_ticket)
        return True

    async def _wait_for_store(self, cid: str, err: TransientError, failures: int) -> None:
        delays = constants.DESK_RECORD_DELAYS
        delay = delays[min(failures, len(delays) - 1)]
        log.warning("ticket %s: the store is unavailable (%s); again in %.1f s", cid, err, delay)
        await asyncio.sleep(delay)

    async def _may_post(self, ticket: Ticket) -> bool:
        """Whether this worker posts the ticket's waiting messages now; several workers:
        claims them for :data:`~bot.constants.DESK_FLUSH_LEASE` seconds unless another
        worker's claim runs (then looks again when it lapses). Under the ticket's lock."""
        if not self._shared:
            return True
        now = self._clock()
        until = ticket.poster_until or 0.0
        if ticket.poster not in (None, self._worker) and until > now:
            cid = ticket.conversation_id
            delay = until - now + constants.DESK_NEW_TICKET_POLL
            self._later[cid] = asyncio.get_running_loop().call_later(delay, self._kick, cid)
            return False
        if ticket.poster != self._worker or until - now < constants.DESK_FLUSH_LEASE / 2:
            ticket.poster = self._worker
            ticket.poster_until = now + constants.DESK_FLUSH_LEASE
            await self._book.put(ticket)
        return True

    async def _let_go(self, ticket: Ticket | None) -> None:
        """Give up this worker's claim on posting the ticket's messages (none wait, or it
        stops). Under the ticket's lock."""
        if ticket is not None and self._shared and ticket.poster == self._worker:
            ticket.poster = ticket.poster_until = None
            await self._book.put(ticket)

    async def _numbered(self, number: int) -> Ticket | None:
        """The posted ticket numbered ``number``. An agent may name a ticket the moment it
        shows in Slack, before the post's answer (its thread) reached the desk: a ticket still
        being posted is waited for, briefly (a slash command is answered within 3 seconds)."""
        deadline = time.monotonic() + constants.DESK_NUMBER_WAIT
        while True:
            ticket = await self._book.by_number(number)
            if ticket is None or ticket.number != number:
                return None
            if ticket.thread is not None:
                return ticket
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(constants.DESK_NEW_TICKET_POLL)

    async def _ticket_of(self, thread: str) -> Ticket | None:
        """The ticket of ``thread``; Slack may deliver a press on a new ticket before its
        post's answer (and so its thread) reached the desk: then wait for it, briefly, and
        raise :class:`ThreadNotRecordedError` if this worker still has a thread to record."""
        found = await self._book.by_thread(thread)
        deadline = time.monotonic() + constants.DESK_NEW_TICKET_WAIT
        # Several workers: the one posting it may be another, so any unknown thread waits.
        posting = self._shared or self._tickets_posting
        while found is None and posting and time.monotonic() < deadline:
            await asyncio.sleep(constants.DESK_NEW_TICKET_POLL)
            found = await self._book.by_thread(thread)
        if found is None and self._tickets_posting:
            # Still unknown, while a ticket this worker posted waits for the store to record
            # its thread: not "no handoff" (that answer would be final), but "not yet".
            raise ThreadNotRecordedError(f"thread {thread} may be a ticket not recorded yet")
        return found

    async def _post(self, ticket: Ticket, item: dict[str, Any], *, look: bool) -> str | None:
        assert self._board is not None
        if item["kind"] == "ticket":
            if look:  # posted before (by a worker that died, or lost its claim meanwhile)?
                found = await self._board.find_ticket(ticket)
                if found is not None:
                    log.warning("ticket #%s was posted already: its thread is kept", ticket.number)
                    return found
            return await self._board.post_ticket(ticket)
        if item["kind"] == "line":
            mention = item.get("mention")
            await self._board.post_in_thread(
                ticket,
                str(item["text"]),
                mention="channel" if mention == "channel" else "agent" if mention else None,
            )
            return None
        if item["kind"] == "show":
            await self._board.update_ticket(ticket)
            return None
        if item["kind"] == "translation":
            if self._copilot is not None:
                translated = await self._copilot.translate(
                    str(item["text"]),
                    source=ticket.language,
                    target=self._copilot.desk_language,
                    slots=ticket.slots,
                )
                if translated is not None:  # else skipped: the original is in the thread
                    await self._board.post_in_thread(ticket, f"{TRANSLATION_LABEL} {translated}")
            return None
        text, files = await self._customer_content(ticket, item)
        await self._board.post_in_thread(ticket, text, from_customer=True, files=files)
        return None

    async def _customer_content(
        self, ticket: Ticket, item: dict[str, Any]
    ) -> tuple[str, list[FileBlob]]:
        lines = [str(item.get("text") or "")] if item.get("text") else []
        files: list[FileBlob] = []
        for raw in item.get("attachments") or ():
            attachment = Attachment.from_dict(raw)
            source = self._sources.get(ticket.channel)
            if attachment.kind in _FILE_KINDS and source is not None:
                try:
                    files.append(await source.fetch(attachment))
                    continue
                except PermanentError as err:
                    log.warning(
                        "a %s for ticket %s is gone: %s", attachment.kind, ticket.number, err
                    )
            lines.append(_describe(attachment))
        return "\n".join(lines), files

    # --- helpers -------------------------------------------------------------------------

    def _lock(self, cid: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The conversation's lock: never taken by a path the customer's turn calls (it
        holds it already), and never held while the conversation is changed (intervene)."""
        return self._locks.hold(cid)

    async def _may_act(self, user: str) -> bool:
        assert self._board is not None
        try:
            return await self._board.is_agent(user)
        except KefuError as err:
            log.warning("could not check whether %s is an agent: %s", user, err)
            return False

    async def _name(self, user: str) -> str:
        assert self._board is not None
        try:
            return await self._board.display_name(user)
        except KefuError as err:
            log.warning("could not look up %s's name: %s", user, err)
            return "a colleague"

    async def _tell(self, user: str, text: str) -> None:
        assert self._board is not None
        await self._board.tell(user, text)

    @staticmethod
    async def _quietly(call: Any) -> None:
        try:
            await call
        except KefuError as err:
            log.warning("the board refused an update: %s", err)


def _new_ticket(state: ConversationState, *, number: int, reason: str, now: float) -> Ticket:
    latest = state.latest_message or {}
    transcript = list(state.transcript)
    text = latest.get("text")
    if isinstance(text, str) and text and (not transcript or transcript[-1] != ("user", text)):
        transcript.append(("user", text[: constants.TRANSCRIPT_CHARS]))
    intent = (latest.get("intent") or {}).get("name")
    sentiment = latest.get("sentiment")
    profile = state.profile
    name = " ".join(str(profile[k]) for k in ("first_name", "last_name") if profile.get(k))
    return Ticket(
        conversation_id=state.conversation_id,
        number=number,
        channel=state.channel,
        customer=name
        or str(profile.get("name") or f"{state.channel} visitor {state.sender_id[:6]}"),
        language=state.language or "en",
        reason=reason,
        opened_at=now,
        intent=str(intent) if intent else None,
        sentiment=float(sentiment) if isinstance(sentiment, int | float) else None,
        slots={
            k: v
            for k, v in state.slots.items()
            if isinstance(v, str | int | float)
            and not isinstance(v, bool)
            and k not in _HIDDEN_SLOTS
        },
        transcript=transcript[-constants.DESK_TRANSCRIPT_TURNS :],
    )


def _describe(attachment: Attachment) -> str:
    if attachment.kind == "location":
        return f"[location {attachment.data.get('latitude')}, {attachment.data.get('longitude')}]"
    if attachment.kind == "contact":
        data = attachment.data
        return f"[contact {data.get('first_name', '')} {data.get('phone_number', '')}]"
    return f"[{attachment.kind} {attachment.name or ''} that could not be fetched]".replace(
        "  ", " "
    )


def _first(name: str) -> str:
    return name.split()[0] if name.split() else name


def _minutes(seconds: float) -> str:
    minutes = int(max(seconds, 0) // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
