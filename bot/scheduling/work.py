"""The scheduled work ``kefu run`` does, wired together: the scheduler and its jobs."""

from __future__ import annotations

from typing import Protocol

from bot import constants
from bot.dialogue.default_actions import DefaultActions
from bot.dialogue.executor import FlowExecutor
from bot.domain import Domain
from bot.ports import ConversationRepository, JobStore, RetentionStore
from bot.responses import ResponseRenderer
from bot.scheduling import retention
from bot.scheduling.conversations import Conversations
from bot.scheduling.handoffs import HandoffTimers
from bot.scheduling.notices import Notices
from bot.scheduling.retention import Retention
from bot.scheduling.scheduler import Scheduler
from bot.scheduling.sessions import SessionExpiry
from bot.scheduling.surveys import Surveys
from bot.scheduling.tickets import DeskTickets
from bot.settings import Settings


class SchedulingStore(ConversationRepository, JobStore, RetentionStore, Protocol):
    """What the scheduled work keeps in the store: its jobs, the conversations that notices and
    reminders read, and retention's deletions."""


class ScheduledWork:
    """Retention (when ``KEFU_RETENTION_DAYS`` is set), session expiry, notices, reminders;
    with a desk, the handoffs' waiting times and satisfaction surveys.

    ``sync_every``: seconds between reads of the jobs table for jobs stored elsewhere (by
    workers that are not the leader, on PostgreSQL).
    """

    def __init__(
        self,
        conversations: Conversations,
        store: SchedulingStore,
        *,
        settings: Settings,
        domain: Domain,
        desk: DeskTickets | None = None,
        sync_every: float = constants.SCHEDULER_SYNC_SECONDS,
    ) -> None:
        self.scheduler = Scheduler(store, sync_every=sync_every)
        self.handoffs: HandoffTimers | None = None
        self.surveys: Surveys | None = None
        if desk is not None:
            # The jobs' own executor speaks responses and starts the survey's flow; it is
            # stateless, like the turn runner's (everything lives in the conversation's state).
            executor = FlowExecutor(
                renderer=ResponseRenderer(domain),
                action_runner=None,
                defaults=DefaultActions(answer_backend=None),
            )
            self.handoffs = HandoffTimers(
                conversations,
                desk,
                executor,
                sla=settings.handoff_sla,
                max_wait=settings.handoff_max_wait,
                hours=settings.business_hours,
            )
            self.surveys = Surveys(conversations, desk, executor, delay=settings.csat_delay)
            self.handoffs.install(self.scheduler)
            self.surveys.install(self.scheduler)
        self.retention = (
            Retention(
                store,
                days=settings.retention_days,
                forget=[desk.forget_cached] if desk is not None else [],
            )
            if settings.retention_days is not None
            else None
        )
        self.sessions = SessionExpiry(conversations, domain.session_config)
        self.notices = Notices(conversations, store, ResponseRenderer(domain))
        if self.retention is not None:
            self.retention.install(self.scheduler)
        self.sessions.install(self.scheduler)
        self.notices.install(self.scheduler)

    async def start(self) -> None:
        """Start firing (stored jobs included); schedule the daily retention run."""
        await self.scheduler.start()
        if self.retention is not None:
            await self.retention.start(self.scheduler)
        else:  # retention was switched off since the last run: its job goes
            await self.scheduler.cancel(retention.JOB_ID)

    async def shutdown(self) -> None:
        """Stop firing; running jobs finish, stored ones wait for the next start."""
        await self.scheduler.shutdown()
