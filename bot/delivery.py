"""Outbound messages: what goes to the outbox for each channel, sending it in order, and the
loop that retries what failed, from the store, so that nothing is lost silently.

A turn saves its replies for a push channel (Telegram) in the outbox in the same write as its
events; :meth:`Outbox.deliver` then sends them right away, and :meth:`Outbox.deliver_pending`
(run every ``retry_interval`` seconds once started) sends what is due again. A chat that is gone
for good (the customer blocked the bot) is noted under ``constants.UNREACHABLE_NAMESPACE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bot import constants
from bot.channel import Channel
from bot.errors import (
    DatabaseUnavailableError,
    PermanentDeliveryError,
    RejectedMessageError,
    TransientDeliveryError,
)
from bot.events import BotMessage
from bot.ports import Delivery, KeyValueStore, OutboxStore

__all__ = ["DeliveryStore", "Outbox"]

log = logging.getLogger(__name__)

_WAITING = "waiting for an earlier message"


class DeliveryStore(OutboxStore, KeyValueStore, Protocol):
    """What delivery keeps in the store: the outbox, and the note that a chat is unreachable
    (a small value under ``constants.UNREACHABLE_NAMESPACE``)."""


@dataclass(frozen=True)
class _Outcome:
    """How one delivery attempt went."""

    sent: bool
    retry_at: float | None = None
    """When a failed message is tried again; None: never."""
    holds_later: bool = True
    """Whether the conversation's later messages must wait for this one."""


class Outbox:
    """The channels' registry for sending, and delivery through the store's outbox."""

    def __init__(
        self,
        store: DeliveryStore,
        *,
        retry_interval: float = constants.DELIVERY_RETRY_INTERVAL,
    ) -> None:
        self.store = store
        self.retry_interval = retry_interval
        """Seconds between two passes of the retry loop."""
        self.channels: dict[str, Channel] = {}
        self._retry_task: asyncio.Task[None] | None = None

    def add_channel(self, channel: Channel) -> None:
        """Send this channel's conversations' messages through ``channel``."""
        self.channels[channel.name] = channel

    def can_push(self, channel_name: str) -> bool:
        """Whether the channel reaches its customers outside their own turns."""
        channel = self.channels.get(channel_name)
        return channel is not None and channel.pushes

    # --- what goes to the outbox ------------------------------------------------------------

    def replies(self, channel_name: str, messages: Iterable[BotMessage]) -> list[BotMessage]:
        """What a customer turn's replies put in the outbox: nothing for a channel that answers
        inline (REST), else each message part by part."""
        channel = self.channels.get(channel_name)
        if channel is None or channel.replies_inline:
            return []
        return _parts(channel, messages)

    def pushed(self, channel_name: str, messages: Iterable[BotMessage]) -> list[BotMessage]:
        """What a scheduled job's messages put in the outbox: on every channel that pushes (the
        web chat's live stream too), part by part."""
        channel = self.channels.get(channel_name)
        if channel is None or not channel.pushes:
            return []
        return _parts(channel, messages)

    def interventions(self, channel_name: str, messages: Iterable[BotMessage]) -> list[BotMessage]:
        """What a desk intervention's messages put in the outbox: on any known channel."""
        channel = self.channels.get(channel_name)
        return [] if channel is None else _parts(channel, messages)

    # --- sending ---------------------------------------------------------------------------

    async def deliver(self, channel_name: str, items: list[tuple[int, BotMessage]]) -> Delivery:
        """Send saved outbox entries in order; after a failure the rest wait with the failed
        one, keeping order (a message the platform rejected is given up alone). Returns how it
        went: ``SENT``, ``QUEUED`` (retried later), ``UNREACHABLE`` or ``NONE`` (nothing)."""
        channel = self.channels.get(channel_name)
        if channel is None or not items:
            return Delivery.NONE
        sent: list[int] = []
        try:
            for position, (delivery_id, message) in enumerate(items):
                outcome = await self._attempt(channel, delivery_id, message, attempts=0)
                if outcome.sent:
                    sent.append(delivery_id)
                    continue
                if not outcome.holds_later:
                    continue
                for later_id, _ in items[position + 1 :]:
                    await self.store.mark_failed(
                        later_id, error=_WAITING, retry_at=outcome.retry_at
                    )
                return Delivery.QUEUED if outcome.retry_at is not None else Delivery.UNREACHABLE
        finally:
            await self.store.mark_delivered(*sent)
        return Delivery.SENT

    async def deliver_pending(self) -> int:
        """Retry due outbox entries once; return how many were delivered."""
        delivered = 0
        now = time.time()
        for pending in await self.store.pending_deliveries(now=now):
            channel = self.channels.get(pending.channel)
            if channel is None:
                continue
            lease = now + constants.DELIVERY_LEASE
            if not await self.store.claim_delivery(pending.id, now=now, until=lease):
                continue  # another sender took it since it was read
            outcome = await self._attempt(
                channel, pending.id, pending.message, attempts=pending.attempts
            )
            if outcome.sent:
                await self.store.mark_delivered(pending.id)
                delivered += 1
        return delivered

    async def _attempt(
        self, channel: Channel, delivery_id: int, message: BotMessage, *, attempts: int
    ) -> _Outcome:
        """Send once; a failure is recorded here, a success is for the caller to record."""
        try:
            await channel.send(message)
        except PermanentDeliveryError as err:
            log.error(
                "delivery %s to %s failed for good: %s", delivery_id, message.conversation_id, err
            )
            await self.store.mark_failed(delivery_id, error=str(err), retry_at=None)
            if isinstance(err, RejectedMessageError):
                return _Outcome(sent=False, holds_later=False)
            note = json.dumps({"reason": str(err), "at": time.time()})
            cid = message.conversation_id
            await self.store.put_value(constants.UNREACHABLE_NAMESPACE, cid, note)
            return _Outcome(sent=False)
        except Exception as err:  # transient by kind, or a channel bug: retry, never drop
            wait = err.retry_after if isinstance(err, TransientDeliveryError) else None
            delays = constants.DELIVERY_RETRY_DELAYS
            retry_at = (
                None if attempts >= len(delays) else time.time() + max(wait or 0, delays[attempts])
            )
            log.warning(
                "delivery %s to %s failed (%r); retry at %s",
                delivery_id,
                message.conversation_id,
                err,
                retry_at,
            )
            await self.store.mark_failed(delivery_id, error=str(err), retry_at=retry_at)
            return _Outcome(sent=False, retry_at=retry_at)
        return _Outcome(sent=True, holds_later=False)

    # --- the retry loop --------------------------------------------------------------------

    async def start(self) -> None:
        """Start retrying undelivered messages in the background."""
        if self._retry_task is None:
            self._retry_task = asyncio.create_task(self._retry_deliveries())

    async def close(self) -> None:
        """Stop the retry loop."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None

    async def _retry_deliveries(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await self.deliver_pending()
            except DatabaseUnavailableError as err:  # known and passing: no traceback each time
                log.warning("retrying deliveries: %s", err)
            except Exception:  # the loop must outlive a failing store or channel
                log.exception("retrying deliveries failed")


def _parts(channel: Channel, messages: Iterable[BotMessage]) -> list[BotMessage]:
    return [part for message in messages for part in channel.deliveries(message)]
