"""Chat with the bot in a terminal (``kefu shell``).

Buttons are numbered; typing a number presses one. Input is read in a worker thread so that
the event loop keeps running timers and deliveries (a human agent's reply during a handoff is
printed as it arrives through :meth:`TerminalChannel.send`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from typing import TextIO

from bot.channel import Channel
from bot.errors import PermanentDeliveryError
from bot.events import BotMessage, Button, UserMessage, conversation_id_for

__all__ = ["QUIT_COMMAND", "TerminalChannel"]

QUIT_COMMAND = "/quit"


class TerminalChannel(Channel):
    """A read-eval-print loop over one conversation, ``shell:<sender>``."""

    name = "shell"
    replies_inline = True

    def __init__(self) -> None:
        super().__init__()
        self._output: TextIO | None = None
        self._buttons: list[Button] = []

    async def run(
        self,
        *,
        input_stream: TextIO | None = None,
        output: TextIO | None = None,
        sender: str = "shell-user",
    ) -> None:
        """Chat until ``/quit`` or end of input."""
        source = input_stream if input_stream is not None else sys.stdin
        self._output = output if output is not None else sys.stdout
        loop = asyncio.get_running_loop()
        prompt = source.isatty()
        try:
            while True:
                if prompt:
                    self._write("> ")
                line = await loop.run_in_executor(None, source.readline)
                if not line:
                    break
                text = line.strip()
                if text == QUIT_COMMAND:
                    break
                if text:
                    replies = await self.handler(self._message(text, sender))
                    self._show(replies, fresh=True)
        finally:
            self._output = None

    async def send(self, message: BotMessage) -> None:
        """Print ``message`` in the running shell session."""
        if self._output is None:
            raise PermanentDeliveryError("the shell session has ended")
        self._show([message], fresh=False)

    def _message(self, text: str, sender: str) -> UserMessage:
        payload = text if text.startswith("/") else None
        if text.isdigit() and 1 <= int(text) <= len(self._buttons):
            button = self._buttons[int(text) - 1]
            text, payload = button.title, button.payload
        return UserMessage(
            channel=self.name,
            conversation_id=conversation_id_for(self.name, sender),
            sender_id=sender,
            text=text,
            payload=payload,
        )

    def _show(self, messages: Iterable[BotMessage], *, fresh: bool) -> None:
        """Print messages; a turn's replies replace the buttons on offer, pushed ones add some."""
        if fresh:
            self._buttons = []
        for message in messages:
            if message.text:
                self._write(message.text + "\n")
            if message.image:
                self._write(f"[image] {message.image}\n")
            for button in message.buttons:
                self._buttons.append(button)
                self._write(f"  {len(self._buttons)}. {button.title}\n")
            if message.custom is not None:
                self._write(f"[custom] {json.dumps(message.custom, ensure_ascii=False)}\n")

    def _write(self, text: str) -> None:
        assert self._output is not None
        self._output.write(text)
        self._output.flush()
