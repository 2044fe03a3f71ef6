"""Custom action runners against real rasa-sdk: its executor in-process, its server remotely."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from rasa_sdk import Tracker

from bot.actions import InProcessActionRunner, RemoteActionRunner, create_action_runner
from bot.errors import ActionError, ProjectError
from bot.ports import ActionResult, ActionRunner
from bot.state import ConversationState
from bot.testing.cluster import free_port
from bot.tracker import tracker_for

FIXTURES = Path(__file__).parent / "action_fixtures"
DOMAIN: dict[str, Any] = {
    "slots": {"order_id": {"type": "text"}, "delay": {"type": "float"}},
    "responses": {"utter_order_saved": [{"text": "Saved."}]},
}


EVENTS: list[dict[str, Any]] = [
    {
        "event": "user",
        "timestamp": 1.0,
        "channel": "telegram",
        "conversation_id": "telegram:5550123",
        "sender_id": "5550123",
        "text": "where is my parcel?",
    }
]


def _state(**slots: Any) -> ConversationState:
    return ConversationState(
        conversation_id="telegram:5550123",
        channel="telegram",
        sender_id="5550123",
        slots=dict(slots),
        latest_message={
            "text": "where is my parcel?",
            "intent": {"name": "track_order", "confidence": 0.93},
            "entities": [],
        },
        latest_action="action_listen",
        stack=[{"type": "flow", "flow_id": "track_order", "step_id": "ask_id"}],
    )


def _tracker(**slots: Any) -> dict[str, Any]:
    return tracker_for(_state(**slots), events=EVENTS, domain_slots=DOMAIN["slots"])


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    """A real rasa-sdk action server serving tests/action_fixtures/shop_actions."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(FIXTURES)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "shop_actions", "--port", str(port)],
        cwd=FIXTURES,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rasa-sdk action server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def in_process() -> InProcessActionRunner:
    return InProcessActionRunner("shop_actions", search_path=FIXTURES, timeout=0.5)


@pytest.fixture
async def remote(action_server: str) -> AsyncIterator[RemoteActionRunner]:
    runner = RemoteActionRunner(action_server, timeout=0.5)
    yield runner
    await runner.close()


@pytest.fixture(params=["in_process", "remote"])
def runner(request: pytest.FixtureRequest) -> ActionRunner:
    result: ActionRunner = request.getfixturevalue(request.param)
    return result


def test_tracker_json_is_what_rasa_sdk_reads() -> None:
    tracker_json = _tracker(order_id="A-1")
    tracker = Tracker.from_dict(tracker_json)

    assert tracker.sender_id == "telegram:5550123"
    assert tracker.slots == {"order_id": "A-1", "delay": None}
    assert tracker.latest_message["intent"] == {"name": "track_order", "confidence": 0.93}
    assert tracker.latest_message["intent_ranking"] == []
    assert tracker.get_latest_input_channel() == "telegram"
    assert tracker.latest_action_name == "action_listen"
    assert tracker.stack == [{"type": "flow", "flow_id": "track_order", "step_id": "ask_id"}]
    assert tracker.active_loop == {}
    assert not tracker.is_paused()
    assert tracker_json["latest_action"] == {"action_name": "action_listen"}
    assert tracker_json["latest_input_channel"] == "telegram"
    assert tracker_json["latest_event_time"] == 1.0


def test_tracker_json_for_a_new_conversation() -> None:
    state = ConversationState(conversation_id="rest:alice", channel="rest", sender_id="alice")
    tracker = Tracker.from_dict(tracker_for(state))

    assert tracker.slots == {}
    assert tracker.latest_message["text"] is None
    assert tracker.events == []
    assert tracker.latest_action_name is None


async def test_slots_and_response_with_buttons(runner: ActionRunner) -> None:
    result = await runner.run("action_remember_order", tracker=_tracker(), domain=DOMAIN)

    slots = [(e["event"], e["name"], e["value"]) for e in result.events]
    assert slots == [("slot", "order_id", "42"), ("slot", "order_status", "shipped")]
    [message] = result.responses
    assert message["response"] == "utter_order_saved"
    assert message["text"] == "Order 42 saved."
    assert message["buttons"] == [{"title": "Track it", "payload": "/track_order"}]


async def test_action_reads_tracker_and_domain(runner: ActionRunner) -> None:
    result = await runner.run("action_echo", tracker=_tracker(order_id="A-1"), domain=DOMAIN)

    assert [r["text"] for r in result.responses] == [
        "telegram:5550123|A-1|where is my parcel?|track_order|telegram|delay,order_id"
    ]
    assert result.events[0]["name"] == "echoed"
    assert result.events[0]["value"] is True


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("action_fail", "inventory database is down"),
        ("action_reject", "not while an order is open"),
        ("action_not_json", "JSON"),
        ("action_nope", "action_nope"),
    ],
)
async def test_failures_become_action_errors(
    runner: ActionRunner, action: str, reason: str
) -> None:
    with pytest.raises(ActionError, match=action) as caught:
        await runner.run(action, tracker=_tracker(), domain=DOMAIN)
    assert reason in str(caught.value)


async def test_slow_action_times_out(runner: ActionRunner) -> None:
    with pytest.raises(ActionError, match="action_slow"):
        await runner.run("action_slow", tracker=_tracker(delay=3), domain=DOMAIN)


async def test_action_returning_garbage(in_process: InProcessActionRunner) -> None:
    with pytest.raises(ActionError, match="action_returns_number"):
        await in_process.run("action_returns_number", tracker=_tracker(), domain=DOMAIN)


async def test_blocking_action_does_not_stall_the_loop(in_process: InProcessActionRunner) -> None:
    slow = asyncio.create_task(
        in_process.run("action_slow_sync", tracker=_tracker(delay=0.3), domain=DOMAIN)
    )
    await asyncio.sleep(0)  # the slow action is running in its thread
    quick = asyncio.create_task(in_process.run("action_echo", tracker=_tracker(), domain=DOMAIN))
    done, _ = await asyncio.wait({slow, quick}, return_when=asyncio.FIRST_COMPLETED)

    assert done == {quick}  # a loop the blocking action stalled would finish it first
    assert quick.result().responses
    assert await slow == ActionResult()


def test_in_process_knows_only_its_own_actions(in_process: InProcessActionRunner) -> None:
    assert in_process.knows("action_remember_order")
    assert in_process.knows("action_slow_sync")
    assert not in_process.knows("action_nope")
    assert not in_process.knows("action_listen")


async def test_remote_knows_the_listed_actions(remote: RemoteActionRunner) -> None:
    assert remote.knows("action_anything")
    assert remote.knows("validate_order_form")
    assert not remote.knows("utter_greet")

    names = await remote.load_action_names()

    assert names is not None
    assert "action_echo" in names
    assert remote.knows("action_echo")
    assert not remote.knows("action_anything")


async def test_the_idempotency_key_reaches_the_action(runner: ActionRunner) -> None:
    tracker = _tracker()
    keyed = await runner.run("action_say_key", tracker=tracker, domain=DOMAIN, idempotency_key="k1")
    plain = await runner.run("action_say_key", tracker=tracker, domain=DOMAIN)

    assert [r["text"] for r in keyed.responses + plain.responses] == ["k1", "None"]
    assert "idempotency_key" not in tracker["latest_message"]  # the caller's tracker is its own


async def test_an_action_server_gets_the_idempotency_key_as_a_header() -> None:
    seen: list[str | None] = []

    async def webhook(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Idempotency-Key"))
        return web.json_response({"events": [], "responses": []})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([{"name": "action_echo"}])

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/actions", listing)
    server = web.AppRunner(app)
    await server.setup()
    port = free_port()
    await web.TCPSite(server, "127.0.0.1", port).start()
    runner = RemoteActionRunner(f"http://127.0.0.1:{port}/webhook", timeout=2)
    try:
        await runner.run("action_echo", tracker=_tracker(), domain=DOMAIN, idempotency_key="k2")
        await runner.run("action_echo", tracker=_tracker(), domain=DOMAIN)
    finally:
        await runner.close()
        await server.cleanup()
    assert seen == ["k2", None]


async def test_server_down() -> None:
    runner = RemoteActionRunner(f"http://127.0.0.1:{free_port()}/webhook", timeout=2)
    try:
        assert await runner.load_action_names() is None
        assert runner.knows("action_echo")
        with pytest.raises(ActionError, match="unreachable"):
            await runner.run("action_echo", tracker=_tracker(), domain=DOMAIN)
    finally:
        await runner.close()


@pytest.fixture(autouse=True)
def _restore_actions_modules() -> Iterator[None]:
    """Leave ``actions`` in ``sys.modules`` as it was: projects loaded here replace it."""
    saved = {n: m for n, m in sys.modules.items() if n == "actions" or n.startswith("actions.")}
    yield
    for name in [n for n in sys.modules if n == "actions" or n.startswith("actions.")]:
        del sys.modules[name]
    sys.modules.update(saved)


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


GREET = """
from rasa_sdk import Action

class ActionGreet(Action):
    def name(self):
        return "action_greet"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="{greeting}")
        return []
"""


async def test_project_with_actions_package(tmp_path: Path) -> None:
    project = _project(
        tmp_path, {"actions/__init__.py": "", "actions/greet.py": GREET.format(greeting="hi")}
    )
    runner = create_action_runner(project_dir=project, endpoint=None)

    assert isinstance(runner, InProcessActionRunner)
    assert runner.action_names == {"action_greet"}
    result = await runner.run("action_greet", tracker=_tracker(), domain=DOMAIN)
    assert result.responses[0]["text"] == "hi"
    assert str(project.resolve()) not in sys.path


async def test_two_projects_keep_their_own_actions(tmp_path: Path) -> None:
    first = _project(tmp_path / "a", {"actions.py": GREET.format(greeting="first")})
    second = _project(
        tmp_path / "b", {"actions/__init__.py": "", "actions/greet.py": GREET.format(greeting="2")}
    )
    one = InProcessActionRunner.from_project(first)
    two = InProcessActionRunner.from_project(second)
    assert one is not None
    assert two is not None

    texts = [
        (await r.run("action_greet", tracker=_tracker(), domain=DOMAIN)).responses[0]["text"]
        for r in (one, two)
    ]
    assert texts == ["first", "2"]


def test_project_without_actions(tmp_path: Path) -> None:
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "shop.json").write_text("{}")

    assert create_action_runner(project_dir=tmp_path, endpoint=None) is None


def test_endpoint_selects_remote(tmp_path: Path) -> None:
    runner = create_action_runner(project_dir=tmp_path, endpoint="http://127.0.0.1:5055/webhook")

    assert isinstance(runner, RemoteActionRunner)
    assert runner.actions_url == "http://127.0.0.1:5055/actions"


@pytest.mark.parametrize(
    ("source", "line"),
    [("def broken(:\n", 1), ("import json\nraise RuntimeError('bad config')\n", 2)],
)
def test_broken_package_is_a_project_error(tmp_path: Path, source: str, line: int) -> None:
    project = _project(tmp_path, {"actions/__init__.py": "", "actions/broken.py": source})

    with pytest.raises(ProjectError) as caught:
        InProcessActionRunner.from_project(project)

    [problem] = caught.value.problems
    assert problem.file.endswith("broken.py")
    assert problem.line == line


def test_missing_package_is_a_project_error() -> None:
    with pytest.raises(ProjectError, match="no_such_actions"):
        InProcessActionRunner("no_such_actions", search_path=FIXTURES)


def _actions_package(root: Path, action: str) -> None:
    package = root / "actions"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "mine.py").write_text(
        "from rasa_sdk import Action\n\n"
        f"class Mine(Action):\n    def name(self):\n        return {action!r}\n\n"
        "    def run(self, dispatcher, tracker, domain):\n        return []\n",
        encoding="utf-8",
    )


def test_a_project_nested_in_another_keeps_its_own_actions(tmp_path: Path) -> None:
    outer, inner = tmp_path / "shop", tmp_path / "shop" / "tests" / "projects" / "small"
    _actions_package(outer, "action_outer")
    _actions_package(inner, "action_inner")
    for _ in range(2):  # load them alternately, as one test process does
        inner_runner = InProcessActionRunner.from_project(inner)
        outer_runner = InProcessActionRunner.from_project(outer)
        assert inner_runner is not None and outer_runner is not None
        assert inner_runner.action_names == {"action_inner"}
        assert outer_runner.action_names == {"action_outer"}
