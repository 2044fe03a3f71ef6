"""Handoff waiting times: a ticket nobody claims is raised again; a quiet claimed one, too.

Jobs per handoff, each with a stable id (kind, conversation, ticket number), so a
restart replaces rather than duplicates them:

- ``handoff_sla``: ``KEFU_HANDOFF_SLA`` after the handoff (counted from the next opening when
  it came outside business hours) a ticket still waiting is raised again in Slack for every
  agent, and the customer hears it takes longer than usual.
- ``handoff_max_wait``: ``KEFU_HANDOFF_MAX_WAIT`` after it, the customer is offered to leave a
  message (a flow takes it to the ticket's thread) or to go back to the bot.
- ``handoff_idle``: a claimed conversation where neither the customer nor the agent wrote for
  ``KEFU_HANDOFF_SLA`` reminds the agent in the thread (once per quiet spell).
- ``handoff_withdrawn``: due at once when a waiting customer went back to the bot; records the
  handoff's end (``HandoffResolved`` without an agent) in the conversation, which the desk
  cannot do from inside the customer's turn.

A setting of 0 turns its timers off. Claiming cancels the first two, resolving all three;
each job also checks the ticket when it fires. What the customer hears goes through the turn
runner's ``update``: under the conversation's lock, in the conversation's outbox, once per job
(the store's once-only key).
"""

from __future__ import annotations

import logging
import time

from bot.desk.tickets import Ticket
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.turn import Turn
from bot.events import HandoffResolved
from bot.hours import BusinessHours
from bot.ports import ScheduledJob
from bot.scheduling.conversations import Conversations
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.tickets import DeskTickets, is_claimed, is_waiting

log = logging.getLogger(__name__)

SLA = "handoff_sla"
MAX_WAIT = "handoff_max_wait"
IDLE = "handoff_idle"
WITHDRAWN = "handoff_withdrawn"
KINDS = (SLA, MAX_WAIT, IDLE)


def job_id(kind: str, conversation_id: str, number: int) -> str:
    """A handoff timer's id: one of each kind per ticket."""
    return f"{kind}:{conversation_id}:{number}"


class HandoffTimers:
    """Sets, fires and cancels the waiting-time jobs of every handoff."""

    def __init__(
        self,
        conversations: Conversations,
        desk: DeskTickets,
        executor: FlowExecutor,
        *,
        sla: float,
        max_wait: float,
        hours: BusinessHours | None = None,
    ) -> None:
        self.conversations = conversations
        self.desk = desk
        self.executor = executor
        self.sla = sla
        self.max_wait = max_wait
        self.hours = hours
        self.scheduler: Scheduler | None = None

    def install(self, scheduler: Scheduler) -> None:
        """Register the handoff jobs; watch the desk's tickets."""
        self.scheduler = scheduler
        # However late (kefu was down): a ticket still waiting still needs raising, and the
        # job checks that it does before it says anything.
        for kind, handler in (
            (SLA, self.overdue),
            (MAX_WAIT, self.too_long),
            (IDLE, self.idle),
            (WITHDRAWN, self.withdrawn),
        ):
            scheduler.register(kind, handler, misfire_grace=None)
        self.desk.watch(self.on_ticket)

    # --- the desk's side ----------------------------------------------------------------

    async def on_ticket(self, ticket: Ticket, move: str) -> None:
        """Set or cancel the ticket's timers after a change."""
        now = time.time()
        if move == "opened":
            start = self._counting_from(ticket.opened_at)
            await self._set(SLA, ticket, start + self.sla)
            await self._set(MAX_WAIT, ticket, start + self.max_wait)
        elif move == "release":  # waiting again: the clock starts over
            start = self._counting_from(now)
            await self._cancel(ticket, IDLE)
            await self._set(SLA, ticket, start + self.sla)
            await self._set(MAX_WAIT, ticket, start + self.max_wait)
        elif move in {"claim", "transfer", "reopen"}:
            await self._cancel(ticket, SLA, MAX_WAIT)
            await self._set(IDLE, ticket, now + self.sla)
        elif move == "with_bot":  # the customer chose to leave a message
            await self._cancel(ticket, MAX_WAIT)
        elif move == "resolve":
            await self._cancel(ticket, *KINDS)
        elif move == "withdraw":
            await self._cancel(ticket, *KINDS)
            await self._set(WITHDRAWN, ticket, now)

    def _counting_from(self, moment: float) -> float:
        """Waiting counts from ``moment``, or from the next opening outside business hours."""
        opening = self.hours.next_opening(moment) if self.hours is not None else None
        return max(moment, opening.timestamp()) if opening is not None else moment

    async def _set(self, kind: str, ticket: Ticket, run_at: float) -> None:
        assert self.scheduler is not None
        if kind in KINDS and (self.max_wait if kind == MAX_WAIT else self.sla) <= 0:
            return  # 0 turns that timer off
        cid = ticket.conversation_id
        await self.scheduler.schedule(
            ScheduledJob(
                id=job_id(kind, cid, ticket.number),
                kind=kind,
                run_at=run_at,
                conversation_id=cid,
                data={"number": ticket.number},
            )
        )

    async def _cancel(self, ticket: Ticket, *kinds: str) -> None:
        assert self.scheduler is not None
        for kind in kinds:
            await self.scheduler.cancel(job_id(kind, ticket.conversation_id, ticket.number))

    # --- the jobs -----------------------------------------------------------------------

    async def overdue(self, job: ScheduledJob) -> None:
        """Nobody claimed the ticket in time: tell the customer, raise it for every agent."""
        cid, number = _target(job)
        ticket = await self.desk.ticket(cid)
        if not is_waiting(ticket, number):
            return
        assert ticket is not None
        # A customer who chose to leave a message talks to the bot: they are not told again.
        response = None if ticket.with_bot else "utter_human_handoff_delayed"
        if not await self._say(job, response, number):
            return
        waited = _minutes(time.time() - ticket.opened_at)
        await self.desk.escalate(
            cid,
            number=number,
            text=f"Handoff #{number} has waited {waited} for an agent. Can someone claim it?",
        )

    async def too_long(self, job: ScheduledJob) -> None:
        """Waited too long: the customer may leave a message or go back to the bot."""
        cid, number = _target(job)
        ticket = await self.desk.ticket(cid)
        if not is_waiting(ticket, number) or ticket is None or ticket.with_bot:
            return
        if not await self._say(job, "utter_human_handoff_max_wait", number):
            return
        waited = _minutes(time.time() - ticket.opened_at)
        await self.desk.escalate(
            cid,
            number=number,
            text=f"The customer has waited {waited}: they were offered to leave a message "
            "or go back to the bot.",
            mention=False,
        )

    async def idle(self, job: ScheduledJob) -> ScheduledJob | None:
        """Remind the agent of a quiet conversation; check again after the next quiet spell."""
        cid, number = _target(job)
        ticket = await self.desk.ticket(cid)
        if not is_claimed(ticket, number) or ticket is None:
            return None
        now = time.time()
        last = ticket.last_activity_at or ticket.claimed_at or job.run_at
        if last + self.sla > now:  # someone wrote since: count from then
            return _again(job, last + self.sla)
        if job.data.get("reminded_for") == last:  # reminded for this quiet spell already
            return _again(job, now + self.sla)
        # Once per quiet spell, in this process or another (the once-only key names it).
        spell = f"{job.id}@{last:.3f}"
        if await self.conversations.update(cid, _nothing, once_key=spell) is None:
            log.info("%s: conversation gone or reminded elsewhere; no more reminders", job.id)
            return None
        await self.desk.remind_agent(
            cid,
            number=number,
            text=f"Neither you nor the customer wrote for {_minutes(now - last)}. "
            "Resolve the handoff when the customer needs nothing more.",
        )
        return _again(job, now + self.sla, reminded_for=last)

    async def withdrawn(self, job: ScheduledJob) -> None:
        """Record that the customer ended the handoff by going back to the bot (once)."""
        cid, number = _target(job)

        async def record(turn: Turn) -> None:
            turn.emit(HandoffResolved(agent=None))

        ticket = await self.desk.ticket(cid)
        if ticket is not None and ticket.number == number and ticket.withdrawn:
            await self.conversations.update(cid, record, once_key=job.id)

    async def _say(self, job: ScheduledJob, response: str | None, number: int) -> bool:
        """Say ``response`` under the conversation's lock, once for this job; False when the
        job was applied before, the conversation is gone or an agent took the ticket since."""
        assert job.conversation_id is not None
        cid = job.conversation_id
        desk, executor = self.desk, self.executor
        still_waiting = True

        async def say(turn: Turn) -> None:
            nonlocal still_waiting
            still_waiting = is_waiting(await desk.ticket(cid), number)
            if still_waiting and response is not None:
                executor.utter(turn, response)

        said = await self.conversations.update(cid, say, once_key=job.id)
        if said is None:
            log.info("%s: conversation gone or job applied before; dropped", job.id)
        return said is not None and still_waiting


async def _nothing(turn: Turn) -> None:
    """A change that changes nothing (the job only records that it ran)."""


def _target(job: ScheduledJob) -> tuple[str, int]:
    assert job.conversation_id is not None
    return job.conversation_id, int(job.data.get("number", 0))


def _again(job: ScheduledJob, run_at: float, **data: object) -> ScheduledJob:
    return ScheduledJob(
        id=job.id,
        kind=job.kind,
        run_at=run_at,
        conversation_id=job.conversation_id,
        data={**job.data, **data},
    )


def _minutes(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
