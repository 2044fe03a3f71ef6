"""The ``kefu`` command line, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.testing.cluster import free_port

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = Path(__file__).resolve().parent / "projects"


def kefu(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a cold model cache trains first, slow on a busy machine
    )


def test_validate_accepts_the_reference_shop(tmp_path: Path) -> None:
    result = kefu("validate", "--project", str(ROOT), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    result = kefu("validate", "--project", str(PROJECTS / "broken"), cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].endswith("problem(s) found")
    located = [line for line in lines[:-1] if ".yml:" in line]
    assert len(located) >= 5, result.stderr


def test_validate_invalid_yaml_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "domain.yml").write_text("intents: [greet\nresponses: {}\n", encoding="utf-8")
    result = kefu("validate", "--project", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "domain.yml:" in result.stderr and "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_an_invalid_project_with_the_same_messages(tmp_path: Path) -> None:
    result = kefu(
        "run", "--project", str(PROJECTS / "broken"), "--port", str(free_port()), cwd=tmp_path
    )
    validated = kefu("validate", "--project", str(PROJECTS / "broken"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == validated.stderr.splitlines()[-1]


def test_a_malformed_setting_fails_loudly_by_name(tmp_path: Path) -> None:
    result = kefu(
        "run", "--project", str(PROJECTS / "minimal"), cwd=tmp_path, env={"KEFU_PORT": "eighty"}
    )
    assert result.returncode == 2
    assert "KEFU_PORT" in result.stderr


def test_shell_chats_in_the_terminal(tmp_path: Path) -> None:
    env = {"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shell.db'}"}
    result = kefu(
        "shell", "--project", str(ROOT), cwd=tmp_path, env=env, stdin="where is my order\n/quit\n"
    )
    assert result.returncode == 0, result.stderr
    assert "order number" in result.stdout


def test_test_command_runs_conversation_tests(tmp_path: Path) -> None:
    result = kefu("test", "--project", str(PROJECTS / "minimal"), cwd=tmp_path)
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("0 failed"), result.stdout + result.stderr
    assert result.returncode == 0


async def test_run_serves_health_rest_and_the_web_chat(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"}
    process = subprocess.Popen(  # noqa: ASYNC220 - the server under test runs beside the loop
        [sys.executable, "-m", "bot.cli", "run", "--project", str(ROOT), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with http.get(f"{base}/health") as response:
                        assert response.status == 200
                        assert (await response.json())["status"] == "ok"
                        break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        error = process.stderr.read() if process.stderr else ""
                        pytest.fail(f"kefu run did not come up: {error}")
                    await asyncio.sleep(0.2)
            body = {"sender": "cli-test", "message": "where is my order"}
            async with http.post(f"{base}/webhooks/rest/webhook", json=body) as response:
                assert response.status == 200
                replies = await response.json()
            assert replies[0]["recipient_id"] == "cli-test"
            assert "order number" in replies[0]["text"]
            async with http.get(f"{base}/") as response:
                assert response.status == 200
                assert "<html" in (await response.text()).lower()
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
