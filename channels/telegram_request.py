"""python-telegram-bot's one HTTP seam (``BaseRequest.do_request``) served by aiohttp.

PTB's default httpx transport degrades past about 20 concurrent connections under load (as
measured for kefu); aiohttp's connector keeps a large pool cheaply, and this class is the only
place kefu's Telegram traffic touches HTTP.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

DEFAULT_POOL_SIZE = 256
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_POOL_TIMEOUT = 5.0


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` over one ``aiohttp.ClientSession`` with a ``pool_size`` connection pool."""

    def __init__(
        self,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        pool_timeout: float | None = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self._pool_size = pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """Seconds a read may take by default (PTB asks)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the aiohttp session."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector)

    async def shutdown(self) -> None:
        """Close the aiohttp session."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        write_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        connect_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        pool_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one Bot API call: JSON body, or multipart when PTB uploads files."""
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        # aiohttp's ``connect`` covers waiting for a pooled connection plus opening one.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        headers = {"User-Agent": self.USER_AGENT}
        body: aiohttp.FormData | bytes | None = None
        if request_data is not None and request_data.contains_files:
            body = _form(request_data)
        elif request_data is not None:
            body = request_data.json_payload
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut(f"Bot API call timed out: {url.rsplit('/', 1)[-1]}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _given(value: float | object | None, default: float | None) -> float | None:
    """PTB passes ``DEFAULT_NONE`` for "use the default" and ``None`` for "no timeout"."""
    if isinstance(value, int | float):
        return float(value)
    return None if value is None else default


def _form(request_data: RequestData) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form
