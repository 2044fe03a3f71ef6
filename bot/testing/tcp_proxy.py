"""A small TCP proxy on 127.0.0.1: round-robin over several backends, and a cable to cut.

For tests and benchmarks of several workers: in front of N ``kefu run`` workers it plays the
load balancer (a backend that refuses connections is skipped); in front of PostgreSQL it is
a network fault that can be switched on and off (:meth:`TcpProxy.cut` closes every connection
and refuses new ones until :meth:`TcpProxy.restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

__all__ = ["TcpProxy"]

_CHUNK = 65536


class TcpProxy:
    """Forward connections to ``backends`` ((host, port) pairs), taking turns."""

    def __init__(self, backends: Sequence[tuple[str, int]], *, host: str = "127.0.0.1") -> None:
        if not backends:
            raise ValueError("a proxy needs at least one backend")
        self._backends = list(backends)
        self._host = host
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self.port = 0
        """The port the proxy listens on, once started."""
        self.connections = 0
        """Connections forwarded so far."""

    async def start(self) -> int:
        """Listen on a free port; return it."""
        self._server = await asyncio.start_server(self._accept, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        """Close every open connection and refuse new ones, as a network failure would."""
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._cut = False

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        upstream = await self._connect()
        if upstream is None:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = upstream
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next backend that accepts one; None when none does."""
        start = next(self._turn)
        for offset in range(len(self._backends)):
            host, port = self._backends[(start + offset) % len(self._backends)]
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(host, port)
        return None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until either side closes; then close the other too."""
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
