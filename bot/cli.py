"""The ``kefu`` command: ``run``, ``shell``, ``validate``, ``test`` and ``init``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from bot.errors import KefuError, ProjectError, SettingsError
from bot.privacy import install_log_redaction
from bot.settings import Settings

log = logging.getLogger("kefu")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kefu`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()  # no card number, e-mail or phone number in any log line
    if not args.verbose:  # one line per registered action or job run drowns what matters
        logging.getLogger("rasa_sdk.executor").setLevel(logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if args.command == "init":
        return init(Path(args.directory))
    project = Path(args.project).resolve()
    try:
        if args.command == "validate":
            return validate(project)
        if args.command == "test":
            from bot.testing.e2e import main_test

            return main_test(project, [Path(p) for p in args.paths])
        settings = Settings.from_env(env_file=project / ".env", project_dir=project)
        if args.command == "shell":
            return _run_async(shell(project, settings))
        host = args.host or settings.host
        port = args.port if args.port is not None else settings.port
        return _run_async(run(project, settings, host=host, port=port))
    except ProjectError as err:
        _print_problems(err.problems)
        return 1
    except SettingsError as err:
        print(f"kefu: setting error: {err}", file=sys.stderr)
        return 2
    except KefuError as err:
        print(f"kefu: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (a faster event loop), else on asyncio's own."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kefu", description="Customer-service chatbot for online shops."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="serve REST, web chat, Telegram and Slack")
    run_cmd.add_argument("--host", default=None, help="address to listen on (KEFU_HOST)")
    run_cmd.add_argument("--port", type=int, default=None, help="port to listen on (KEFU_PORT)")
    commands.add_parser("shell", help="chat with the bot in this terminal")
    commands.add_parser("validate", help="check the project; exit 1 on any problem")
    test_cmd = commands.add_parser("test", help="run conversation tests")
    test_cmd.add_argument("paths", nargs="*", help="test files or folders (default: the project's)")
    for sub in commands.choices.values():
        sub.add_argument("--project", default=".", help="project directory (default: .)")
    init_cmd = commands.add_parser("init", help="write a starter project (en + zh)")
    init_cmd.add_argument("directory", nargs="?", default=".", help="where (default: .)")
    return parser


def init(directory: Path) -> int:
    """Write the starter project into ``directory``; 1 when it is not empty."""
    from bot.starter import init_project

    try:
        files = init_project(directory)
    except KefuError as err:
        print(f"kefu: {err}", file=sys.stderr)
        return 1
    print(f"kefu: wrote a starter project to {directory} ({len(files)} files). Next:")
    print(f"  kefu validate --project {directory}")
    print(f"  kefu test --project {directory}")
    print(f"  kefu shell --project {directory}")
    return 0


def validate(project_dir: Path) -> int:
    """Print every problem with file and line; 0 when there are none. What a Rasa project's
    config.yml or endpoints.yml asks for that kefu does not do is a warning, not a problem."""
    from bot.project import inspect_project
    from bot.rasa_config import read_rasa_config

    _, problems = inspect_project(project_dir)
    if project_dir.is_dir():
        for warning in read_rasa_config(project_dir).warnings:
            print(f"warning: {warning}")
    if problems:
        _print_problems(problems)
        return 1
    print(f"{project_dir}: the project is valid")
    return 0


def _print_problems(problems: Sequence[object]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s) found", file=sys.stderr)


async def run(project_dir: Path, settings: Settings, *, host: str, port: int) -> int:
    """Serve the project until interrupted."""
    from bot.app import build_server
    from bot.server import create_app, serve

    server = await build_server(project_dir, settings)
    app = create_app(
        channels=server.channels,
        health=server.health,
        on_startup=server.on_startup,
        on_shutdown=server.on_shutdown,
        routes=server.routes,
    )
    names = ", ".join(sorted({c.name for c in server.channels}))
    log.info("kefu serving %s on http://%s:%s (channels: %s)", project_dir, host, port, names)
    await serve(app, host=host, port=port)
    return 0


async def shell(project_dir: Path, settings: Settings) -> int:
    """Chat in the terminal with the project's bot."""
    from bot.app import build, shell_channel

    app, _ = await build(project_dir, settings, with_channels=False)
    terminal = shell_channel()
    app.add_channel(terminal)
    try:
        await terminal.run()
    finally:
        await app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
