"""Session expiry: an idle session ends on time, as the domain's ``session_config`` says.

When a session starts, a job is set for ``session_expiration_time`` later. When it fires and
the customer wrote since, it is set again for that much after their last message (one job per
quiet period, not one write per message). When it fires on a quiet session, the session ends:
its flows are cancelled, slots are reset unless ``carry_over_slots_to_new_session``, and the
customer's next message starts a new session. A session an agent holds (handoff) waits.
"""

from __future__ import annotations

import logging
import time

from bot.dialogue.stack import is_user_frame
from bot.dialogue.turn import Turn
from bot.domain import SessionConfig
from bot.events import Event, FlowCancelled, SessionStarted
from bot.ports import ScheduledJob
from bot.scheduling.conversations import Conversations
from bot.scheduling.scheduler import Scheduler
from bot.state import ConversationState

log = logging.getLogger(__name__)

KIND = "session_expiry"


def job_id(conversation_id: str) -> str:
    """The session-expiry job's id: one per conversation."""
    return f"session:{conversation_id}"


class SessionExpiry:
    """Ends idle sessions on time; disabled when ``session_expiration_time`` is 0."""

    def __init__(self, conversations: Conversations, config: SessionConfig) -> None:
        self.conversations = conversations
        self.config = config
        self.scheduler: Scheduler | None = None

    @property
    def seconds(self) -> float:
        """Idle seconds after which a session ends."""
        return self.config.session_expiration_time * 60

    def install(self, scheduler: Scheduler) -> None:
        """Register the session-expiry job and listen for new sessions (unless disabled)."""
        if self.seconds <= 0:
            return
        self.scheduler = scheduler
        # Ending a session late is harmless, and never ending it is what this job is for.
        scheduler.register(KIND, self.run, misfire_grace=None)
        self.conversations.add_listener(self.on_turn)

    async def on_turn(self, state: ConversationState, events: list[Event]) -> None:
        """A new session: its end is due ``seconds`` after the customer's message."""
        if self.scheduler is None or not any(isinstance(e, SessionStarted) for e in events):
            return
        cid = state.conversation_id
        await self.scheduler.schedule(
            ScheduledJob(
                id=job_id(cid),
                kind=KIND,
                run_at=state.last_active_at + self.seconds,
                conversation_id=cid,
            )
        )

    async def run(self, job: ScheduledJob) -> ScheduledJob | None:
        """End the session if it was quiet long enough; else return the next check."""
        assert job.conversation_id is not None
        next_check: float | None = None
        seconds = self.seconds

        async def end_if_idle(turn: Turn) -> None:
            nonlocal next_check
            state, now = turn.state, time.time()
            if not state.session_started_at:
                return  # ended already (or never started)
            if state.paused:
                next_check = now + seconds
                return
            if state.last_active_at + seconds > now:
                next_check = state.last_active_at + seconds
                return
            end_session(turn, carry_over=self.config.carry_over_slots_to_new_session)

        if await self.conversations.update(job.conversation_id, end_if_idle) is None:
            log.info("session expiry: conversation %s is gone; job dropped", job.conversation_id)
        if next_check is None:
            return None
        return ScheduledJob(
            id=job.id, kind=KIND, run_at=next_check, conversation_id=job.conversation_id
        )


def end_session(turn: Turn, *, carry_over: bool) -> None:
    """Cancel the session's flows, reset its slots unless carried over, mark it ended."""
    state = turn.state
    for frame in reversed(state.stack):
        if is_user_frame(frame):
            turn.emit(FlowCancelled(flow_id=frame["flow_id"], step_id=frame.get("step_id")))
    state.stack.clear()
    if not carry_over:
        turn.reset_all_slots()
    state.session_started_at = 0.0
