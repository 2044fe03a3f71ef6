"""Custom action runners: rasa-sdk actions in-process, or on a rasa-sdk action server.

Both runners send the action call Rasa sends (``next_action``, ``sender_id``, ``tracker``,
``domain``, ``version``) and hand back the ``{"events", "responses"}`` rasa-sdk returns, so an
action sees exactly rasa-sdk's ``Tracker``, ``CollectingDispatcher`` and domain either way, and
a project can move its actions to a separate server without touching them. Every way a call
can fail becomes :class:`~bot.errors.ActionError` naming the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import pkgutil
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import rasa_sdk
from rasa_sdk import utils as rasa_utils
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import Action, ActionExecutionRejection
from yarl import URL

from bot.errors import ActionError, Problem, ProjectError
from bot.ports import ActionResult, ActionRunner

__all__ = [
    "DEFAULT_ACTION_TIMEOUT",
    "InProcessActionRunner",
    "RemoteActionRunner",
    "action_call",
    "create_action_runner",
]

logger = logging.getLogger(__name__)

DEFAULT_ACTION_TIMEOUT = 30.0
"""Seconds a custom action may take before the turn gives up on it."""
DEFAULT_MAX_CONNECTIONS = 100
"""Concurrent connections the remote runner keeps open to the action server."""
ACTION_LIST_TIMEOUT = 5.0
"""Seconds the remote runner waits for the server's ``GET /actions`` listing."""
REMOTE_ACTION_PREFIXES = ("action_", "validate_")
"""Names a remote runner assumes the server has while it has no listing (Rasa's convention)."""


def action_call(
    name: str,
    *,
    tracker: dict[str, Any],
    domain: dict[str, Any],
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The request body Rasa posts to an action server to run ``name``.

    ``version`` is the installed rasa-sdk's, so the SDK's version check stays quiet. An
    ``idempotency_key`` goes into the tracker's ``latest_message``, where the action reads it.
    """
    if idempotency_key is not None:
        latest = {**(tracker.get("latest_message") or {}), "idempotency_key": idempotency_key}
        tracker = {**tracker, "latest_message": latest}
    return {
        "next_action": name,
        "sender_id": tracker.get("sender_id"),
        "tracker": tracker,
        "domain": domain,
        "version": rasa_sdk.__version__,
    }


def _parse_result(name: str, body: Any) -> ActionResult:
    """Check the ``{"events", "responses"}`` shape rasa-sdk answers with."""
    if not isinstance(body, dict):
        raise ActionError(f"custom action '{name}' returned {type(body).__name__}, not an object")
    events = body.get("events") or []
    responses = body.get("responses") or []
    for key, items in (("events", events), ("responses", responses)):
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ActionError(f"custom action '{name}' returned malformed {key}: {items!r:.200}")
    if not all(isinstance(e.get("event"), str) for e in events):
        raise ActionError(f"custom action '{name}' returned an event without an 'event' name")
    return ActionResult(events=events, responses=responses)


class InProcessActionRunner:
    """Runs a package of rasa-sdk actions inside kefu, through rasa-sdk's own ``ActionExecutor``.

    Synchronous actions (most rasa-sdk actions: ``def run``) run in a worker thread so that a
    slow database or HTTP call inside one does not stall every other conversation; a timed-out
    synchronous action cannot be stopped, its thread finishes in the background. ``async def
    run`` actions run on the event loop and are cancelled on timeout.
    """

    def __init__(
        self,
        package: str,
        *,
        search_path: Path | None = None,
        timeout: float = DEFAULT_ACTION_TIMEOUT,
        partial: bool = False,
    ) -> None:
        """Import ``package`` (a package or a single module) and register its actions.

        ``search_path`` (a project directory) is on ``sys.path`` only while importing. A module
        of the same name imported earlier from elsewhere (another project's ``actions``) is
        replaced, so each runner gets its own project's actions. Raises ``ProjectError`` with
        the file and line when the package cannot be imported. With ``partial``, a submodule
        that cannot be imported (it needs a library that is not installed, such as ``rasa``
        itself) is left out instead, its problem kept in ``load_problems`` for the caller to
        report; only the actions it defines are missing.
        """
        self.package = package
        self.timeout = timeout
        self.load_problems: list[Problem] = []
        self._partial = partial
        self._executor = ActionExecutor()
        with _on_sys_path(search_path):
            if search_path is not None:
                _forget_foreign_module(package, search_path)
            try:
                if partial:
                    self._import_each(package)
                else:
                    self._executor.register_package(package)
            except SystemExit as exc:
                # rasa-sdk logs an ImportError and exits the process; the ImportError is
                # the context of its SystemExit.
                cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
                raise _load_error(package, cause) from cause
            except Exception as exc:
                raise _load_error(package, exc) from exc
        self._keep_own_actions()

    def _import_each(self, package: str) -> None:
        """Import ``package``, then each of its submodules on its own, noting the failures:
        one problem per cause (many modules failing on the same missing import are one)."""
        failed: dict[tuple[str, int | None, str], list[str]] = {}
        pending = [importlib.import_module(package)]
        while pending:
            parent = pending.pop()
            folders = list(getattr(parent, "__path__", ()))
            for module in pkgutil.iter_modules(folders, prefix=parent.__name__ + "."):
                try:
                    imported = importlib.import_module(module.name)
                except Exception as exc:  # any import-time failure leaves that module out
                    problem = _load_error(module.name, exc).problems[0]
                    cause = problem.message.partition("': ")[2]
                    failed.setdefault((problem.file, problem.line, cause), []).append(module.name)
                    continue
                if module.ispkg:
                    pending.append(imported)
        for (file, line, cause), modules in failed.items():
            names = ", ".join(sorted(modules))
            message = f"cannot load custom actions in {names}: {cause}"
            self.load_problems.append(Problem(file, line, message))

    @classmethod
    def from_project(
        cls, project_dir: Path, *, timeout: float = DEFAULT_ACTION_TIMEOUT, partial: bool = False
    ) -> InProcessActionRunner | None:
        """The runner for a project's ``actions/`` package or ``actions.py`` module, if any."""
        package_dir = project_dir / "actions"
        has_package = package_dir.is_dir() and any(package_dir.glob("*.py"))
        if not has_package and not (project_dir / "actions.py").is_file():
            return None
        return cls("actions", search_path=project_dir, timeout=timeout, partial=partial)

    def _keep_own_actions(self) -> None:
        """Keep only this package's actions, as its modules define them now.

        rasa-sdk registers every ``Action`` subclass ever imported in the process, by name, so
        another project's actions (or this project's classes from an earlier import of the same
        name) would otherwise mix in or shadow the current ones.
        """
        self._executor.actions.clear()
        for cls in rasa_utils.all_subclasses(Action):
            module_name = cls.__module__
            in_package = module_name == self.package or module_name.startswith(self.package + ".")
            current = getattr(sys.modules.get(module_name), cls.__name__, None) is cls
            if in_package and current and not inspect.isabstract(cls):
                try:
                    self._executor.register_action(cls)
                except Exception as exc:  # the action's constructor failed
                    error = _load_error(f"{module_name}.{cls.__name__}", exc)
                    if not self._partial:
                        raise error from exc
                    self.load_problems.extend(error.problems)

    @property
    def action_names(self) -> frozenset[str]:
        """The names of the custom actions found in the project's package."""
        return frozenset(self._executor.actions)

    async def start(self) -> None:
        """Nothing to do: the actions were imported when the runner was built."""

    async def close(self) -> None:
        """Nothing to release: in-process actions hold no connection of kefu's."""

    def knows(self, name: str) -> bool:
        """True if the project's package has an action called ``name``."""
        return name in self._executor.actions

    async def run(
        self,
        name: str,
        *,
        tracker: dict[str, Any],
        domain: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Run ``name`` through ``ActionExecutor.run``; raise ``ActionError`` on any failure."""
        function = self._executor.actions.get(name)
        if function is None:
            raise ActionError(f"unknown custom action '{name}' (not in package '{self.package}')")
        call = action_call(name, tracker=tracker, domain=domain, idempotency_key=idempotency_key)
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                if inspect.iscoroutinefunction(function):
                    result = await self._executor.run(call)
                else:
                    result = await asyncio.to_thread(_run_in_own_loop, self._executor, call)
        except TimeoutError as exc:
            if deadline.expired():
                message = f"custom action '{name}' timed out after {self.timeout:g} s"
                raise ActionError(message) from None
            raise ActionError(f"custom action '{name}' failed: TimeoutError: {exc}") from exc
        except ActionExecutionRejection as exc:
            raise ActionError(f"custom action '{name}' rejected execution: {exc.message}") from exc
        except Exception as exc:
            message = f"custom action '{name}' failed: {type(exc).__name__}: {exc}"
            raise ActionError(message) from exc
        if result is None:
            raise ActionError(f"custom action '{name}' produced no result")
        try:
            # The same JSON round trip a remote server imposes: what passes here can be stored.
            body = json.loads(json.dumps(result.model_dump()))
        except (TypeError, ValueError) as exc:
            raise ActionError(
                f"custom action '{name}' returned values that are not JSON: {exc}"
            ) from exc
        return _parse_result(name, body)


def _run_in_own_loop(executor: ActionExecutor, call: dict[str, Any]) -> Any:
    """Run a synchronous action's executor call on this worker thread's own loop."""
    return asyncio.run(executor.run(call))


@contextlib.contextmanager
def _on_sys_path(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    entry = str(path.resolve())
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _forget_foreign_module(package: str, search_path: Path) -> None:
    """Unload ``package`` and its submodules if they were imported from outside ``search_path``."""
    loaded = sys.modules.get(package)
    if loaded is None:
        return
    root = search_path.resolve()
    own = {root / package, root / f"{package}.py"}
    locations = [*getattr(loaded, "__path__", ()), getattr(loaded, "__file__", None)]
    if any(loc and Path(loc).resolve() in own for loc in locations):
        return
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def _load_error(package: str, exc: BaseException) -> ProjectError:
    """A ``ProjectError`` pointing at the file and line where importing ``package`` failed."""
    file, line = package, None
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        user_frames = [f for f in frames if "importlib" not in f.filename]
        if user_frames:
            file, line = user_frames[-1].filename, user_frames[-1].lineno
    message = f"cannot load custom actions '{package}': {type(exc).__name__}: {exc}"
    return ProjectError([Problem(file=file, line=line, message=message)])


class RemoteActionRunner:
    """Runs actions on a rasa-sdk action server (Rasa's ``action_endpoint``).

    ``url`` is the webhook, e.g. ``http://127.0.0.1:5055/webhook``. One HTTP session is opened
    on first use and kept; call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_ACTION_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._names: frozenset[str] | None = None
        self._names_requested = False
        self._names_lock = asyncio.Lock()

    @property
    def actions_url(self) -> str:
        """The server's action listing, beside the webhook (``/webhook`` → ``/actions``)."""
        return str(URL(self.url).join(URL("actions")))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    def knows(self, name: str) -> bool:
        """Whether the server lists ``name``; before a listing arrives, Rasa's name prefixes.

        The listing is fetched by :meth:`load_action_names`, which the first :meth:`run` calls;
        call it at startup for a precise answer from the start.
        """
        if self._names is not None:
            return name in self._names
        return name.startswith(REMOTE_ACTION_PREFIXES)

    async def load_action_names(self) -> frozenset[str] | None:
        """Fetch the server's ``GET /actions`` once; None when it failed or listed nothing."""
        async with self._names_lock:
            if not self._names_requested:
                self._names_requested = True
                self._names = await self._fetch_action_names()
        return self._names

    async def _fetch_action_names(self) -> frozenset[str] | None:
        try:
            async with self._client().get(
                self.actions_url, timeout=aiohttp.ClientTimeout(total=ACTION_LIST_TIMEOUT)
            ) as response:
                response.raise_for_status()
                body = await response.json(content_type=None)
            names = frozenset(str(item["name"]) for item in body)
        except (aiohttp.ClientError, TimeoutError, ValueError, TypeError, KeyError) as exc:
            logger.warning("cannot list actions at %s: %s", self.actions_url, exc)
            return None
        return names or None

    async def run(
        self,
        name: str,
        *,
        tracker: dict[str, Any],
        domain: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """POST the action call (with an ``Idempotency-Key`` header when given a key); map
        every HTTP, network and format failure to ``ActionError``."""
        await self.load_action_names()
        call = action_call(name, tracker=tracker, domain=domain, idempotency_key=idempotency_key)
        try:
            data = json.dumps(call)
        except (TypeError, ValueError) as exc:
            raise ActionError(f"cannot send '{name}': its tracker is not JSON: {exc}") from exc
        headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async with self._client().post(self.url, data=data, headers=headers) as response:
                status = response.status
                text = await response.text()
        except TimeoutError:
            raise ActionError(
                f"action server {self.url} did not finish '{name}' within {self.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ActionError(
                f"action server {self.url} unreachable running '{name}': {exc}"
            ) from exc
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        if status == 200:
            if body is None:
                raise ActionError(
                    f"action server {self.url} answered '{name}' with no JSON body: {text:.200}"
                )
            return _parse_result(name, body)
        detail = body.get("error") if isinstance(body, dict) else None
        detail = detail or text[:200] or "no details"
        if status == 404:
            raise ActionError(f"action server {self.url} has no action '{name}': {detail}")
        if status == 400:
            raise ActionError(f"custom action '{name}' rejected execution: {detail}")
        raise ActionError(f"action server {self.url} answered {status} running '{name}': {detail}")

    async def start(self) -> None:
        """Learn the server's actions up front (``GET /actions``), not in a first turn."""
        await self.load_action_names()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def create_action_runner(
    *,
    project_dir: Path,
    endpoint: str | None,
    timeout: float = DEFAULT_ACTION_TIMEOUT,
    partial: bool = False,
) -> ActionRunner | None:
    """The runner a project needs: remote when ``endpoint`` is set, else its own ``actions``
    (``partial``: see :class:`InProcessActionRunner`)."""
    if endpoint:
        return RemoteActionRunner(endpoint, timeout=timeout)
    return InProcessActionRunner.from_project(project_dir, timeout=timeout, partial=partial)
