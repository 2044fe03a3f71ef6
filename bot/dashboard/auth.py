"""The dashboard's login: the API token exchanged for a signed, expiring session cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

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
