"""What the LLM backend costs beyond the model itself, and whether a slow model stalls others.

    python bench/llm.py [--turns 300] [--conversations 100] [--delay 0.5] [--project DIR]

The model is the OpenAI double (``python -m bot.testing.openai_double``) in its own process on
127.0.0.1, reached through the real ``openai`` client, always answering the same sentence; the
agent is the reference shop's, in process, over a fresh SQLite file, with ``KEFU_LLM_ROUTING``
at its default (``unsure``). Each measured turn is a question no flow covers ("what is the
capital of France?"), so it makes two model calls: the commands call (whose answer holds no
command, so offline understanding's "search" stands) and the grounded answer. Printed:

1. overhead: with the model answering at once, each LLM turn is paired with the same turn on
   an agent without an LLM (same understanding, same store); the difference is what the LLM
   path adds: two HTTP round trips through the openai client, the double's own handling, and
   kefu's work. p50/p99 over ``--turns`` pairs; then kefu's in-process part alone (prompt
   building with knowledge retrieval and redaction, parsing and cleaning commands, guard
   rails), without HTTP;
2. throughput with the double answering each call in ``--delay`` seconds and ``--conversations``
   conversations at once, each sending its LLM turns back to back: turns/s, and the latency of
   plain turns (a button, no model) of other conversations sent meanwhile — they must not wait
   for the slow model.

Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bot.app import App
from bot.dialogue import commands as cmd
from bot.dialogue.turn import Turn
from bot.events import UserMessage
from bot.interpreter import Parse
from bot.llm import guard
from bot.llm.commands import clean, parse_commands
from bot.ports import AnswerRequest
from bot.project import load_project
from bot.settings import Settings
from bot.state import ConversationState

REPO_ROOT = Path(__file__).resolve().parent.parent
QUESTION = "what is the capital of France?"
ANSWER = "I'm sorry, our shop can only help with orders, shipping, returns and payments."
GOAL_P99_MS = 10.0


@contextlib.asynccontextmanager
async def model_server(delay: float) -> AsyncIterator[str]:
    """The double in a process of its own (its CPU is not kefu's); yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.testing.openai_double",
        "--port", str(port), "--delay", str(delay), "--text", ANSWER,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    base_url = (await process.stdout.readline()).decode().strip().split("=", 1)[1]
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        await process.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def message(cid: str, text: str, payload: str | None = None) -> UserMessage:
    return UserMessage(
        channel="rest", conversation_id=cid, sender_id=cid, text=text, payload=payload
    )


async def build(project_dir: Path, db: Path, base_url: str | None) -> App:
    env = {"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "KEFU_LLM_TIMEOUT": "15"}
    if base_url is not None:
        env |= {"OPENAI_BASE_URL": base_url, "KEFU_LLM_MODEL": "bench-model"}
    settings = Settings.from_env(env, env_file=None)
    agent = await App.create(load_project(project_dir), settings=settings)
    logging.getLogger().setLevel(logging.ERROR)  # rasa-sdk's import turned INFO logging on
    return agent


async def raw_round_trips(base_url: str, turns: int) -> list[float]:
    """Two bare aiohttp POSTs of a chat completion to the double: the floor any client pays."""
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(turns + 20):
            start = time.perf_counter()
            for _ in range(2):
                async with session.post(f"{base_url}/chat/completions", json=body) as response:
                    await response.read()
            times.append((time.perf_counter() - start) * 1000)
    return times[20:]


async def overhead(with_llm: App, without: App, turns: int, base_url: str) -> None:
    for i in range(20):  # warm up: connections, caches
        await with_llm.turns.process(message(f"rest:warm{i}", QUESTION))
        await without.turns.process(message(f"rest:warm{i}", QUESTION))
    added: list[float] = []
    for i in range(turns):
        start = time.perf_counter()
        await without.turns.process(message(f"rest:over{i}", QUESTION))
        offline = time.perf_counter() - start
        start = time.perf_counter()
        result = await with_llm.turns.process(message(f"rest:over{i}", QUESTION))
        added.append((time.perf_counter() - start - offline) * 1000)
        assert any(m.text == ANSWER for m in result.messages), "the LLM answer did not arrive"
    print("LLM turn (2 model calls), model answering at once in its own process:")
    print(
        f"  added to the same turn without an LLM: p50 {percentile(added, 0.5):.2f} ms, "
        f"p99 {percentile(added, 0.99):.2f} ms (goal p99 < {GOAL_P99_MS:.0f} ms; includes 2 "
        "loopback HTTP round trips and the double's handling)"
    )
    raw = await raw_round_trips(base_url, turns)
    print(
        f"  two bare HTTP round trips to the same double (aiohttp): p50 {percentile(raw, 0.5):.2f}"
        f" ms, p99 {percentile(raw, 0.99):.2f} ms"
    )


def in_process(agent: App, turns: int) -> None:
    """The LLM backend's own work for one turn, without HTTP: both prompts, parse, clean, guard."""
    assert agent.llm is not None
    router, answerer = agent.llm.router, agent.llm.answerer
    project = agent.project
    state = ConversationState(conversation_id="rest:ip", channel="rest", sender_id="ip")
    state.transcript = [("user", "hi, my mail is mei@example.com"), ("bot", "Hello!")] * 3
    state.slots = {"contact": "mei@example.com", "order_id": "KF-10001"}
    parse = Parse(text=QUESTION, language="en", intent=None, confidence=0.0)
    times: list[float] = []
    for _ in range(turns):
        start = time.perf_counter()
        turn = Turn(state=state, domain=project.domain, flows=project.flows)
        messages, redactor = router.prompt(turn, parse)
        commands = parse_commands(
            "```\n- provide info\n- set slot contact [EMAIL_1]\n```", restore=redactor.restore
        )
        clean(commands, flows=project.flows, domain=project.domain, slots=turn.slots(), stack=[])
        guard.is_injection(QUESTION)
        request = AnswerRequest(
            text=QUESTION,
            language="en",
            kind="search",
            conversation_id="rest:ip",
            history=tuple(state.transcript),
            slots=state.slots,
        )
        prompt = answerer.prompt("answer", request)
        guard.leaks(ANSWER, prompt.instructions)
        guard.promises(ANSWER, [p.text for p in prompt.passages])
        prompt.redactor.restore(ANSWER)
        times.append((time.perf_counter() - start) * 1000)
        assert messages and isinstance(commands[0], cmd.Search)
    print(
        f"  of which in-process work (prompts, retrieval, redaction, commands, guard rails): "
        f"p50 {percentile(times, 0.5):.2f} ms, p99 {percentile(times, 0.99):.2f} ms"
    )


async def throughput(agent: App, delay: float, conversations: int, per: int) -> None:
    plain: list[float] = []
    stop = asyncio.Event()

    async def llm_conversation(n: int) -> int:
        for k in range(per):
            await agent.turns.process(message(f"rest:load{n}", f"{QUESTION} ({k})"))
        return per

    async def plain_conversation() -> None:
        i = 0
        while not stop.is_set():
            start = time.perf_counter()
            await agent.turns.process(
                message(f"rest:side{i}", "/track_order", payload="/track_order")
            )
            plain.append((time.perf_counter() - start) * 1000)
            i += 1
            await asyncio.sleep(0.05)

    side = asyncio.create_task(plain_conversation())
    await asyncio.sleep(1.0)
    alone = list(plain)  # the plain turns before the load starts: the baseline
    plain.clear()
    cpu = time.process_time()
    start = time.perf_counter()
    done = await asyncio.gather(*(llm_conversation(n) for n in range(conversations)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    stop.set()
    await side
    turns = sum(done)
    floor = 2 * delay * per
    print(
        f"{conversations} conversations at once, model answering each call in "
        f"{delay * 1000:.0f} ms (2 calls a turn):"
    )
    print(
        f"  {turns} LLM turns in {elapsed:.2f} s: {turns / elapsed:.1f} turns/s "
        f"(ideal with no waiting on each other: {conversations / (2 * delay):.1f} turns/s; "
        f"a conversation's own floor {floor:.1f} s)"
    )
    print(
        f"  kefu's process used {cpu:.2f} s of CPU in those {elapsed:.2f} s "
        f"({cpu / turns * 1000:.1f} ms a turn, plain side turns included)"
    )
    print(
        f"  plain turns (a button, no model) of another conversation, alone: n={len(alone)}, "
        f"p50 {percentile(alone, 0.5):.1f} ms, max {max(alone):.1f} ms"
    )
    print(
        f"  the same during the load: n={len(plain)}, "
        f"p50 {percentile(plain, 0.5):.1f} ms, p99 {percentile(plain, 0.99):.1f} ms, "
        f"max {max(plain):.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--per-conversation", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--project", type=Path, default=REPO_ROOT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        async with model_server(0.0) as base_url:
            with_llm = await build(args.project, Path(tmp) / "llm.db", base_url)
            without = await build(args.project, Path(tmp) / "offline.db", None)
            await overhead(with_llm, without, args.turns, base_url)
            in_process(with_llm, args.turns)
            await with_llm.close()
            await without.close()
        async with model_server(args.delay) as base_url:
            agent = await build(args.project, Path(tmp) / "load.db", base_url)
            await throughput(agent, args.delay, args.conversations, args.per_conversation)
            await agent.close()


if __name__ == "__main__":
    asyncio.run(main())
