"""The handoff loop end to end: a customer on Telegram or in the web chat, agents in Slack.

kefu runs as ``kefu run`` runs it, against the Telegram and Slack doubles; Slack's requests
carry Slack's payload shapes and signatures.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from bot.desk import Status
from bot.desk.desk import NOT_AGENT, RESOLVED, UNKNOWN_THREAD
from bot.events import (
    AgentJoined,
    AgentMessage,
    AgentNote,
    HandoffRequested,
    HandoffResolved,
    UserMessage,
)
from bot.store import open_store
from bot.testing import slack_double as sd
from channels.slack_board import CLAIM, REOPEN, RESOLVE
from tests.desk_env import (
    AGENT,
    DESK,
    OUTSIDER,
    SECOND_AGENT,
    DeskShop,
    desk_shop,
    until,
)

CHAT = 5550123
CONVERSATION = f"telegram:{CHAT}"


async def settle(seconds: float = 0.3) -> None:
    """Give background work a moment, for asserting that nothing (more) happened."""
    await asyncio.sleep(seconds)


async def hand_off(s: DeskShop, chat: int = CHAT) -> str:
    """A Telegram customer starts tracking an order, then asks for a person; the ticket's ts."""
    await s.tg_send(chat, "where is my order")
    await s.tg_replies(chat, 1)
    await s.tg_send(chat, "/human", entities=[{"type": "bot_command", "offset": 0, "length": 6}])
    replies = await s.tg_replies(chat, 2)
    assert "connecting you" in replies[-1]
    ticket = await s.ticket()
    return str(ticket["ts"])


async def test_telegram_customer_and_slack_agent_full_loop(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        shown = s.ticket_text(ts)
        for expected in ("Alice Smith", "telegram", "customer asked for a human", "Claim"):
            assert expected in shown
        assert "where is my order" in shown

        # While waiting, the bot says nothing, not even to /start; the words go to the thread.
        await s.tg_send(CHAT, "my parcel is two weeks late")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* my parcel is two weeks late"]
        await s.tg_send(
            CHAT, "/start", entities=[{"type": "bot_command", "offset": 0, "length": 6}]
        )
        assert (await s.thread_has(ts, 2))[-1] == "*Alice Smith:* /start"
        await settle()
        assert len(s.tg_sent(CHAT)) == 2

        # Someone outside the handoff channel cannot claim.
        await s.press(ts, CLAIM, user=OUTSIDER)
        assert await s.ephemeral(OUTSIDER, 1) == [NOT_AGENT]
        assert (await s.ticket_record(CONVERSATION)).agent is None

        # Dana claims: the customer hears her first name; the ticket shows who has it.
        await s.press(ts, CLAIM)
        replies = await s.tg_replies(CHAT, 3)
        assert "Dana from our team" in replies[-1]
        await until(lambda: "Dana Lee has it" in s.ticket_text(ts))
        assert "kefu_claim" not in s.ticket_text(ts)

        # Her reply reaches the customer as plain text.
        reply = await s.reply(
            ts, "Sorry <@U0SAM>! :wave: See <https://shop.example/help|our help page> &amp; wait"
        )
        replies = await s.tg_replies(CHAT, 4)
        assert replies[-1] == (
            "Sorry @Sam Wu! 👋 See our help page (https://shop.example/help) & wait"
        )

        # Slack retries that event: no second relay.
        again = sd.event_callback(reply)
        assert (await s.slack_post(again, retry=1)).status_code == 200
        await settle()
        assert len(s.tg_sent(CHAT)) == 4

        # Another agent's reply stays a note, and they are told so privately.
        await s.reply(ts, "I can take this one", user=SECOND_AGENT)
        notices = await s.ephemeral(SECOND_AGENT, 1)
        assert "Dana Lee has this conversation" in notices[0]
        # A note stays internal.
        await s.reply(ts, "note: refund approved by finance")
        await settle()
        assert len(s.tg_sent(CHAT)) == 4

        # The customer sends a photo: it is uploaded into the thread.
        s.telegram.host_file("large", b"\x89PNG photo of the parcel")
        await s.tg_send(
            CHAT,
            None,
            photo=[
                {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 67},
                {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960},
            ],
            caption="the box",
        )
        await s.slack.wait_for("files.completeUploadExternal")
        (uploaded,) = s.slack.files.values()
        assert uploaded.data == b"\x89PNG photo of the parcel"
        assert uploaded.thread_ts == ts and uploaded.channel == DESK
        complete = s.slack.calls_to("files.completeUploadExternal")[0].params
        assert "the box" in str(complete.get("initial_comment"))

        # Dana resolves: the customer is handed back, the interrupted task offered again.
        await s.press(ts, RESOLVE)
        replies = await s.tg_replies(CHAT, 6)
        assert "handed you back" in replies[-2]
        assert "tracking your order" in replies[-1]
        await until(lambda: "resolved by Dana Lee" in s.ticket_text(ts))
        record = await s.ticket_record(CONVERSATION)
        assert record.status is Status.RESOLVED and record.resolved_by == "Dana Lee"

        # The bot answers again: yes takes the customer back into the task.
        await s.tg_send(CHAT, "yes")
        replies = await s.tg_replies(CHAT, 7)
        assert "order number" in replies[-1]
        await settle()
        sent = len(s.tg_sent(CHAT))

        # A reply in the resolved thread reaches no one; the agent is told privately.
        await s.reply(ts, "one more thing")
        assert (await s.ephemeral(AGENT, 1))[-1] == RESOLVED
        await settle()
        assert len(s.tg_sent(CHAT)) == sent

        # Every desk event is in the conversation's log.
        events = await s.events(CONVERSATION)
        requested = [e for e in events if isinstance(e, HandoffRequested)]
        assert [e.reason for e in requested] == ["customer asked for a human"]
        assert [e.agent for e in events if isinstance(e, AgentJoined)] == ["Dana Lee"]
        assert [e.text for e in events if isinstance(e, AgentNote)] == [
            "I can take this one",
            "refund approved by finance",
        ]
        assert len([e for e in events if isinstance(e, AgentMessage)]) == 1
        assert [e.agent for e in events if isinstance(e, HandoffResolved)] == ["Dana Lee"]


async def test_agent_files_reach_the_telegram_customer(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 3)
        label = s.slack.host_file("label.pdf", b"%PDF-1.4 return label", mimetype="application/pdf")
        photo = s.slack.host_file("box.png", b"\x89PNG the box", mimetype="image/png")
        event = sd.file_share(
            channel=DESK, user=AGENT, text="here is your label", thread_ts=ts, files=[label, photo]
        )
        assert (await s.slack_post(sd.event_callback(event))).status_code == 200
        (document,) = await s.telegram.wait_for("sendDocument")
        (picture,) = await s.telegram.wait_for("sendPhoto")
        assert document.params["document"].data == b"%PDF-1.4 return label"
        assert document.params["document"].filename == "label.pdf"
        assert picture.params["photo"].data == b"\x89PNG the box"
        assert "here is your label" in s.tg_sent(CHAT)
        (message,) = [e for e in await s.events(CONVERSATION) if isinstance(e, AgentMessage)]
        assert [a.name for a in message.attachments] == ["label.pdf", "box.png"]
        # Slack retries the event: nothing is sent twice.
        assert (await s.slack_post(sd.event_callback(event), retry=1)).status_code == 200
        await settle()
        assert len(s.telegram.calls_to("sendDocument")) == 1


async def test_forged_or_expired_signature_is_refused(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        event = sd.event_callback(
            sd.thread_reply(channel=DESK, user=AGENT, text="forged", thread_ts=ts)
        )
        for garbage in (b"{not json", b"payload=%7Bbad"):
            assert (await s.slack_post(garbage)).status_code == 400
        forged = await s.slack_post(event, secret="not-the-secret")
        old = await s.slack_post(event, timestamp=int(time.time()) - 301)
        assert forged.status_code == 401 and old.status_code == 401
        await settle()
        assert len(s.tg_sent(CHAT)) == 2
        assert (await s.ticket_record(CONVERSATION)).agent is None


async def test_unknown_thread_other_channels_and_bots_are_not_relayed(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        await s.reply("1700000000.000100", "hello?")
        assert await s.ephemeral(AGENT, 1) == [UNKNOWN_THREAD]
        elsewhere = sd.thread_reply(channel="C0OTHER", user=AGENT, text="hi", thread_ts=ts)
        from_bot = {
            **sd.thread_reply(channel=DESK, user=AGENT, text="hi", thread_ts=ts),
            "bot_id": "B0OTHER",
        }
        for event in (elsewhere, from_bot):
            assert (await s.slack_post(sd.event_callback(event))).status_code == 200
        await settle()
        assert len(s.tg_sent(CHAT)) == 2
        assert (await s.ticket_record(CONVERSATION)).agent is None


async def test_first_reply_claims_and_reopen_pauses_the_bot_again(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        await s.reply(ts, "Hello, I'm looking into it")
        replies = await s.tg_replies(CHAT, 4)
        assert "Dana from our team" in replies[2]
        assert replies[3] == "Hello, I'm looking into it"
        await s.press(ts, RESOLVE)
        await s.tg_replies(CHAT, 6)
        await s.press(ts, REOPEN)
        replies = await s.tg_replies(CHAT, 7)
        assert "back in the conversation" in replies[-1]
        await s.tg_send(CHAT, "thanks for coming back")
        assert (await s.thread_has(ts, 1))[-1] == "*Alice Smith:* thanks for coming back"
        await settle()
        assert len(s.tg_sent(CHAT)) == 7


async def test_a_restart_loses_no_handoff_and_resolved_stays_resolved(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 3)
    async with desk_shop(tmp_path) as s:  # the same database, a new process
        await s.reply(ts, "still with you after the restart")
        assert (await s.tg_replies(CHAT, 1)) == ["still with you after the restart"]
        await s.tg_send(CHAT, "great")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* great"]
        await s.press(ts, RESOLVE)
        await s.tg_replies(CHAT, 3)
    async with desk_shop(tmp_path) as s:
        await s.reply(ts, "hello again")
        assert (await s.ephemeral(AGENT, 1)) == [RESOLVED]
        await settle()
        assert s.tg_sent(CHAT) == []


async def test_a_paused_conversation_without_an_open_ticket_goes_back_to_the_bot(
    tmp_path: Path,
) -> None:
    async with desk_shop(tmp_path) as s:
        await hand_off(s)
        ticket = await s.ticket_record(CONVERSATION)
    # The handoff was closed while the conversation stayed paused (a crash between the two).
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    ticket.status = Status.RESOLVED
    await store.put_value("desk.ticket", CONVERSATION, ticket.to_json())
    await store.close()
    async with desk_shop(tmp_path) as s:
        await s.tg_send(CHAT, "hello")
        assert await s.tg_replies(CHAT, 1)  # the bot answers: the customer is not stuck


async def test_agent_ids_setting_lets_someone_outside_the_channel_act(tmp_path: Path) -> None:
    async with desk_shop(tmp_path, agent_ids=frozenset({OUTSIDER})) as s:
        ts = await hand_off(s)
        await s.press(ts, CLAIM, user=OUTSIDER)
        assert "Guest from our team" in (await s.tg_replies(CHAT, 3))[-1]


async def test_slash_commands_queue_transfer_release(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        queue = await s.command("queue")
        assert "#1 · waiting 0 min" in queue and "Alice Smith" in queue
        assert await s.command("queue", user=OUTSIDER) == NOT_AGENT
        await s.press(ts, CLAIM)
        await s.tg_replies(CHAT, 3)
        assert "with Dana Lee" in await s.command("queue")

        assert "Done" in await s.command(f"transfer #1 <@{SECOND_AGENT}|sam>")
        replies = await s.tg_replies(CHAT, 4)
        assert "Sam from our team is taking over" in replies[-1]
        assert "You now have kefu ticket #1" in (await s.ephemeral(SECOND_AGENT, 1))[0]
        await s.reply(ts, "Dana here again")  # Dana's replies are now notes
        assert "Sam Wu has this conversation" in (await s.ephemeral(AGENT, 1))[0]

        assert "only they can" in await s.command("release #1")
        assert "Done" in await s.command("release", user=SECOND_AGENT)
        replies = await s.tg_replies(CHAT, 5)
        assert "someone else from our team" in replies[-1]
        assert (await s.ticket_record(CONVERSATION)).status is Status.WAITING
        assert "Done" in await s.command("resolve #1")
        await s.tg_replies(CHAT, 7)
        assert "No one is waiting" in await s.command("queue")


async def test_slack_down_keeps_customer_messages_and_posts_them_in_order(
    tmp_path: Path,
) -> None:
    async with desk_shop(tmp_path) as s:
        s.slack.down = True
        await s.tg_send(CHAT, "human")
        replies = await s.tg_replies(CHAT, 1)
        assert "connecting you" in replies[0]  # the customer is told, Slack or not
        await s.slack.wait_for("chat.postMessage")
        for text in ("first", "second", "third"):
            await s.tg_send(CHAT, text)
        await until(lambda: _queued(s, 3))
        assert (await s.ticket_record(CONVERSATION)).thread is None
        s.slack.down = False
        ticket = await s.ticket()
        thread = await s.thread_has(str(ticket["ts"]), 3)
        assert thread == ["*Alice Smith:* first", "*Alice Smith:* second", "*Alice Smith:* third"]


async def _queued(s: DeskShop, count: int) -> bool:
    return len((await s.ticket_record(CONVERSATION)).outbox) == count


async def test_rate_limits_are_waited_out(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        s.slack.rate_limit("chat.postMessage", retry_after=0, times=2)
        ts = await hand_off(s)
        await s.tg_send(CHAT, "still there?")
        assert (await s.thread_has(ts, 1)) == ["*Alice Smith:* still there?"]
        assert len(s.slack.calls_to("chat.postMessage")) >= 4  # two answered 429


async def test_a_burst_of_customer_messages_is_paced_into_the_thread_in_order(
    tmp_path: Path,
) -> None:
    async with desk_shop(tmp_path) as s:
        s.slack.post_interval = 1.0  # the double answers 429 to a post that comes too soon
        ts = await hand_off(s)
        burst = [f"message {i}" for i in range(10)]
        for text in burst:
            await s.tg_send(CHAT, text)
        await s.slack.wait_until(lambda: len(s.thread(ts)) >= len(burst), 60.0)
        assert s.thread(ts) == [f"*Alice Smith:* {text}" for text in burst]
        assert s.slack.rate_limited == []


async def test_customer_who_blocked_the_bot_is_marked_on_the_ticket(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        ts = await hand_off(s)
        s.telegram.block_chat(CHAT)
        await s.reply(ts, "are you still there?")
        thread = await s.thread_has(ts, 1)
        assert "can no longer be reached" in thread[-1]
        await until(lambda: "no longer be reached" in s.ticket_text(ts))
        assert (await s.ticket_record(CONVERSATION)).unreachable


async def test_not_understood_in_a_row_hands_off_with_the_reason(tmp_path: Path) -> None:
    async with desk_shop(tmp_path, not_understood=2) as s:
        for text in ("qwzx vbnm plok", "zzkj fffq wert"):
            await s.tg_send(CHAT, text)
        replies = await s.tg_replies(CHAT, 3)
        assert "connecting you" in replies[-1]
        ticket = await s.ticket()
        assert "did not understand 2 messages in a row" in s.ticket_text(str(ticket["ts"]))


async def test_strongly_negative_sentiment_hands_off_with_the_score(tmp_path: Path) -> None:
    async with desk_shop(tmp_path, sentiment=-0.6) as s:
        await s.tg_send(CHAT, "Hello")
        await s.tg_replies(CHAT, 1)
        assert s.tickets() == []  # a plain greeting is no reason to hand off
        await s.tg_send(CHAT, "这是我第三次来问了，退款还没到账，太差了，我要投诉！")
        ticket = await s.ticket()
        await until(lambda: any("转接人工客服" in reply for reply in s.tg_sent(CHAT)))
        shown = s.ticket_text(str(ticket["ts"]))
        assert "sentiment turned negative" in shown
        record = await s.ticket_record(CONVERSATION)
        assert record.sentiment is not None and record.sentiment <= -0.6
        users = [e for e in await s.events(CONVERSATION) if isinstance(e, UserMessage)]
        assert all(isinstance(e.parse_data.get("sentiment"), float) for e in users)


async def test_socket_mode_carries_the_same_loop(tmp_path: Path) -> None:
    async with desk_shop(tmp_path, socket_mode=True) as s:
        ts = await hand_off(s)
        claim = json.loads(
            dict(
                httpx.QueryParams(
                    sd.block_action(
                        user=AGENT, channel=DESK, message_ts=ts, action_id=CLAIM
                    ).decode()
                )
            )["payload"]
        )
        ack = await s.slack.socket_send("interactive", claim)
        assert "envelope_id" in ack
        assert "Dana from our team" in s.tg_sent(CHAT)[2]  # acknowledged once handled
        event = json.loads(
            sd.event_callback(
                sd.thread_reply(channel=DESK, user=AGENT, text="over the socket", thread_ts=ts)
            )
        )
        await s.slack.socket_send("events_api", event)
        assert s.tg_sent(CHAT)[-1] == "over the socket"
        # Slack redelivers the envelope: no second relay.
        await s.slack.socket_send("events_api", event, retry_attempt=1)
        await settle()
        assert len(s.tg_sent(CHAT)) == 4
        # Without a signing secret nothing listens over HTTP.
        http_event = sd.event_callback(
            sd.thread_reply(channel=DESK, user=AGENT, text="over HTTP", thread_ts=ts)
        )
        assert (await s.slack_post(http_event)).status_code == 404


# --- the web chat -------------------------------------------------------------------------


@asynccontextmanager
async def live_stream(http: httpx.AsyncClient, token: str) -> AsyncIterator[asyncio.Queue[Any]]:
    """The web chat's server-sent events, parsed into a queue of message dicts."""
    received: asyncio.Queue[Any] = asyncio.Queue()
    opened = asyncio.Event()

    async def read() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.stream("GET", "/webchat/events", headers=headers, timeout=None) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                opened.set()
                if line.startswith("data:"):
                    await received.put(json.loads(line[5:]))

    task = asyncio.create_task(read())
    async with asyncio.timeout(5):
        await opened.wait()
    try:
        yield received
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def next_item(queue: asyncio.Queue[Any]) -> Any:
    async with asyncio.timeout(15):
        return await queue.get()


async def test_web_chat_customer_gets_agent_messages_live(tmp_path: Path) -> None:
    async with desk_shop(tmp_path) as s:
        token = "web-" + secrets.token_hex(16)  # as the page makes its id
        auth = {"Authorization": f"Bearer {token}"}

        async def say(text: str) -> list[dict[str, Any]]:
            body = {"sender": token, "message": text}
            response = await s.http.post("/webchat/webhook", json=body)
            assert response.status_code == 200, response.text
            return list(response.json())

        await say("where is my order")
        replies = await say("human")
        assert "connecting you" in replies[0]["text"]
        ts = str((await s.ticket())["ts"])
        assert "webchat" in s.ticket_text(ts)

        async with live_stream(s.http, token) as live:
            assert await say("is anyone there?") == []  # the bot keeps quiet
            assert (await s.thread_has(ts, 1))[-1].endswith("is anyone there?")
            photo = await s.http.post(
                "/webchat/files",
                content=b"\xff\xd8 a broken zip",
                headers={**auth, "Content-Type": "image/jpeg", "X-Filename": "zip%20%E6%8B%89.jpg"},
            )
            assert photo.status_code == 200 and photo.json() == []
            await s.slack.wait_for("files.completeUploadExternal")
            (uploaded,) = s.slack.files.values()
            assert uploaded.data == b"\xff\xd8 a broken zip" and uploaded.thread_ts == ts
            assert uploaded.filename == "zip 拉.jpg"
            await s.press(ts, CLAIM)
            joined = await next_item(live)
            assert "Dana from our team" in joined["text"] and joined["from"] == "bot"
            await s.reply(ts, "Hi, Dana here :smile:")
            message = await next_item(live)
            assert message == {
                "id": message["id"],
                "from": "agent",
                "agent": "Dana Lee",
                "text": "Hi, Dana here 😄",
            }
            label = s.slack.host_file("label.pdf", b"%PDF", mimetype="application/pdf")
            event = sd.file_share(
                channel=DESK, user=AGENT, text="and a label", thread_ts=ts, files=[label]
            )
            assert (await s.slack_post(sd.event_callback(event))).status_code == 200
            assert (await next_item(live))["text"] == "and a label"
            sent_file = await next_item(live)
            assert sent_file["from"] == "agent"
            [(file_id, file_name)] = [(f["id"], f["name"]) for f in sent_file["files"]]
            assert file_name == "label.pdf"
            await s.reply(ts, "note: web customer, order unknown")
            await s.press(ts, RESOLVE)
            back = await next_item(live)
            assert "handed you back" in back["text"]
            offer = await next_item(live)
            assert "tracking your order" in offer["text"]
            assert offer["buttons"]

        # A reload shows the conversation from the store, agent messages included.
        history = (await s.http.get("/webchat/history", headers=auth)).json()
        texts = [item.get("text") for item in history]
        assert "where is my order" in texts and "Hi, Dana here 😄" in texts
        assert "web customer, order unknown" not in json.dumps(history, ensure_ascii=False)
        download = await s.http.get(f"/webchat/files/{file_id}", headers=auth)
        assert download.status_code == 200 and download.content == b"%PDF"
        assert download.headers["content-disposition"].startswith("attachment")
        # Only that token reads that conversation (and its files).
        other = "web-" + secrets.token_hex(16)
        foreign = await s.http.get(
            f"/webchat/files/{file_id}", headers={"Authorization": f"Bearer {other}"}
        )
        assert foreign.status_code == 404
        assert (
            await s.http.get("/webchat/history", headers={"Authorization": f"Bearer {other}"})
        ).json() == []
        assert "📎 zip 拉.jpg" in texts
        assert (await s.http.get("/webchat/history")).status_code == 401
        for content, kind, status in [
            (b"MZ", "application/x-msdownload", 415),
            (b"", "image/png", 400),
        ]:
            refused = await s.http.post(
                "/webchat/files", content=content, headers={**auth, "Content-Type": kind}
            )
            assert refused.status_code == status and "error" in refused.json()
        assert (await s.http.post("/webchat/files", content=b"x")).status_code == 401
        assert (await s.http.get("/webchat/events")).status_code == 401
        bad = {"Authorization": "Bearer alice"}
        assert (await s.http.get("/webchat/history", headers=bad)).status_code == 401

        # The bot answers again.
        assert await say("yes")
        events = await s.events(f"webchat:{token}")
        assert any(isinstance(e, UserMessage) and e.text == "yes" for e in events)


async def test_two_waiting_customers_each_claimed_through_their_own_ticket(
    tmp_path: Path,
) -> None:
    other = CHAT + 1
    async with desk_shop(tmp_path) as s:
        first = await hand_off(s)
        await s.tg_send(other, "where is my order")
        await s.tg_replies(other, 1)
        await s.tg_send(
            other, "/human", entities=[{"type": "bot_command", "offset": 0, "length": 6}]
        )
        assert "connecting you" in (await s.tg_replies(other, 2))[-1]
        second = str((await s.ticket(2))["ts"])
        assert second != first

        await s.press(second, CLAIM)
        assert "Dana from our team" in (await s.tg_replies(other, 3))[-1]
        await s.press(first, CLAIM, user=SECOND_AGENT)
        assert "Sam from our team" in (await s.tg_replies(CHAT, 3))[-1]
        assert (await s.ticket_record(CONVERSATION)).agent == SECOND_AGENT
        assert not s.ephemerals_to(AGENT) and not s.ephemerals_to(SECOND_AGENT)
