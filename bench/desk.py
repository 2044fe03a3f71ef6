"""The Slack desk under load: relay latency both ways at N concurrent handoffs, beside REST.

    python bench/desk.py [--handoffs 50] [--rounds 5] [--project DIR]

Starts ``kefu run`` (``python -m bot.cli run``) as a subprocess with a fresh SQLite file,
Telegram in webhook mode and the Slack desk over HTTP, pointed at the Telegram and Slack
doubles (``bot.testing``) that run in this process beside the load client. Then:

1. N Telegram customers ask for a person (``/human``); their N tickets appear in the
   handoff channel and an agent claims each (a signed ``block_actions`` request).
2. For each round, all N customers write at once; latency is from posting the Telegram update
   to the Slack double receiving the ``chat.postMessage`` that relays it into the ticket's
   thread. Then the agents answer all N at once (signed ``message`` events); latency is from
   posting the event to the Telegram double receiving the ``sendMessage`` that delivers it.
3. In the same run, N REST customers take turns of the reference shop's order-tracking script
   (``POST /webhooks/rest/webhook``); latency is the HTTP round trip.

kefu posts to a Slack channel about once a second (``channels/slack_pace.py``, Slack's own
limit), and all tickets share one channel: with N handoffs writing at once, the last of a
round's N messages reaches its thread about N seconds after the first, and the customer →
thread figures show it.

Prints p50/p99 per path and a last line of JSON; asserts nothing. The doubles share this
process's event loop with the load client, so the figures include the doubles' own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bot import constants  # noqa: E402
from bot.testing import slack_double as sd  # noqa: E402
from bot.testing.slack_double import SlackApiDouble  # noqa: E402
from bot.testing.telegram_double import TelegramBotApiDouble  # noqa: E402

TOKEN = "424242:BENCH-TOKEN"
TELEGRAM_SECRET = "bench-secret-token"
SIGNING_SECRET = "bench-signing-secret"
DESK = "C0BENCHDESK"
AGENT = "U0BENCHAGENT"
FIRST_CHAT = 8_000_000
SCRIPT = ("where is my order", "KF-10001", "alice@example.com", "thanks")
TIMEOUT = 30.0


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _figures(name: str, samples: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples]
    return {
        "path": name,
        "samples": len(ms),
        "p50_ms": round(_percentile(ms, 50), 1),
        "p99_ms": round(_percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def kefu_server(
    project: Path, db_path: Path, telegram: TelegramBotApiDouble, slack: SlackApiDouble
) -> AsyncIterator[str]:
    """``kefu run`` in a subprocess with Telegram and the Slack desk at the doubles."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_URL": url,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_HANDOFF_CHANNEL": DESK,
        "SLACK_API_BASE_URL": slack.base_url,
        "PTB_TIMEDELTA": "true",
    }
    with tempfile.TemporaryFile() as log_file:
        process = _spawn(project, port, env, log_file)
        try:
            await _wait_healthy(url, process, log_file)
            yield url
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


def _spawn(project: Path, port: int, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bot.cli", "run", "--project", str(project)]
    return subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def _until(check: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


async def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_file: Any) -> None:
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log_file.seek(0)
                err = log_file.read().decode(errors="replace")
                raise SystemExit(f"kefu exited with {process.returncode}:\n{err[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise SystemExit("kefu did not become healthy in 180 s")


class Arrivals:
    """When each text reached a double: one follower indexes new calls as they come, so
    that waiting costs the doubles (which share this process) next to nothing."""

    def __init__(self, calls: list[Any], method: str, key: Callable[[Any], str | None]) -> None:
        self.calls = calls
        self.method = method
        self.key = key
        self.limit = TIMEOUT
        self.seen = 0
        self.at: dict[str, float] = {}

    async def wait(self, text: str) -> float:
        async with asyncio.timeout(self.limit):
            while text not in self.at:
                for call in self.calls[self.seen :]:
                    if call.method == self.method and (found := self.key(call)) is not None:
                        self.at.setdefault(found, call.at)
                self.seen = len(self.calls)
                if text not in self.at:
                    await asyncio.sleep(0.002)
        return self.at[text]


class Load:
    """The load client: Telegram customers and Slack agents, against one kefu server."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        telegram: TelegramBotApiDouble,
        slack: SlackApiDouble,
    ) -> None:
        self.session = session
        self.url = url
        self.telegram = telegram
        self.slack = slack
        self.update_id = 0
        self.tickets: dict[int, str] = {}
        self.in_thread = Arrivals(slack.calls, "chat.postMessage", lambda c: c.params.get("text"))
        self.on_telegram = Arrivals(telegram.calls, "sendMessage", lambda c: c.params.get("text"))

    async def customer_says(self, chat: int, text: str) -> float:
        """Post a Telegram update; the monotonic time it was sent."""
        self.update_id += 1
        sender = {"id": chat, "is_bot": False, "first_name": f"C{chat}", "language_code": "en"}
        update: dict[str, Any] = {
            "update_id": self.update_id,
            "message": {
                "message_id": self.update_id,
                "date": int(time.time()),
                "chat": {"id": chat, "type": "private", "first_name": f"C{chat}"},
                "from": sender,
                "text": text,
            },
        }
        if text.startswith("/"):
            update["message"]["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text)}
            ]
        sent = time.monotonic()
        headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        async with self.session.post(
            self.url + "/webhooks/telegram", json=update, headers=headers
        ) as response:
            response.raise_for_status()
        return sent

    async def slack_post(self, body: bytes) -> float:
        sent = time.monotonic()
        async with self.session.post(
            self.url + "/slack/events", data=body, headers=sd.signed(SIGNING_SECRET, body)
        ) as response:
            response.raise_for_status()
        return sent

    async def hand_off(self, chats: Sequence[int]) -> None:
        await asyncio.gather(*(self.customer_says(chat, "/human") for chat in chats))
        paced = len(chats) * constants.SLACK_POST_INTERVAL  # the tickets share one channel
        await _until(lambda: len(self._tickets()) >= len(chats), TIMEOUT * 4 + paced)
        for message in self._tickets():
            chat = int(str(message["text"]).split(": C", 1)[1].split(" ", 1)[0])
            self.tickets[chat] = str(message["ts"])
        await asyncio.gather(
            *(
                self.slack_post(
                    sd.block_action(user=AGENT, channel=DESK, message_ts=ts, action_id="kefu_claim")
                )
                for ts in self.tickets.values()
            )
        )
        expected = {chat: 2 for chat in chats}  # "connecting you", then the agent joined
        await _until(
            lambda: all(self._sent_count(chat) >= n for chat, n in expected.items()), TIMEOUT * 4
        )

    def _tickets(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages if m["channel"] == DESK and not m.get("thread_ts")]

    def _sent_count(self, chat: int) -> int:
        return len([m for m in self.telegram.sent_messages if m["chat"]["id"] == chat])

    async def customer_to_thread(self, chat: int, text: str) -> float:
        sent = await self.customer_says(chat, text)
        return await self.in_thread.wait(f"*C{chat}:* {text}") - sent

    async def agent_to_customer(self, chat: int, text: str) -> float:
        event = sd.thread_reply(channel=DESK, user=AGENT, text=text, thread_ts=self.tickets[chat])
        sent = await self.slack_post(sd.event_callback(event))
        return await self.on_telegram.wait(text) - sent

    async def rest_turns(self, sender: str, turns: int) -> list[float]:
        samples = []
        for step in range(turns):
            body = {"sender": sender, "message": SCRIPT[step % len(SCRIPT)]}
            start = time.monotonic()
            async with self.session.post(self.url + "/webhooks/rest/webhook", json=body) as r:
                r.raise_for_status()
                await r.read()
            samples.append(time.monotonic() - start)
        return samples


async def run(handoffs: int, rounds: int, project: Path) -> dict[str, Any]:
    users = {AGENT: {"id": AGENT, "name": "agent", "profile": {"real_name": "Bench Agent"}}}
    with tempfile.TemporaryDirectory(prefix="kefu-bench-desk-") as tmp:
        async with (
            TelegramBotApiDouble(token=TOKEN) as telegram,
            SlackApiDouble(members={DESK: [AGENT]}, users=users) as slack,
            kefu_server(project, Path(tmp) / "kefu.db", telegram, slack) as url,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=handoffs * 2)) as session,
        ):
            load = Load(session, url, telegram, slack)
            load.in_thread.limit = TIMEOUT + handoffs * constants.SLACK_POST_INTERVAL
            chats = [FIRST_CHAT + i for i in range(handoffs)]
            started = time.monotonic()
            await load.hand_off(chats)
            setup = time.monotonic() - started
            inbound: list[float] = []
            outbound: list[float] = []
            for r in range(rounds):
                inbound += await asyncio.gather(
                    *(load.customer_to_thread(chat, f"q{r}-{chat}") for chat in chats)
                )
                outbound += await asyncio.gather(
                    *(load.agent_to_customer(chat, f"a{r}-{chat}") for chat in chats)
                )
            rest = await asyncio.gather(
                *(load.rest_turns(f"bench-{i}", rounds * 2) for i in range(handoffs))
            )
    return {
        "handoffs": handoffs,
        "rounds": rounds,
        "setup_s": round(setup, 2),
        "results": [
            _figures("customer message -> post in the Slack thread", inbound),
            _figures("agent reply -> delivered on Telegram", outbound),
            _figures("plain REST turn", [s for samples in rest for s in samples]),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handoffs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--project", type=Path, default=REPO_ROOT)
    args = parser.parse_args()
    report = asyncio.run(run(args.handoffs, args.rounds, args.project.resolve()))
    print(
        f"{report['handoffs']} concurrent handoffs, {report['rounds']} rounds "
        f"(handing off and claiming all took {report['setup_s']} s)"
    )
    for row in report["results"]:
        print(
            f"  {row['path']:<48} p50 {row['p50_ms']:>8.1f} ms   p99 {row['p99_ms']:>8.1f} ms"
            f"   ({row['samples']} samples)"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
