"""The terminal REPL, driven through in-memory streams."""

from __future__ import annotations

import io

import pytest

from bot.errors import PermanentDeliveryError
from bot.events import BotMessage, Button, UserMessage
from channels.terminal import TerminalChannel


class MenuCore:
    """Stands in for ``TurnRunner.handle``: echoes, and offers two buttons and an image."""

    def __init__(self) -> None:
        self.received: list[UserMessage] = []

    async def __call__(self, message: UserMessage) -> list[BotMessage]:
        self.received.append(message)
        cid = message.conversation_id
        return [
            BotMessage(conversation_id=cid, text=f"you said {message.text}"),
            BotMessage(
                conversation_id=cid,
                text="Pick one:",
                image="https://shop.example/menu.png",
                buttons=(
                    Button(title="Track order", payload="/track_order"),
                    Button(title="Talk to a human", payload="/human_handoff"),
                ),
            ),
        ]


async def chat(lines: str, *, sender: str = "shell-user") -> tuple[MenuCore, str]:
    core = MenuCore()
    shell = TerminalChannel()
    shell.attach(core)
    output = io.StringIO()
    await shell.run(input_stream=io.StringIO(lines), output=output, sender=sender)
    return core, output.getvalue()


async def test_text_turn_prints_replies() -> None:
    core, printed = await chat("hello\n", sender="tester")
    [message] = core.received
    assert (message.channel, message.conversation_id) == ("shell", "shell:tester")
    assert (message.sender_id, message.text, message.payload) == ("tester", "hello", None)
    assert printed == (
        "you said hello\n"
        "Pick one:\n"
        "[image] https://shop.example/menu.png\n"
        "  1. Track order\n"
        "  2. Talk to a human\n"
    )


async def test_number_presses_a_button() -> None:
    core, _ = await chat("hi\n2\n")
    pressed = core.received[1]
    assert (pressed.text, pressed.payload) == ("Talk to a human", "/human_handoff")


async def test_number_without_such_button_is_text() -> None:
    core, _ = await chat("7\nhi\n9\n")
    assert [(m.text, m.payload) for m in core.received] == [("7", None), ("hi", None), ("9", None)]


async def test_slash_command_is_a_payload() -> None:
    core, _ = await chat("/restart\n")
    assert core.received[0].payload == "/restart"


async def test_quit_ends_the_session() -> None:
    core, _ = await chat("hi\n/quit\nnot read\n")
    assert [m.text for m in core.received] == ["hi"]


async def test_eof_ends_and_blank_lines_are_skipped() -> None:
    core, printed = await chat("\n   \n")
    assert core.received == []
    assert printed == ""


async def test_pushed_message_is_printed_during_the_session_only() -> None:
    shell = TerminalChannel()
    output = io.StringIO()

    class PushingCore(MenuCore):
        async def __call__(self, message: UserMessage) -> list[BotMessage]:
            await shell.send(
                BotMessage(
                    conversation_id=message.conversation_id,
                    text="Agent Mei joined",
                    buttons=(Button(title="Thanks", payload="/thank"),),
                    custom={"note": "好的"},
                )
            )
            return []

    shell.attach(PushingCore())
    await shell.run(input_stream=io.StringIO("hi\n"), output=output)
    assert output.getvalue() == 'Agent Mei joined\n  1. Thanks\n[custom] {"note": "好的"}\n'
    with pytest.raises(PermanentDeliveryError):
        await shell.send(BotMessage(conversation_id="shell:shell-user", text="late"))
