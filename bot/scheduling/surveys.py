"""The satisfaction survey: ``KEFU_CSAT_DELAY`` after a handoff is resolved, rate it 1 to 5.

The survey is the ``pattern_handoff_survey`` flow: a rating (buttons 1 to 5, offered by the
bot, so the pressed payload counts), then an optional comment. Its actions record the rating
as a ``CsatAnswered`` desk event and the comment as a ``CsatCommented`` one; the survey shows
them on the ticket in Slack.

One survey per handoff: the job's id names the ticket, and the job applies once (the store's
once-only key), so a reopen-and-resolve does not ask again; a reopen before it went cancels
it. An agent can resolve without a survey (the ticket then says so, and no job is set).
"""

from __future__ import annotations

import logging

from bot import constants
from bot.desk.tickets import Ticket
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.turn import Turn
from bot.events import CsatAnswered, CsatCommented, Event
from bot.ports import ScheduledJob
from bot.scheduling.conversations import Conversations
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tickets import DeskTickets
from bot.state import ConversationState

log = logging.getLogger(__name__)

KIND = "handoff_survey"
PATTERN = "pattern_handoff_survey"


def job_id(conversation_id: str, number: int) -> str:
    """The survey job's id: one per ticket."""
    return f"{KIND}:{conversation_id}:{number}"


class Surveys:
    """Asks for a rating after each resolved handoff and shows the answers on the ticket."""

    def __init__(
        self,
        conversations: Conversations,
        desk: DeskTickets,
        executor: FlowExecutor,
        *,
        delay: float,
    ) -> None:
        self.conversations = conversations
        self.desk = desk
        self.executor = executor
        self.delay = delay
        self.scheduler: Scheduler | None = None

    def install(self, scheduler: Scheduler) -> None:
        """Register the survey job; watch tickets and customer turns."""
        self.scheduler = scheduler
        # A few hours late the handoff is still fresh in the customer's mind; a day is not.
        scheduler.register(KIND, self.ask, misfire_grace=constants.SURVEY_MISFIRE_GRACE)
        self.desk.watch(self.on_ticket)
        self.conversations.add_listener(self.on_turn)

    async def on_ticket(self, ticket: Ticket, move: str) -> None:
        """A resolve (with a survey) sets the survey; a reopen before it went cancels it."""
        assert self.scheduler is not None
        cid = ticket.conversation_id
        if move == "resolve" and ticket.survey and ticket.resolved_at is not None:
            await self.scheduler.schedule(
                ScheduledJob(
                    id=job_id(cid, ticket.number),
                    kind=KIND,
                    run_at=ticket.resolved_at + self.delay,
                    conversation_id=cid,
                    data={"number": ticket.number},
                )
            )
        elif move in {"reopen", "resolve"}:
            await self.scheduler.cancel(job_id(cid, ticket.number))

    async def ask(self, job: ScheduledJob) -> None:
        """Start the survey in the conversation, once, unless the handoff went on since."""
        assert job.conversation_id is not None
        cid, number = job.conversation_id, int(job.data.get("number", 0))
        desk, executor = self.desk, self.executor

        async def start_survey(turn: Turn) -> None:
            ticket = await desk.ticket(cid)
            if ticket is None or ticket.number != number or ticket.is_open or not ticket.survey:
                return  # reopened, resolved without a survey, or a new handoff since
            if turn.state.paused or any(f["flow_id"] == PATTERN for f in turn.state.stack):
                return
            executor.push_pattern(turn, PATTERN)
            await executor.advance(turn)

        if await self.conversations.update(cid, start_survey, once_key=job.id) is None:
            log.info("survey %s: conversation gone or asked before; dropped", job.id)

    async def on_turn(self, state: ConversationState, events: list[Event]) -> None:
        """Show the survey answers a customer turn recorded on the ticket."""
        for event in events:
            if isinstance(event, CsatAnswered):
                await self.desk.record_survey(state.conversation_id, score=event.score)
            elif isinstance(event, CsatCommented):
                await self.desk.record_survey(state.conversation_id, comment=event.comment)
