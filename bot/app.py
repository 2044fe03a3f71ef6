"""The composition root: the one place that builds kefu's parts and wires them together.

settings → store → interpreter (trained, or loaded from the cache) → action runner →
knowledge, answer backend and LLM → desk → dialogue manager → outbox → turn runner → channels
→ scheduler and HTTP operations. ``kefu run``, ``kefu shell``, ``kefu test`` and the tests all
build through here; it is the only module of the core that imports the ``channels`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bot import constants
from bot.channel import Channel
from bot.delivery import Outbox
from bot.desk.triggers import HandoffTriggers
from bot.dialogue.default_actions import DefaultActions
from bot.dialogue.executor import FlowExecutor
from bot.dialogue.manager import DialogueManager
from bot.interpreter import Interpreter
from bot.locks import ConversationLocks, LocalLocks
from bot.ports import ActionRunner, AnswerBackend, ConversationStore, HandoffDesk
from bot.project import Project
from bot.responses import ResponseRenderer
from bot.settings import Settings
from bot.turns import TurnRunner

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from bot.api import NotifyApi
    from bot.desk import FileSource
    from bot.desk.copilot import DeskCopilot
    from bot.llm.backend import LLM
    from bot.llm.client import LLMClient
    from bot.scaling import Workers
    from bot.scheduling.work import ScheduledWork
    from bot.server import Hook
    from channels.terminal import TerminalChannel
    from channels.webchat import Greeting

__all__ = [
    "App",
    "Server",
    "build",
    "build_server",
    "cache_dir",
    "notify_api",
    "operations",
    "scheduled_work",
    "shell_channel",
]


class App:
    """One project's running parts. Build it with :meth:`create`; :meth:`start` it once the
    channels are added; :meth:`close` it at the end (it closes the store too)."""

    def __init__(
        self,
        project: Project,
        *,
        settings: Settings,
        store: ConversationStore,
        interpreter: Interpreter,
        action_runner: ActionRunner | None,
        dialogue: DialogueManager,
        outbox: Outbox,
        turns: TurnRunner,
        llm: LLM | None = None,
    ) -> None:
        self.project = project
        self.settings = settings
        self.store = store
        self.interpreter = interpreter
        self.action_runner = action_runner
        self.dialogue = dialogue
        """What the bot does with a message (``dialogue.executor`` runs the flows)."""
        self.outbox = outbox
        """Delivery: the channels' registry, the outbox and its retry loop."""
        self.turns = turns
        """The turn runner: ``process``, ``handle``, ``update``, ``intervene``, ``set_slots``."""
        self.llm = llm

    @classmethod
    async def create(
        cls,
        project: Project,
        *,
        settings: Settings,
        store: ConversationStore | None = None,
        action_runner: ActionRunner | None = None,
        answer_backend: AnswerBackend | None = None,
        desk: HandoffDesk | None = None,
        locks: ConversationLocks | None = None,
    ) -> App:
        """Build the parts: train or load the models; default backends for what is not given.

        With a desk, the settings' handoff triggers (not understood N times, sentiment) apply.
        """
        from bot.actions import create_action_runner
        from bot.knowledge import KnowledgeAnswerer, KnowledgeBase, default_embedders
        from bot.llm.backend import build_llm
        from bot.store import open_store
        from bot.understanding.sentiment import analyzer

        cache = cache_dir(project, settings)
        knowledge = None
        if project.knowledge_dir is not None:
            knowledge = KnowledgeBase.from_directory(project.knowledge_dir)
        interpreter = await asyncio.to_thread(
            Interpreter.train,
            project.nlu,
            entity_names=project.domain.entities,
            intents=project.domain.intents,
            cache_dir=cache,
            cache_keep=settings.cache_keep,
            flows=project.flows.flows.values(),
            questions=knowledge.questions() if knowledge is not None else (),
            sentiment=analyzer(),
        )
        await asyncio.to_thread(analyzer().prepare)  # not during a first message
        if store is None:
            store = await open_store(settings.database_url)
        if action_runner is None:
            action_runner = create_action_runner(
                project_dir=project.root, endpoint=settings.action_endpoint
            )
        llm = None
        if answer_backend is None:
            if knowledge is not None:
                vectors = knowledge.with_vectors(default_embedders(), cache_dir=cache)
                await asyncio.to_thread(vectors.prepare)  # not during a first question
                answer_backend = KnowledgeAnswerer(knowledge)
            llm = build_llm(settings, project, knowledge=knowledge, offline=answer_backend)
        if llm is not None:
            answer_backend = llm.answerer
        executor = FlowExecutor(
            renderer=ResponseRenderer(project.domain),
            action_runner=action_runner,
            defaults=DefaultActions(
                answer_backend=answer_backend,
                desk=desk,
                hours=settings.business_hours,
                asks_model=llm is not None,
            ),
        )
        dialogue = DialogueManager(
            project,
            interpreter=interpreter,
            executor=executor,
            desk=desk,
            triggers=None
            if desk is None
            else HandoffTriggers(
                not_understood=settings.handoff_not_understood,
                sentiment_threshold=settings.handoff_sentiment,
            ),
            command_source=llm.router if llm is not None else None,
        )
        outbox = Outbox(store)
        turns = TurnRunner(
            project,
            store=store,
            locks=locks if locks is not None else LocalLocks(),  # an idle one is falsy
            dialogue=dialogue,
            outbox=outbox,
        )
        return cls(
            project,
            settings=settings,
            store=store,
            interpreter=interpreter,
            action_runner=action_runner,
            dialogue=dialogue,
            outbox=outbox,
            turns=turns,
            llm=llm,
        )

    def add_channel(self, channel: Channel) -> None:
        """Connect a channel: its messages come to the turn runner, replies go to its ``send``."""
        channel.attach(self.turns.handle)
        self.outbox.add_channel(channel)

    async def start(self) -> None:
        """Start the action runner (a remote one learns its actions up front) and the
        delivery retry loop."""
        if self.action_runner is not None:
            await self.action_runner.start()
        await self.outbox.start()

    async def close(self) -> None:
        """Stop the retry loop; close the action runner, the LLM client and the store."""
        await self.outbox.close()
        if self.action_runner is not None:
            await self.action_runner.close()
        if self.llm is not None:
            await self.llm.close()
        await self.store.close()


def cache_dir(project: Project, settings: Settings) -> Path:
    """Where trained models and knowledge vectors are kept: ``KEFU_CACHE_DIR``, else the
    project's ``.kefu/models``."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    return project.root / constants.CACHE_DIR / "models"


# --- kefu run ----------------------------------------------------------------------------


@dataclass
class Server:
    """What ``kefu run`` serves: the app, its channels, the scheduler, routes and hooks."""

    app: App
    channels: list[Channel]
    work: ScheduledWork
    routes: list[BaseRoute] = field(default_factory=list)
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None
    """What ``/health`` adds: the database and the leader, with several workers."""


async def build(
    project_dir: Path,
    settings: Settings,
    *,
    with_channels: bool = True,
    workers: Workers | None = None,
) -> tuple[App, list[Channel]]:
    """The app and the server's channels: REST, web chat, Telegram (with its token), and
    with ``SLACK_BOT_TOKEN`` the Slack desk. ``with_channels=False``: the app alone.
    ``workers``: one of several workers on PostgreSQL (``bot.scaling``), whose locks it takes."""
    from bot.project import load_project
    from bot.scaling import store_options
    from bot.store import open_store

    project = load_project(project_dir)
    store = await open_store(settings.database_url, **store_options(settings))
    greeting = ResponseRenderer(project.domain).greeting
    channels = _channels(store, settings, greeting) if with_channels else []
    # The desk changes a ticket under its conversation's lock: the turn runner's own.
    locks: ConversationLocks = workers.locks if workers is not None else LocalLocks()
    desk = None
    if with_channels and settings.slack_bot_token:
        from bot.desk import Desk

        desk = Desk(
            store=store,
            channels=[c.name for c in channels if c.pushes],
            file_channels=[c.name for c in channels if c.sends_files],
            locks=locks,
            shared=workers is not None,
        )
    if workers is not None:
        workers.check_states(store)
    app = await App.create(project, settings=settings, store=store, desk=desk, locks=locks)
    for channel in channels:
        app.add_channel(channel)
    if desk is not None:
        from channels.slack import SlackDeskChannel

        slack = SlackDeskChannel.from_settings(settings, desk)
        desk.connect(board=slack.board, conversations=app.turns, copilot=_copilot(app))
        for channel in channels:
            if channel.name in {"telegram", "webchat"}:
                desk.add_file_source(channel.name, cast("FileSource", channel))
        channels.append(slack)
    return app, channels


def _copilot(app: App) -> DeskCopilot | None:
    """The desk's copilot over the app's LLM client, when an LLM is configured."""
    if app.llm is None:
        return None
    from bot.desk.copilot import DeskCopilot

    answerer = app.llm.answerer
    return DeskCopilot(
        client=app.llm.client,
        templates=answerer.templates,
        desk_language=app.settings.desk_language,
        knowledge=answerer.knowledge,
    )


async def build_server(project_dir: Path, settings: Settings) -> Server:
    """What ``kefu run`` serves: :func:`build`'s app and channels, the scheduler, the notify
    API and the operations pages, with the hooks that start and stop them in order."""
    from bot.scaling import open_workers
    from bot.server import freeze_startup_heap

    workers = open_workers(settings)  # PostgreSQL: one of several workers
    app, channels = await build(project_dir, settings, workers=workers)
    llm = app.llm.client if app.llm is not None else None
    routes, on_startup, on_shutdown = operations(settings, channels, llm=llm)
    work = scheduled_work(app, shared=workers is not None)
    duties: tuple[Hook, Hook] = (work.start, work.shutdown)
    if workers is not None:  # the leader alone runs the scheduler and polls
        workers.wire(channels=channels, duties=[work])
        duties = (workers.start, workers.close)
    return Server(
        app=app,
        channels=channels,
        work=work,
        routes=[*routes, *notify_api(app, work).routes()],
        on_startup=[app.start, *on_startup, duties[0], freeze_startup_heap],
        on_shutdown=[duties[1], *on_shutdown, app.close],
        health=workers.health if workers is not None else None,
    )


def scheduled_work(app: App, *, shared: bool = False) -> ScheduledWork:
    """The scheduler and kefu's jobs, reaching conversations through the turn runner (and,
    with the Slack desk, its tickets: the handoffs' waiting times and surveys); ``shared``:
    other workers store jobs too, so the leader reads them often."""
    from bot.desk import Desk
    from bot.scheduling.work import ScheduledWork

    desk = app.dialogue.desk
    return ScheduledWork(
        app.turns,
        app.store,
        settings=app.settings,
        domain=app.project.domain,
        desk=desk if isinstance(desk, Desk) else None,
        sync_every=constants.SHARED_SCHEDULER_SYNC_SECONDS
        if shared
        else constants.SCHEDULER_SYNC_SECONDS,
    )


def notify_api(app: App, work: ScheduledWork) -> NotifyApi:
    """``POST /api/notify``, sending through ``work``'s notices."""
    from bot.api import NotifyApi

    return NotifyApi(
        work.notices,
        app.store,
        app.project.domain,
        token=app.settings.api_token,
        can_push=app.outbox.can_push,
    )


def _channels(store: ConversationStore, settings: Settings, greeting: Greeting) -> list[Channel]:
    from channels.rest import RestChannel
    from channels.webchat import WebChatChannel

    found: list[Channel] = [
        RestChannel(token=settings.rest_token),
        WebChatChannel(store, greeting=greeting),
    ]
    if settings.telegram_bot_token:
        from channels.telegram import TelegramChannel

        telegram = TelegramChannel.from_settings(settings, store)
        if telegram is not None:
            found.append(telegram)
    return found


def operations(
    settings: Settings, channels: Sequence[Channel], *, llm: LLMClient | None = None
) -> tuple[list[BaseRoute], list[Hook], list[Hook]]:
    """The dashboard (with ``KEFU_API_TOKEN``) and ``/metrics`` (with ``KEFU_METRICS_TOKEN``);
    both see ``llm``'s calls when there is one."""
    if not settings.api_token and not settings.metrics_token:
        return [], [], []
    from bot.reporting import Reporting

    reporting = Reporting(settings.database_url)
    routes: list[BaseRoute] = []
    if settings.api_token:
        from bot.dashboard import dashboard_routes
        from bot.reporting.usage import channel_of_turn

        if llm is not None:
            llm.observe(reporting.llm_usage.record)
        for channel in channels:
            channel.attach(channel_of_turn(channel.handler))
        routes += dashboard_routes(
            reporting,
            api_token=settings.api_token,
            containment_window=settings.containment_window,
        )
    if settings.metrics_token:
        from bot.metrics import Metrics, metrics_routes

        metrics = Metrics(reporting)
        if llm is not None:
            llm.observe(metrics.llm_call)
        for channel in channels:
            channel.attach(metrics.timed(channel.handler))
        routes += metrics_routes(metrics, token=settings.metrics_token)
    refresher: list[asyncio.Task[None]] = []

    async def start() -> None:
        await reporting.initialize()
        interval = constants.REPORTING_REFRESH_INTERVAL
        refresher.append(asyncio.create_task(reporting.keep_fresh(interval=interval)))

    async def stop() -> None:
        for task in refresher:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await reporting.close()

    return routes, [start], [stop]


def shell_channel() -> TerminalChannel:
    """The terminal channel ``kefu shell`` chats through."""
    from channels.terminal import TerminalChannel

    return TerminalChannel()
