"""The Telegram channel: customers chat with the shop's bot, by webhook or long polling.

Inbound updates are translated (``telegram_inbound``) and handed to the core one at a time per
chat, in order, while different chats run concurrently; the core delivers replies through
:meth:`TelegramChannel.send`. Replies go out as plain text (no ``parse_mode``), so no
character a response or an LLM writes can make Telegram reject a message; only a response's
``custom`` payload may ask for formatting.

An update is acknowledged only once its turn is saved: the webhook answers after the turn (503
when the database is away for now, and Telegram sends the update again), and long polling
confirms an offset only past updates whose turns were saved. A redelivered update runs no
second turn: the store keeps the update ids it saw (``bot.inbound.message_key``), for every
worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import mimetypes
import re
import warnings
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import CallbackQuery, InlineKeyboardMarkup, InputFile, Message, Update
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bot.channel import Channel
from bot.constants import MAX_REQUEST_BYTES
from bot.edge import decode_json
from bot.errors import (
    BadRequestError,
    DeliveryError,
    PermanentDeliveryError,
    RejectedMessageError,
    TransientDeliveryError,
    TransientError,
)
from bot.events import Attachment, BotMessage, UserMessage
from bot.files import FileBlob, StoredFiles
from bot.ports import KeyValueStore
from bot.settings import Settings
from channels.telegram_inbound import (
    CHANNEL,
    BotIdentity,
    button_title,
    callback_from_update,
    message_from_update,
)
from channels.telegram_outbound import (
    MAX_CAPTION,
    custom_calls,
    is_remote_file,
    keyboard,
    resolve_callback,
    split_text,
    utf16_len,
)
from channels.telegram_request import AiohttpRequest
from channels.telegram_updates import HANDLED_KINDS, UnreadableUpdateError, UpdatesBot, read_update

logger = logging.getLogger(__name__)

_PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
"""Pictures sent with sendPhoto; other files (a GIF, a PDF) go as documents."""

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_API_BASE_URL = "https://api.telegram.org"
ALLOWED_UPDATES = HANDLED_KINDS
POLL_TIMEOUT = 25
"""Seconds a ``getUpdates`` long poll may wait for news."""
MAX_POLL_BACKOFF = 30.0
TYPING_DELAY = 0.3
"""Handlers quicker than this answer before a typing indicator would even show."""
TYPING_REPEAT = 4.5
"""Telegram shows ``typing`` for about 5 seconds."""
RETRY_AFTER_SECONDS = 1
"""What a 503 to Telegram suggests (Telegram keeps its own pace of redelivery)."""
STOP_GRACE = 5.0
"""Seconds stop() lets in-flight updates finish before cancelling them."""
BUTTONS_ONLY_TEXT = "…"
"""Telegram needs text to carry a keyboard; used when a message has buttons and no text."""


class TelegramChannel(Channel):
    """Telegram through python-telegram-bot's ``Bot``, pointed at any Bot API server.

    ``bot`` is that PTB ``Bot``, for Bot API calls kefu does not model.
    """

    name = "telegram"
    sends_files = True

    def __init__(
        self,
        *,
        token: str,
        store: KeyValueStore,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_base_url: str | None = None,
        poll_timeout: int = POLL_TIMEOUT,
        typing_delay: float = TYPING_DELAY,
    ) -> None:
        super().__init__()
        api = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self.bot = UpdatesBot(
            token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=AiohttpRequest(),
            get_updates_request=AiohttpRequest(pool_size=1),
        )
        self._store = store
        self._files = StoredFiles(store)
        self._webhook_url = _full_webhook_url(webhook_url) if webhook_url else None
        # Without a configured secret, one derived from the token is as unguessable and stays
        # the same across restarts and workers.
        self._secret = webhook_secret or hmac.new(token.encode(), b"kefu", "sha256").hexdigest()
        self._poll_timeout = poll_timeout
        self._typing_delay = typing_delay
        self._me: BotIdentity | None = None
        self._ready_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._offset: int | None = None
        """The next ``getUpdates`` offset: every update below it was handled."""
        self._fetched: dict[int, asyncio.Task[bool] | None] = {}
        """Updates polled at or past the offset: their turn (None: nothing to run)."""
        self._inflight: dict[int, asyncio.Task[bool]] = {}
        self._chat_tails: dict[int, asyncio.Task[bool]] = {}
        self.poll_on_start = True
        """False when the leader among several workers polls (``start_polling``)."""

    @classmethod
    def from_settings(cls, settings: Settings, store: KeyValueStore) -> TelegramChannel | None:
        """The channel the settings describe, or None when ``TELEGRAM_BOT_TOKEN`` is unset."""
        if not settings.telegram_bot_token:
            return None
        return cls(
            token=settings.telegram_bot_token,
            store=store,
            webhook_url=settings.telegram_webhook_url,
            webhook_secret=settings.telegram_webhook_secret,
            api_base_url=settings.telegram_api_base_url,
        )

    def routes(self) -> Sequence[BaseRoute]:
        """``POST /webhooks/telegram``, where Telegram posts updates in webhook mode."""
        return [Route(WEBHOOK_PATH, self._webhook, methods=["POST"])]

    async def fetch(self, attachment: Attachment) -> FileBlob:
        """A file the customer sent, fetched from Telegram (the desk's ``FileSource``)."""
        if not attachment.file_id:
            raise PermanentDeliveryError(f"the {attachment.kind} has no Telegram file id")
        try:
            file = await self.bot.get_file(attachment.file_id)
            data = await file.download_as_bytearray()
        except (RetryAfter, NetworkError) as exc:
            raise TransientDeliveryError(f"fetching a file from Telegram failed: {exc}") from exc
        except TelegramError as exc:
            raise PermanentDeliveryError(f"Telegram refused the file: {exc}") from exc
        name = attachment.name or (file.file_path or attachment.kind).rsplit("/", 1)[-1]
        if "." not in name and attachment.kind == "image":
            name += ".jpg"
        mime = attachment.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileBlob(name=name, mime_type=mime, data=bytes(data))

    async def start(self) -> None:
        """Learn the bot's name, then register the webhook or start long polling."""
        await self._ready()
        if self._webhook_url:
            await self.bot.set_webhook(
                self._webhook_url, secret_token=self._secret, allowed_updates=ALLOWED_UPDATES
            )
            logger.info("telegram webhook registered at %s", self._webhook_url)
        elif self.poll_on_start:
            await self.start_polling()

    @property
    def polls(self) -> bool:
        """Whether updates come by long polling (no webhook URL): one poller per bot."""
        return self._webhook_url is None

    @property
    def polling(self) -> bool:
        """Whether this channel is long polling now."""
        return self._poller is not None

    async def start_polling(self) -> None:
        """Begin long polling (at start, or when this worker becomes the leader)."""
        if self._poller is not None:
            return
        await self._ready()
        await self.bot.delete_webhook()
        # From what Telegram holds unconfirmed: another poller may have gone on meanwhile.
        self._offset, self._fetched = None, {}
        self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
        logger.info("telegram long polling started as @%s", self.bot.username)

    async def stop_polling(self) -> None:
        """Stop long polling (this worker is no longer the leader); updates already fetched
        finish, and the next poller, here or elsewhere, goes on from the confirmed offset."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait({self._poller})
            self._poller = None

    async def stop(self) -> None:
        """Stop polling, let in-flight updates finish briefly, confirm offsets, close HTTP."""
        await self.stop_polling()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight.values()), timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self._advance()
        if self._offset is not None:
            # Confirms the updates handled, so a restart skips them (and only them: one whose
            # turn was not saved comes again).
            await self._quietly(self.bot.get_updates(offset=self._offset, timeout=0, limit=1))
        await self.bot.shutdown()

    def deliveries(self, message: BotMessage) -> list[BotMessage]:
        """One part per Bot API call: an image that cannot carry the text as its caption,
        each piece of a long text (the buttons on the last), then a ``custom`` payload."""
        chunks = split_text(message.text or "")
        if message.image and _caption_fits(message, chunks):
            whole = dataclasses.replace(message, custom=None)  # the text is the image's caption
            parts = [whole]
        else:
            bare = dataclasses.replace(message, text=None, buttons=(), image=None, custom=None)
            parts = [dataclasses.replace(bare, image=message.image)] if message.image else []
            parts += [dataclasses.replace(bare, text=chunk) for chunk in chunks]
            if parts and message.buttons:
                parts[-1] = dataclasses.replace(parts[-1], buttons=message.buttons)
            elif message.buttons:
                parts.append(dataclasses.replace(bare, buttons=message.buttons))
        if message.custom is not None:
            parts.append(dataclasses.replace(message, text=None, buttons=(), image=None))
        return [message] if len(parts) <= 1 else parts

    async def send(self, message: BotMessage) -> None:
        """Deliver text (split to fit), buttons, an image, then a ``custom`` payload, to the
        message's chat."""
        chat_id = _chat_id(message.conversation_id)
        try:
            await self._ready()
            await self._send_standard(chat_id, message)
            if message.custom is not None:
                await self._send_custom(chat_id, message)
            for attachment in message.attachments:
                await self._send_file(chat_id, attachment)
        except TelegramError as exc:
            raise _delivery_error(exc, message.conversation_id) from exc

    async def _send_standard(self, chat_id: int, message: BotMessage) -> None:
        markup = await keyboard(message.buttons, self._store) if message.buttons else None
        chunks = split_text(message.text or "")
        if message.image and not is_remote_file(message.image):
            logger.warning(
                "telegram image to %s skipped: image must be a URL or a Telegram file_id",
                message.conversation_id,
            )
        elif message.image:
            fits = _caption_fits(message, chunks)
            caption = chunks[0] if fits and chunks else None
            await self.bot.send_photo(
                chat_id, message.image, caption=caption, reply_markup=markup if fits else None
            )
            if fits:
                return
        await self._send_texts(chat_id, chunks, markup)

    async def _send_file(self, chat_id: int, attachment: Attachment) -> None:
        """A file kept by ``bot.files`` (an agent's): a photo when Telegram shows it as one."""
        blob = await self._files.get(attachment)
        upload = InputFile(blob.data, filename=blob.name)
        if blob.mime_type in _PHOTO_TYPES:
            await self.bot.send_photo(chat_id, upload)
        else:
            await self.bot.send_document(chat_id, upload)

    async def _send_custom(self, chat_id: int, message: BotMessage) -> None:
        """Send the payload as Rasa's ``send_custom_json`` would; skip, with a log line, one
        that could never be sent, so that it neither fails the turn nor is retried."""
        try:
            for method, kwargs in custom_calls(message.custom, chat_id):
                await getattr(self.bot, method)(chat_id=chat_id, **kwargs)
        except (TypeError, ValueError) as exc:
            logger.warning(
                "telegram custom payload to %s skipped: %s", message.conversation_id, exc
            )

    async def _send_texts(
        self, chat_id: int, chunks: list[str], markup: InlineKeyboardMarkup | None
    ) -> None:
        if not chunks and markup is not None:
            chunks = [BUTTONS_ONLY_TEXT]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            await self.bot.send_message(chat_id, chunk, reply_markup=markup if last else None)

    async def _ready(self) -> None:
        """Initialise the Bot once (``getMe``), whichever of start() and send() comes first."""
        async with self._ready_lock:
            if self._me is None:
                await self.bot.initialize()
                self._me = BotIdentity(id=self.bot.id, username=self.bot.username)

    async def _webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            logger.warning("telegram webhook call with a wrong or missing secret refused")
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            data = decode_json(body)  # read_update checks it, so that a bad update is acknowledged
        except BadRequestError as exc:
            logger.warning("telegram webhook body refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not isinstance(data, dict) or not _is_update_id(data.get("update_id")):
            logger.warning("telegram webhook body is not an update")
            return JSONResponse({"error": "body is not a Telegram update"}, status_code=400)
        task = self._read_and_accept(data)
        if task is not None:
            # Waited for, not awaited: Telegram hanging up must not cancel the turn.
            await asyncio.wait({task})
            if task.cancelled() or not task.result():
                return JSONResponse(
                    {"error": "not handled for now: send it again"},
                    status_code=503,
                    headers={"retry-after": str(RETRY_AFTER_SECONDS)},
                )
        return JSONResponse({"ok": True})

    def _read_and_accept(self, data: dict[str, Any]) -> asyncio.Task[bool] | None:
        """Start handling the update in ``data``: its task, None when there is nothing to
        run. One kefu cannot read is logged (why, not what) and dropped: answering an error
        would make Telegram redeliver it again and again."""
        try:
            update = read_update(data, self.bot)
        except UnreadableUpdateError as exc:
            logger.warning("telegram update %s ignored: %s", data["update_id"], exc)
            return None
        return self._accept(update) if update is not None else None

    async def _poll(self) -> None:
        delay = 0.0
        while True:
            try:
                batch = await self.bot.get_raw_updates(
                    offset=self._offset,
                    wait=self._poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                )
            except RetryAfter as exc:
                await asyncio.sleep(_retry_after(exc))
                continue
            except Exception as exc:
                delay = min(max(delay * 2, 1.0), MAX_POLL_BACKOFF)
                logger.warning(
                    "telegram getUpdates failed (%s: %s); retrying in %.0f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            for data in batch:
                update_id = data.get("update_id") if isinstance(data, dict) else None
                if not isinstance(update_id, int) or not _is_update_id(update_id):
                    logger.warning("telegram getUpdates returned something that is not an update")
                    continue
                if update_id in self._fetched:
                    continue  # running, or done while an older one still runs
                self._fetched[update_id] = self._read_and_accept(data)
            running = [task for task in self._fetched.values() if task and not task.done()]
            if running:  # getUpdates would hand them back at once: wait for one to end
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if self._advance():
                delay = min(max(delay * 2, 1.0), MAX_POLL_BACKOFF)
                logger.warning("telegram updates will be fetched again in %.0f s", delay)
                await asyncio.sleep(delay)
            else:
                delay = 0.0

    def _advance(self) -> bool:
        """Move the polling offset past the updates handled, oldest first, up to the first
        one still running or failed; True when one failed (it is fetched and run again)."""
        failed = blocked = False
        for update_id in sorted(self._fetched):
            task = self._fetched[update_id]
            if task is not None and not task.done():
                blocked = True
            elif task is not None and _failed(task):
                del self._fetched[update_id]
                failed = blocked = True
            elif not blocked:
                del self._fetched[update_id]
                self._offset = update_id + 1
        return failed

    def _accept(self, update: Update) -> asyncio.Task[bool] | None:
        """Queue an update behind earlier ones of its chat: the task that handles it, or
        the one handling it already (Telegram sent it again meanwhile)."""
        running = self._inflight.get(update.update_id)
        if running is not None:
            logger.info("telegram update %s delivered again while it runs", update.update_id)
            return running
        chat = update.effective_chat
        if chat is None:
            return None
        previous = self._chat_tails.get(chat.id)
        task = asyncio.create_task(self._process(update, chat.id, previous))
        self._inflight[update.update_id] = task
        self._chat_tails[chat.id] = task
        task.add_done_callback(partial(self._forget, update.update_id, chat.id))
        return task

    def _forget(self, update_id: int, chat_id: int, task: asyncio.Task[bool]) -> None:
        if self._inflight.get(update_id) is task:
            del self._inflight[update_id]
        if self._chat_tails.get(chat_id) is task:
            del self._chat_tails[chat_id]

    async def _process(
        self, update: Update, chat_id: int, previous: asyncio.Task[bool] | None
    ) -> bool:
        """Handle one update after the previous one of its chat: True once it is done with
        (its turn saved, or nothing to do); False when it failed for now (the database is
        away) and must come again. Any other failure would fail again: logged, done with."""
        if previous is not None:
            await asyncio.wait({previous})
        try:
            message = await self._translate(update)
            if message is not None:
                await self._handle(message, chat_id)
        except TransientError as exc:
            logger.warning(
                "telegram update %s not handled for now (%s): it comes again",
                update.update_id,
                type(exc).__name__,
            )
            return False
        except Exception:
            logger.exception("telegram update %s failed", update.update_id)
        return True

    async def _translate(self, update: Update) -> UserMessage | None:
        query = update.callback_query
        if query is None:
            return message_from_update(update, self._me)
        await self._acknowledge(query)
        if query.data is None:
            return None
        payload = await resolve_callback(query.data, self._store)
        if payload is None:
            logger.warning("telegram button key %s is unknown; passing its title", query.data)
        return callback_from_update(update, payload, button_title(query))

    async def _acknowledge(self, query: CallbackQuery) -> None:
        """Stop the button's spinner and remove the keyboard, so an answered question cannot
        be answered twice from stale buttons."""
        calls = [self._quietly(self.bot.answer_callback_query(query.id))]
        if isinstance(query.message, Message) and query.message.reply_markup is not None:
            edit = self.bot.edit_message_reply_markup(
                chat_id=query.message.chat.id, message_id=query.message.message_id
            )
            calls.append(self._quietly(edit))
        await asyncio.gather(*calls)

    async def _handle(self, message: UserMessage, chat_id: int) -> None:
        """Run the core's turn, showing ``typing`` while it takes noticeably long."""
        typing = asyncio.create_task(self._keep_typing(chat_id))
        try:
            await self.handler(message)
        finally:
            typing.cancel()
            await asyncio.wait({typing})

    async def _keep_typing(self, chat_id: int) -> None:
        await asyncio.sleep(self._typing_delay)
        while True:
            await self._quietly(self.bot.send_chat_action(chat_id, ChatAction.TYPING))
            await asyncio.sleep(TYPING_REPEAT)

    @staticmethod
    async def _quietly(call: Awaitable[Any]) -> None:
        """Courtesy calls (typing, button acknowledgements) must never fail a turn."""
        try:
            await call
        except TelegramError as exc:
            logger.warning("telegram call failed: %s", exc)


def _full_webhook_url(url: str) -> str:
    """``https://shop.example`` means the webhook route on that host."""
    return url.rstrip("/") + WEBHOOK_PATH if urlsplit(url).path in ("", "/") else url


def _failed(task: asyncio.Task[bool]) -> bool:
    """Whether a finished update's task left it to come again."""
    return task.cancelled() or not task.result()


def _is_update_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _chat_id(conversation_id: str) -> int:
    prefix, _, chat = conversation_id.partition(":")
    if prefix != CHANNEL or not chat.lstrip("-").isdigit():
        raise PermanentDeliveryError(f"not a Telegram conversation: {conversation_id!r}")
    return int(chat)


def _retry_after(exc: RetryAfter) -> float:
    # PTB warns on reading ``retry_after`` until it always returns a timedelta.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _delivery_error(exc: TelegramError, conversation_id: str) -> DeliveryError:
    """PTB's errors in kefu's terms: retry what may pass, give up on what never will."""
    where = f"telegram delivery to {conversation_id} failed: {exc.message}"
    if isinstance(exc, RetryAfter):
        return TransientDeliveryError(where, retry_after=_retry_after(exc))
    if isinstance(exc, BadRequest) and not _CHAT_GONE.search(exc.message):
        return RejectedMessageError(where)
    if isinstance(exc, Forbidden | BadRequest | ChatMigrated):
        return PermanentDeliveryError(where)
    return TransientDeliveryError(where)


_CHAT_GONE = re.compile(
    r"chat not found|not enough rights|have no rights|user is deactivated", re.I
)
"""Bad Request descriptions that concern the chat rather than one message."""


def _caption_fits(message: BotMessage, chunks: list[str]) -> bool:
    """Whether the whole text goes with the message's image as its caption."""
    return len(chunks) <= 1 and utf16_len(message.text or "") <= MAX_CAPTION
