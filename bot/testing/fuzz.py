"""Hypothesis strategies of hostile HTTP requests for every endpoint of ``kefu run``.

For kefu's fuzz tests and ``bench/fuzz.py``, and for a shop that fuzzes its own deployment::

    @given(fuzz.requests("rest"))
    def test_no_server_error(request):
        assert send(request).status_code < 500

Bodies mix the valid with the hostile: wrong types at every level, nesting hundreds deep,
integers past 64 bits, NUL and lone surrogates (escaped and raw), invalid UTF-8, UTF-16,
payloads (``/intent{...}``, ``/SetSlots(...)``) carrying the same, and Telegram updates with
out-of-range dates, strings for objects and lists for ids. Needs the ``hypothesis`` package
(kefu's ``test`` extra).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

__all__ = ["ENDPOINTS", "FuzzRequest", "requests"]

ENDPOINTS = ("rest", "webchat", "telegram", "pages", "anything")
"""What :func:`requests` can aim at: the REST webhook, the web chat's, Telegram's webhook,
the GET pages (health, web chat page and assets), and any method on any path."""


@dataclass(frozen=True)
class FuzzRequest:
    """One HTTP request to send: method, path, headers and body."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


_INT64 = 2**63
_texts = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8"), max_size=30),  # NUL and control characters too
    st.sampled_from(["", " ", "hi", "where is my order", "KF-10002", "alice@example.com"]),
    st.sampled_from(["4111 1111 1111 1111", "\x00", "\ud800", "a\udfffb", "\U0001f600"]),
)
_integers = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-(2**70), 2**70),
    st.sampled_from([_INT64 - 1, _INT64, -_INT64, -_INT64 - 1, 2**64, 10**30]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _integers,
    st.floats(allow_nan=True, allow_infinity=True),
    _texts,
)


def _deep(depth: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


_json_values = st.one_of(
    st.recursive(
        _scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(_texts, children, max_size=4)
        ),
        max_leaves=12,
    ),
    st.builds(_deep, st.integers(1, 600)),
)


def _anything_for(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good``, sometimes any JSON value in its place."""
    return st.one_of(good, good, good, _json_values)


def _encode(value: Any, how: str) -> bytes:
    """``value`` as a JSON body, in one of several encodings a client might use."""
    if how == "ascii":  # lone surrogates as \\u escapes, big integers as they are
        return json.dumps(value, ensure_ascii=True).encode()
    text = json.dumps(value, ensure_ascii=False)
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")  # raw surrogate bytes: invalid UTF-8


def _encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(_encode, values, st.sampled_from(["ascii", "utf-8", "utf-8", "utf-16"]))


_garbage = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 5000)),
    st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.integers(1, 5000)),
    st.sampled_from(
        [b"", b"null", b"NaN", b'{"a": NaN}', b"[1e999]", b"{" * 10, b"\xef\xbb\xbf{}"]
    ),
)

_payloads = st.one_of(
    st.builds(
        lambda name, body: f"/{name}{body}",
        st.sampled_from(["greet", "track_order", "x"]),
        st.builds(json.dumps, _json_values),
    ),
    st.builds(
        lambda slot, value: f"/SetSlots({slot}={value})",
        st.sampled_from(["order_id", "email", "verified_order", "x"]),
        st.one_of(_texts, st.builds(json.dumps, _json_values)),
    ),
    st.sampled_from(["/greet", "/SetSlots(verified_order=KF-10002)", "/", "//", "/restart"]),
)


def _rest_bodies(sender: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    body = st.fixed_dictionaries(
        {"sender": _anything_for(sender), "message": _anything_for(st.one_of(_texts, _payloads))},
        optional={
            "message_id": _anything_for(_texts),
            "metadata": _anything_for(st.dictionaries(_texts, _json_values, max_size=4)),
        },
    )
    return st.one_of(_encoded(body), _encoded(body), _encoded(_json_values), _garbage)


_content_types = st.one_of(
    st.just("application/json"),
    st.just("application/json"),
    st.just("application/json"),
    st.sampled_from(
        ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", ""]
    ),
)


def _post(
    path: str, bodies: st.SearchStrategy[bytes], **headers: str
) -> st.SearchStrategy[FuzzRequest]:
    return st.builds(
        lambda body, content_type: FuzzRequest(
            "POST", path, body, {**headers, "content-type": content_type}
        ),
        bodies,
        _content_types,
    )


# --- Telegram updates ------------------------------------------------------------------------

_ids = _anything_for(st.integers(-(10**13), 10**13))
_users = st.fixed_dictionaries(
    {"id": _ids, "is_bot": _anything_for(st.booleans()), "first_name": _anything_for(_texts)},
    optional={
        "language_code": _anything_for(st.sampled_from(["en", "zh-hans", "de"])),
        "username": _anything_for(_texts),
    },
)
_chats = st.fixed_dictionaries(
    {"id": _ids, "type": _anything_for(st.sampled_from(["private", "group", "supergroup"]))}
)
_dates = _anything_for(st.one_of(st.integers(0, 2**32), _integers))
_entities = st.lists(
    st.fixed_dictionaries(
        {
            "type": _anything_for(st.sampled_from(["bot_command", "mention", "url"])),
            "offset": _anything_for(st.integers(0, 40)),
            "length": _anything_for(st.integers(0, 40)),
        }
    ),
    max_size=3,
)


def _message(reply: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "message_id": _ids,
            "date": _dates,
            "chat": _anything_for(_chats),
            "from": _anything_for(_users),
        },
        optional={
            "text": _anything_for(st.one_of(_texts, _payloads, st.just("/start"))),
            "caption": _anything_for(_texts),
            "entities": _anything_for(_entities),
            "reply_to_message": reply,
            "photo": _anything_for(
                st.lists(
                    st.fixed_dictionaries(
                        {"file_id": _texts, "file_unique_id": _texts, "width": _ids, "height": _ids}
                    ),
                    max_size=2,
                )
            ),
            "edit_date": _dates,
        },
    )


_messages = _message(_anything_for(_message(st.none())))
_updates = st.fixed_dictionaries(
    {"update_id": _anything_for(st.integers(1, 10**9))},
    optional={
        "message": _anything_for(_messages),
        "edited_message": _anything_for(_messages),
        "callback_query": _anything_for(
            st.fixed_dictionaries(
                {"id": _texts, "from": _anything_for(_users), "chat_instance": _texts},
                optional={"data": _anything_for(_texts), "message": _anything_for(_messages)},
            )
        ),
        "channel_post": _json_values,
    },
)

# --- endpoints -------------------------------------------------------------------------------

_WEB_SENDERS = st.builds(lambda n: f"web-{n:032x}", st.integers(0, 2**128 - 1))
_GET_PATHS = [
    "/health",
    "/",
    "/webchat/static/chat.js",
    "/webchat/static/chat.css",
    "/webchat/static/index.html",
    "/webchat/static/nope",
    "/webhooks/rest/",
    "/health/",
    "/webhooks/rest/webhook/",
    "/%00",
    "/..%2f..%2fetc/passwd",
]


def requests(endpoint: str, *, telegram_secret: str = "") -> st.SearchStrategy[FuzzRequest]:
    """Requests for one of :data:`ENDPOINTS`; ``telegram_secret`` is sent with most Telegram
    updates, so that they get past the secret check to the parsing behind it."""
    if endpoint == "rest":
        return _post("/webhooks/rest/webhook", _rest_bodies(_texts))
    if endpoint == "webchat":
        return _post("/webchat/webhook", _rest_bodies(st.one_of(_WEB_SENDERS, _texts)))
    if endpoint == "telegram":
        secret = st.sampled_from([telegram_secret] * 4 + ["", "wrong"])
        return st.builds(
            lambda body, given: FuzzRequest(
                "POST",
                "/webhooks/telegram",
                body,
                {"content-type": "application/json", "x-telegram-bot-api-secret-token": given},
            ),
            st.one_of(_encoded(_updates), _encoded(_updates), _encoded(_updates), _garbage),
            secret,
        )
    if endpoint == "pages":
        return st.builds(
            lambda path, etag: FuzzRequest("GET", path, headers={"if-none-match": etag}),
            st.sampled_from(_GET_PATHS),
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
        )
    if endpoint == "anything":
        paths = st.one_of(
            st.sampled_from(
                [
                    *_GET_PATHS,
                    "/webhooks/rest/webhook",
                    "/webhooks/telegram",
                    "/webchat/webhook",
                    "/api/notify",
                    "/slack/events",
                ]
            ),
            st.builds(
                lambda s: "/" + s,
                st.text(
                    st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), max_size=30
                ),
            ),
        )
        return st.builds(
            FuzzRequest,
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
            paths,
            st.one_of(_garbage, _encoded(_json_values)),
            st.fixed_dictionaries({"content-type": _content_types}),
        )
    raise ValueError(f"unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
