"""The desk's copilot end to end: a Telegram customer, agents in Slack, an LLM behind kefu.

kefu runs as ``kefu run`` runs it, against the Telegram and Slack doubles and the OpenAI
double (the real ``openai`` client on 127.0.0.1), in English and Chinese.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from bot.desk.desk import DRAFT_LABEL, NO_LLM, SENT_LABEL, TRANSLATION_LABEL
from bot.events import AgentMessage
from bot.testing import slack_double as sd
from bot.testing.openai_double import OpenAIDouble, RecordedRequest, Reply
from tests.desk_env import AGENT, DESK, DeskShop, desk_shop, until

CHAT = 5550177
CONVERSATION = f"telegram:{CHAT}"
DRAFT = "我们会在24小时内发货，您可以在订单页面查看物流。"


class Model:
    """Answers by the prompt's job: translations, drafts, and nothing for the bot's own calls."""

    def __init__(self) -> None:
        self.failing = False
        self.delay = 0.0
        """Seconds a translation takes."""

    def __call__(self, request: RecordedRequest) -> Reply:
        system = request.system_text
        if self.failing:
            return Reply(status=500)
        if "You translate messages" in system:
            if "into English" in system:
                return Reply(text=f"EN: {request.user_text}", delay=self.delay)
            return Reply(text=f"中文：{request.user_text}", delay=self.delay)
        if "drafting a reply for a human support agent" in system:
            return Reply(text=DRAFT)
        return Reply(text="NOT_SURE")


def jobs(server: OpenAIDouble, marker: str) -> list[RecordedRequest]:
    return [r for r in server.requests if marker in r.system_text]


@pytest_asyncio.fixture
async def llm() -> AsyncIterator[tuple[OpenAIDouble, Model]]:
    async with OpenAIDouble() as server:
        model = Model()
        server.responder = model
        yield server, model


async def chinese_handoff(s: DeskShop) -> str:
    """A Chinese-speaking Telegram customer asks for a person; the ticket's ts."""
    await s.tg_send(CHAT, "你好，我想找人工客服")
    await until(lambda: any("人工" in reply for reply in s.tg_sent(CHAT)))
    ticket = await s.ticket()
    record = await s.ticket_record(CONVERSATION)
    assert record.language == "zh"
    return str(ticket["ts"])


async def test_chinese_customer_gets_translations_both_ways_and_a_draft(
    tmp_path: Path, llm: tuple[OpenAIDouble, Model]
) -> None:
    server, model = llm
    async with desk_shop(tmp_path, llm_base_url=server.base_url) as s:
        ts = await chinese_handoff(s)
        await s.tg_send(CHAT, "我的包裹两周了还没到，邮箱是 mei@example.com")
        thread = await s.thread_has(ts, 2)
        assert thread[0] == "*Alice Smith:* 我的包裹两周了还没到，邮箱是 mei@example.com"
        assert thread[1] == (
            f"{TRANSLATION_LABEL} EN: 我的包裹两周了还没到，邮箱是 mei@example.com"
        )
        # What left for the model was redacted; the thread has the address back.
        asked = jobs(server, "into English")[-1]
        assert "mei@example.com" not in asked.prompt
        assert "[EMAIL_1]" in asked.user_text

        # The agent turns translation on and writes English; the customer gets Chinese.
        assert "Translation on for #1" in await s.command("translate on #1")
        sent = len(s.tg_sent(CHAT))
        await s.reply(ts, "Your parcel ships within 24 hours.")
        replies = await s.tg_replies(CHAT, sent + 2)  # "Dana joined", then the reply
        assert replies[-1] == "中文：Your parcel ships within 24 hours."
        thread = await s.thread_has(ts, 3)
        assert thread[2] == f"{SENT_LABEL} 中文：Your parcel ships within 24 hours."
        agent_said = [e for e in await s.events(CONVERSATION) if isinstance(e, AgentMessage)]
        assert [e.text for e in agent_said] == ["中文：Your parcel ships within 24 hours."]

        # A slow translation: Slack sends the reply again while it is being handled. The
        # customer gets it once, and the model is asked once.
        model.delay = 1.0
        asked = len(jobs(server, "You translate messages"))
        slow = sd.thread_reply(channel=DESK, user=AGENT, text="Anything else?", thread_ts=ts)
        first = asyncio.create_task(s.slack_post(sd.event_callback(slow)))
        await until(lambda: len(jobs(server, "You translate messages")) > asked)
        assert (await s.slack_post(sd.event_callback(slow), retry=1)).status_code == 200
        assert (await first).status_code == 200
        model.delay = 0.0
        assert (await s.tg_replies(CHAT, sent + 3))[-1] == "中文：Anything else?"
        assert (await s.thread_has(ts, 4))[3] == f"{SENT_LABEL} 中文：Anything else?"
        assert len(jobs(server, "You translate messages")) == asked + 1

        # A drafted reply: grounded in the knowledge base and the conversation, redacted.
        assert "suggested reply is in the thread of #1" in await s.command("suggest #1")
        thread = await s.thread_has(ts, 5)
        assert thread[4] == f"{DRAFT_LABEL}\n{DRAFT}"
        drafted = jobs(server, "drafting a reply")[-1].system_text
        assert "我的包裹两周了还没到" in drafted and "[EMAIL_1]" in drafted
        assert "mei@example.com" not in drafted
        assert "The shop's passages:\n[1]" in drafted  # knowledge passages went along
        assert "Agent: Your parcel ships within 24 hours." in drafted
        assert drafted.count("Agent: Anything else?") == 1  # in the window once
        assert "in English" in drafted  # translation on: drafted in the desk's language

        # Translation off: the agent's words go out as written.
        assert "Translation off" in await s.command("translate off #1")
        sent = len(s.tg_sent(CHAT))
        await s.reply(ts, "好的，马上处理。")
        assert (await s.tg_replies(CHAT, sent + 1))[-1] == "好的，马上处理。"


async def test_a_failing_model_never_blocks_the_mirror_or_the_reply(
    tmp_path: Path, llm: tuple[OpenAIDouble, Model]
) -> None:
    server, model = llm
    async with desk_shop(tmp_path, llm_base_url=server.base_url) as s:
        ts = await chinese_handoff(s)
        assert "Translation on" in await s.command("translate on #1")
        model.failing = True
        await s.tg_send(CHAT, "还在吗？")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* 还在吗？"]
        await s.tg_send(CHAT, "请快点")
        thread = await s.thread_has(ts, 2)
        assert thread == ["*Alice Smith:* 还在吗？", "*Alice Smith:* 请快点"]  # no translation
        sent = len(s.tg_sent(CHAT))
        await s.reply(ts, "Checking now.")
        replies = await s.tg_replies(CHAT, sent + 2)
        assert replies[-1] == "Checking now."  # sent as written, the agent told so
        notices = await s.ephemeral("U0DANA", 1)
        assert "translation failed" in notices[-1]
        assert "could not draft" in await s.command("suggest #1")


async def test_an_english_customer_needs_no_translation(
    tmp_path: Path, llm: tuple[OpenAIDouble, Model]
) -> None:
    server, _ = llm
    async with desk_shop(tmp_path, llm_base_url=server.base_url) as s:
        await s.tg_send(CHAT, "I want to talk to a human")
        await until(lambda: any("connecting you" in reply for reply in s.tg_sent(CHAT)))
        ts = str((await s.ticket())["ts"])
        await s.tg_send(CHAT, "my parcel is late")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* my parcel is late"]
        assert "nothing to translate" in await s.command("translate on #1")
        await s.command("queue")  # a round trip, for the thread to settle
        assert s.thread(ts) == ["*Alice Smith:* my parcel is late"]
        assert not jobs(server, "You translate messages")
        assert "Usage: `/kefu translate on|off" in await s.command("translate #1")


async def test_without_an_llm_the_commands_say_so(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        await s.tg_send(CHAT, "你好，我想找人工客服")
        await until(lambda: any("人工" in reply for reply in s.tg_sent(CHAT)))
        ts = str((await s.ticket())["ts"])
        assert await s.command("translate on #1") == NO_LLM
        assert await s.command("suggest #1") == NO_LLM
        await s.tg_send(CHAT, "还在吗？")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* 还在吗？"]
