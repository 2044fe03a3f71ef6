"""A throw-away PostgreSQL server of a test's own, to stop, start and restart under load.

A shared server must never be restarted by a test (others use it). This one is made with
``initdb`` in a temporary folder: trust authentication, listening on 127.0.0.1 only, on a free
port, its Unix socket inside the folder; ``pg_ctl`` stops and starts it; :meth:`destroy` stops
it and deletes the folder. PostgreSQL refuses to run as root, so as root every command runs as
the ``postgres`` system user through ``runuser``.

``fsync`` is off: this server is for faults of the process and the network, not power cuts.
Even a stop with ``mode="immediate"`` (the postmaster killed, recovery from the write-ahead
log on the next start) loses nothing committed, since the log is in the kernel's page cache.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

from bot.testing.cluster import free_port

__all__ = ["PrivatePostgres"]

_COMMAND_SECONDS = 60.0
"""How long ``initdb`` or one ``pg_ctl`` command may take."""
_VERSIONED_BIN = re.compile(r"^\d+$")


def _bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on ``PATH``, else Debian's newest
    ``/usr/lib/postgresql/<major>/bin``."""
    found = shutil.which("pg_ctl")
    if found is not None and shutil.which("initdb") is not None:
        return Path(found).parent
    root = Path("/usr/lib/postgresql")
    majors = [p for p in root.glob("*") if _VERSIONED_BIN.match(p.name)] if root.is_dir() else []
    for major in sorted(majors, key=lambda p: int(p.name), reverse=True):
        if (major / "bin" / "pg_ctl").exists() and (major / "bin" / "initdb").exists():
            return major / "bin"
    return None


class PrivatePostgres:
    """One private server; ``url`` is a ``postgresql://`` URL of its ``postgres`` database.

    ``user`` is the system user the server runs as when this process is root.
    """

    def __init__(self, *, user: str = "postgres") -> None:
        self._user = user
        self._bin = _bin_dir()
        self._folder: Path | None = None
        self.port = 0
        """The server's port, once created."""

    @staticmethod
    def missing(*, user: str = "postgres") -> str | None:
        """Why a private server cannot run here; None when it can."""
        if _bin_dir() is None:
            return (
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql"
            )
        if os.geteuid() != 0:
            return None  # the server runs as this user
        if shutil.which("runuser") is None:
            return "running as root without runuser: PostgreSQL refuses to run as root"
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no {user!r} user to run PostgreSQL as"
        return None

    @property
    def url(self) -> str:
        """The ``postgres`` database's URL (user ``postgres``, trust authentication)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> str:
        """The server's log so far."""
        if self._folder is None:
            return ""
        path = self._folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def create(self) -> None:
        """``initdb`` a new cluster in a temporary folder and start it."""
        reason = self.missing(user=self._user)
        if reason is not None:
            raise RuntimeError(f"a private PostgreSQL cannot run here: {reason}")
        self._folder = Path(tempfile.mkdtemp(prefix="kefu-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self._folder, user=self._user)
        data = self._folder / "data"
        await self._run(
            "initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.port = free_port()
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self._folder}'",
            "fsync": "off",
            "max_connections": "200",
        }
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        await self.start()

    async def start(self) -> None:
        """Start the server; return once it accepts connections."""
        await self._pg_ctl("start", "-l", str(self._require() / "server.log"))

    async def stop(self, *, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (sessions ended, a clean shutdown) or ``immediate`` (no
        shutdown at all, recovery on the next start)."""
        await self._pg_ctl("stop", "-m", mode)

    async def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        if self._folder is None:
            return
        folder = self._folder
        try:
            if (folder / "data" / "postmaster.pid").exists():
                await self._pg_ctl("stop", "-m", "immediate")
        finally:
            self._folder = None
            shutil.rmtree(folder, ignore_errors=True)

    def _require(self) -> Path:
        if self._folder is None:
            raise RuntimeError("the private PostgreSQL was not created")
        return self._folder

    async def _pg_ctl(self, action: str, *options: str) -> None:
        data = self._require() / "data"
        await self._run("pg_ctl", action, "-D", str(data), "-w", "-t", "30", *options)

    async def _run(self, program: str, *args: str) -> None:
        """Run one of the server's programs (as ``user`` when root); fail with its output."""
        assert self._bin is not None
        command = [str(self._bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self._user, "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._folder,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), _COMMAND_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"{program} {args[0]} took over {_COMMAND_SECONDS} s") from None
        if process.returncode != 0:
            raise RuntimeError(
                f"{program} {args[0]} failed ({process.returncode}):\n"
                f"{output.decode(errors='replace')}\n{self.log}"
            )
