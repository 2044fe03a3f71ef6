"""The dashboard's login: the API token exchanged for a signed, expiring session cookie, and
the throttle that makes guessing the token slow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bot import constants

COOKIE = "kefu_dashboard"


class Sessions:
    """Issues and checks session values signed with a key derived from ``KEFU_API_TOKEN``.

    Changing the token signs everybody out. The value carries only its expiry time.
    """

    def __init__(self, token: str, *, lifetime: float) -> None:
        self._token = token.encode()
        self._key = hashlib.sha256(b"kefu-dashboard-session:" + self._token).digest()
        self._lifetime = lifetime

    def token_matches(self, candidate: str) -> bool:
        """Whether ``candidate`` is the API token (compared in constant time)."""
        return hmac.compare_digest(candidate.encode(), self._token)

    def issue(self, *, now: float | None = None) -> str:
        """A new session value, valid for the configured lifetime."""
        expires = str(int((time.time() if now is None else now) + self._lifetime))
        return f"{expires}.{self._sign(expires)}"

    def valid(self, value: str | None, *, now: float | None = None) -> bool:
        """Whether ``value`` is a session this key signed and that has not expired."""
        if not value or "." not in value:
            return False
        expires, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign(expires)):
            return False
        try:
            return float(expires) > (time.time() if now is None else now)
        except ValueError:
            return False

    @property
    def lifetime(self) -> int:
        """Seconds a session cookie stays valid."""
        return int(self._lifetime)

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Slows down guessing: per client address, wrong tokens beyond a few free ones make the
    address wait, twice as long after each further wrong token (up to a cap).

    Only the address that sent the wrong tokens waits, so the right token still works from
    anywhere else. The counts live in this process (each worker throttles on its own).
    """

    def __init__(
        self,
        *,
        free: int = constants.LOGIN_FREE_FAILURES,
        base_delay: float = constants.LOGIN_BASE_DELAY,
        max_delay: float = constants.LOGIN_MAX_DELAY,
        forget_after: float = constants.LOGIN_FORGET_AFTER,
        capacity: int = constants.LOGIN_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free
        self._base = base_delay
        self._max = max_delay
        self._forget_after = forget_after
        self._capacity = capacity
        self._clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next login attempt (0: none)."""
        entry = self._entry(address)
        return 0.0 if entry is None else max(0.0, entry.blocked_until - self._clock())

    def failed(self, address: str) -> float:
        """Count a wrong token from ``address``; the seconds it must now wait (0: none)."""
        now = self._clock()
        entry = self._entry(address) or _Failures()
        entry.count += 1
        entry.last = now
        if entry.count >= self._free:
            delay = min(self._max, self._base * 2 ** (entry.count - self._free))
            entry.blocked_until = now + delay
        self._failures[address] = entry
        self._failures.move_to_end(address)
        while len(self._failures) > self._capacity:
            self._failures.popitem(last=False)
        return max(0.0, entry.blocked_until - now)

    def succeeded(self, address: str) -> None:
        """The right token came from ``address``: its failures are forgotten."""
        self._failures.pop(address, None)

    def _entry(self, address: str) -> _Failures | None:
        entry = self._failures.get(address)
        if entry is not None and self._clock() - entry.last > self._forget_after:
            del self._failures[address]
            return None
        return entry
