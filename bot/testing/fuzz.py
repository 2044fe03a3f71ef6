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
from collections.abc import Callable
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


def _pick(*weighted: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, chosen in proportion to its weight (``one_of`` is not even)."""
    choices = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


def _anything_for(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good``, sometimes any JSON value in its place."""
    return _pick((3, good), (1, _json_values))


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


_plain_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=20)


_plain_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-1000, 1000),
        st.floats(allow_nan=False, allow_infinity=False),
        _plain_texts,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(_names, children, max_size=3)
    ),
    max_leaves=8,
)


def _rest_bodies(sender: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Half well-typed bodies (they reach the turn), half hostile ones."""
    typed = st.fixed_dictionaries(
        {"sender": sender, "message": st.one_of(_plain_texts, _payloads)},
        optional={
            "message_id": _names,
            "metadata": st.dictionaries(_names, _plain_json, max_size=4),
        },
    )
    hostile = st.fixed_dictionaries(
        {"sender": _anything_for(sender), "message": _anything_for(st.one_of(_texts, _payloads))},
        optional={
            "message_id": _anything_for(_texts),
            "metadata": _anything_for(st.dictionaries(_texts, _json_values, max_size=4)),
        },
    )
    well_encoded = st.builds(_encode, typed, st.sampled_from(["ascii", "utf-8"]))
    return st.one_of(
        well_encoded, well_encoded, _encoded(hostile), _encoded(_json_values), _garbage
    )


_content_types = st.sampled_from(
    ["application/json"] * 16
    + ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", ""]
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

Wrap = Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]]


def _same(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good


def _update(w: Wrap) -> st.SearchStrategy[dict[str, Any]]:
    """Telegram updates in the Bot API's shape; ``w`` wraps each field's strategy (``_same``
    for well-typed updates, ``_anything_for`` for hostile ones)."""
    ids = w(st.integers(-(10**13), 10**13))
    dates = w(st.one_of(st.integers(0, 2**32), _integers))
    user = st.fixed_dictionaries(
        {"id": ids, "is_bot": w(st.booleans()), "first_name": w(_texts)},
        optional={
            "language_code": w(st.sampled_from(["en", "zh-hans", "de"])),
            "username": w(_texts),
        },
    )
    chat = st.fixed_dictionaries(
        {"id": ids, "type": w(st.sampled_from(["private", "group", "supergroup"]))}
    )
    entities = st.lists(
        st.fixed_dictionaries(
            {
                "type": w(st.sampled_from(["bot_command", "mention", "url"])),
                "offset": w(st.integers(0, 40)),
                "length": w(st.integers(0, 40)),
            }
        ),
        max_size=3,
    )
    photo = st.fixed_dictionaries(
        {"file_id": w(_names), "file_unique_id": w(_names), "width": ids, "height": ids}
    )

    def message(reply: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {"message_id": ids, "date": dates, "chat": w(chat), "from": w(user)},
            optional={
                "text": w(st.one_of(_texts, _payloads, st.just("/start"))),
                "caption": w(_texts),
                "entities": w(entities),
                "reply_to_message": reply,
                "photo": w(st.lists(photo, max_size=2)),
                "edit_date": dates,
            },
        )

    messages = message(w(message(st.none())))
    query = st.fixed_dictionaries(
        {"id": w(_names), "from": w(user), "chat_instance": w(_names)},
        optional={"data": w(_texts), "message": w(messages)},
    )
    kinds = {"message": w(messages), "edited_message": w(messages), "callback_query": w(query)}
    if w is _same:  # one kind per update, as Telegram sends them
        return st.one_of(
            *[
                st.fixed_dictionaries({"update_id": st.integers(1, 10**9), kind: strategy})
                for kind, strategy in kinds.items()
            ]
        )
    return st.fixed_dictionaries(
        {"update_id": w(st.integers(1, 10**9))}, optional={**kinds, "channel_post": _json_values}
    )


_updates = _pick(
    (3, st.builds(_encode, _update(_same), st.sampled_from(["ascii", "utf-8"]))),
    (3, _encoded(_update(_anything_for))),
    (1, _garbage),
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
        return _post("/webhooks/rest/webhook", _rest_bodies(_names))
    if endpoint == "webchat":
        return _post(
            "/webchat/webhook", _rest_bodies(st.one_of(_WEB_SENDERS, _WEB_SENDERS, _names))
        )
    if endpoint == "telegram":
        secret = st.sampled_from([telegram_secret] * 4 + ["", "wrong"])
        return st.builds(
            lambda body, given: FuzzRequest(
                "POST",
                "/webhooks/telegram",
                body,
                {"content-type": "application/json", "x-telegram-bot-api-secret-token": given},
            ),
            _updates,
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
