"""Acknowledged means saved: Telegram webhooks and Slack requests while PostgreSQL is cut off.

kefu runs as ``kefu run`` runs it (Telegram webhook, the Slack desk) on PostgreSQL reached
through a TCP proxy the test cuts and restores: to kefu, a real network fault. While the
database is away, a Telegram update, a Slack event and an agent's button press each get a
503, so that the platform sends it again (the agent presses again); once the database is
back, the redelivery is answered once, and every later redelivery, to this worker or to
another one on the same database, is recognised and answers nothing more.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.engine import make_url

from bot import constants
from bot.events import AgentMessage
from bot.testing import slack_double as sd
from bot.testing.tcp_proxy import TcpProxy
from channels.slack_board import CLAIM
from tests.desk_env import (
    AGENT,
    DESK,
    REDELIVERIES,
    WAIT,
    DeskShop,
    accepted,
    desk_shop,
    until,
)

CHAT = 5550777
CONVERSATION = f"telegram:{CHAT}"


async def settled(s: DeskShop) -> list[str]:
    """What the customer got, once background work had a moment."""
    await asyncio.sleep(0.3)
    return s.tg_sent(CHAT)


async def _why_no_join(s: DeskShop) -> str:
    """What the customer, the agent and the store hold when the join never came."""
    pending = await s.agent.store.pending_deliveries(now=float("inf"))
    told = [str(c.params.get("text")) for c in s.slack.calls_to("chat.postEphemeral")]
    return (
        f"no join reached the customer: sent {s.tg_sent(CHAT)}; the agent was told {told}; "
        f"ticket {await s.ticket_record(CONVERSATION)}; pending deliveries {pending}; "
        f"events {[e.event for e in await s.events(CONVERSATION)][-6:]}"
    )


async def test_nothing_acknowledged_is_lost_and_nothing_is_answered_twice(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    server = make_url(fresh_postgres_url)
    proxy = TcpProxy([(server.host or "127.0.0.1", server.port or 5432)])
    await proxy.start()
    proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with desk_shop(tmp_path / "one", database_url=proxied, db_timeout=2.0) as s:
            # Telegram: refused while the database is away; answered once when it is back.
            update = s.tg_update(CHAT, "where is my order")
            proxy.cut()
            refused = await s.tg_post(update)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert s.tg_sent(CHAT) == []
            proxy.restore()
            await accepted(lambda: s.tg_post(update))
            [asked] = s.tg_sent(CHAT)  # sent before the webhook answered
            assert "order number" in asked
            assert (await s.tg_post(update)).status_code == 200
            assert await settled(s) == [asked]

            # Slack: an agent's reply while the database is away is refused; Slack's retry
            # relays it once.
            await s.tg_send(CHAT, "/human")
            ticket = str((await s.ticket())["ts"])

            async def thread_recorded() -> bool:
                return (await s.ticket_record(CONVERSATION)).thread == ticket

            await until(thread_recorded)
            claim = sd.block_action(user=AGENT, channel=DESK, message_ts=ticket, action_id=CLAIM)
            proxy.cut()
            assert (await s.slack_post(claim)).status_code == 503  # the agent sees it failed
            proxy.restore()
            await accepted(lambda: s.slack_post(claim))  # and presses again

            # The customer hears the join once: from the press Slack heard, or, when the cut
            # fell on the first press's commit (the database had it; kefu could not know), from
            # the outbox's retry once that write's delivery lease ran out.
            def joins() -> list[str]:
                return [m for m in s.tg_sent(CHAT) if "Dana from our team" in m]

            try:
                await until(joins, limit=constants.DELIVERY_LEASE + WAIT)
            except TimeoutError:
                raise AssertionError(await _why_no_join(s)) from None
            assert len(joins()) == 1 and "Dana from our team" in s.tg_sent(CHAT)[-1]
            event = sd.thread_reply(
                channel=DESK, user=AGENT, text="Your parcel left today", thread_ts=ticket
            )
            proxy.cut()
            refused = await s.slack_post(sd.event_callback(event))
            assert refused.status_code == 503
            proxy.restore()
            retries = iter(range(1, REDELIVERIES + 1))
            await accepted(lambda: s.slack_post(sd.event_callback(event), retry=next(retries)))
            assert s.tg_sent(CHAT)[-1] == "Your parcel left today"  # relayed before the ack
            assert (await s.slack_post(sd.event_callback(event), retry=9)).status_code == 200
            sent = await settled(s)
            assert sent.count("Your parcel left today") == 1

            # Another worker on the same database recognises both redeliveries.
            doubles = (s.slack, s.telegram)
            async with desk_shop(tmp_path / "two", database_url=proxied, doubles=doubles) as w:
                assert (await w.tg_post(update)).status_code == 200
                again = await w.slack_post(sd.event_callback(event), retry=10)
                assert again.status_code == 200
                assert await settled(s) == sent
            relayed = [e for e in await s.events(CONVERSATION) if isinstance(e, AgentMessage)]
            assert [e.text for e in relayed] == ["Your parcel left today"]
    finally:
        await proxy.close()
