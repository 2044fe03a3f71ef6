"""``/dashboard``: the shop's figures, conversations and unknown messages, behind a login.

Every route but the login answers a visitor without a valid session cookie with a redirect to
the login form (pages) or 401 (exports). The pages are plain HTML rendered here; charts are
SVG drawn on the server, so nothing is loaded from elsewhere.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot import constants
from bot.dashboard import charts
from bot.dashboard.auth import COOKIE, LoginThrottle, Sessions
from bot.dashboard.groups import Embed, encoder_embed, group_messages, nlu_yaml
from bot.dashboard.i18n import LANGUAGES, words
from bot.privacy import mask_personal_data
from bot.reporting import Figures, Query, Reporting

__all__ = ["dashboard_routes"]

PERIODS = (1, 7, 30, 90, 365)
MAX_GROUPED = 1000
"""Unknown messages grouped at most per page (the newest)."""
_INTENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    pass


@dataclass(frozen=True)
class _Filters:
    days: int
    group: str
    channel: str
    language: str

    def query(self, *, now: float, window: float) -> Query:
        """The last ``days`` UTC days, today included."""
        midnight = now - now % 86400
        return Query(
            since=midnight - (self.days - 1) * 86400,
            until=now + 1,
            channel=self.channel,
            language=self.language,
            group=self.group,
            window=window,
        )


def dashboard_routes(
    reporting: Reporting,
    *,
    api_token: str,
    containment_window: float = constants.DEFAULT_CONTAINMENT_WINDOW,
    embed: Embed = encoder_embed,
    throttle: LoginThrottle | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes over ``reporting``; mount them only when ``api_token`` is set.

    ``throttle`` slows down wrong tokens per client address (a default one when not given).
    """
    sessions = Sessions(api_token, lifetime=constants.DASHBOARD_SESSION_SECONDS)
    throttle = throttle or LoginThrottle()
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
    )

    def render(request: Request, template: str, *, page: str = "", **values: Any) -> Response:
        ui = _ui(request.query_params)
        params = dict(request.query_params)

        def link(path: str) -> str:
            # Exports keep the page's filters; navigation keeps only the interface language.
            kept = params if path.endswith(".csv") else {"ui": ui}
            return f"{path}?{urlencode(kept)}"

        other = {**params, "ui": "en" if ui == "zh" else "zh"}
        html = env.get_template(template).render(
            t=words(ui),
            ui=ui,
            page=page,
            nav=page != "",
            link=link,
            quote=lambda s: quote(s, safe=""),
            other_ui=f"{request.url.path}?{urlencode(other)}",
            pct=_pct,
            dur=_duration,
            num=lambda v: "–" if v is None else f"{v:.2f}",
            when=_when,
            **values,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def guarded(handler: _Handler, *, page: bool = True) -> _Handler:
        async def endpoint(request: Request) -> Response:
            if not sessions.valid(request.cookies.get(COOKIE)):
                if page and request.method == "GET":
                    ui = _ui(request.query_params)
                    return RedirectResponse(f"/dashboard/login?ui={ui}", status_code=303)
                return PlainTextResponse("sign in first", status_code=401)
            try:
                return await handler(request)
            except _BadRequest as exc:
                return PlainTextResponse(str(exc), status_code=400)

        return endpoint

    async def login_form(request: Request) -> Response:
        return render(request, "login.html", error=False)

    def too_many(request: Request, wait: float) -> Response:
        response = render(request, "login.html", error=False, wait=math.ceil(wait))
        response.status_code = 429
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response

    async def login(request: Request) -> Response:
        address = request.client.host if request.client else ""
        wait = throttle.retry_after(address)
        if wait > 0:
            return too_many(request, wait)
        try:
            form = await _form(request)
        except _BadRequest:
            form = {}
        token = (form.get("token") or [""])[0]
        if not sessions.token_matches(token):
            wait = throttle.failed(address)
            if wait > 0:
                return too_many(request, wait)
            response = render(request, "login.html", error=True)
            response.status_code = 401
            return response
        throttle.succeeded(address)
        response = RedirectResponse(f"/dashboard?ui={_ui(request.query_params)}", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(),
            max_age=sessions.lifetime,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def figures_for(request: Request) -> tuple[_Filters, Figures]:
        filters = _filters(request.query_params)
        await reporting.refresh(budget=constants.DASHBOARD_REFRESH_BUDGET)
        query = filters.query(now=time.time(), window=containment_window)
        return filters, await reporting.figures(query)

    async def overview(request: Request) -> Response:
        filters, f = await figures_for(request)
        title = words(_ui(request.query_params))
        drawn = {
            "per_period": charts.bar_chart(
                [(p.label, p.conversations) for p in f.periods], title=title["per_period"]
            ),
            "containment": charts.bar_chart(
                [(p.label, p.containment or 0.0) for p in f.periods],
                title=title["containment_per_period"],
                color="#1f9d55",
                percent=True,
            ),
            "reasons": charts.hbars(
                f.handoff_reasons, title=title["handoff_reasons"], color="#d9822b"
            ),
            "csat": charts.hbars(
                [(str(score), n) for score, n in f.csat_distribution.items()],
                title=title["csat_distribution"],
                color="#8e44ad",
            ),
            "intents": charts.hbars(f.intents[:12], title=title["top_intents"]),
            "llm": charts.bar_chart(
                [(p.label, p.llm_calls) for p in f.periods if p.llm_calls],
                title=title["llm_per_period"],
                color="#6c757d",
            ),
        }
        return render(
            request,
            "overview.html",
            page="overview",
            q=filters,
            f=f,
            charts=drawn,
            window=_duration(containment_window),
        )

    async def figures_csv(request: Request) -> Response:
        _, f = await figures_for(request)
        rows: list[list[Any]] = [
            [
                "period",
                "conversations",
                "contained",
                "settled",
                "handoffs",
                "llm_calls",
                "llm_failures",
                "llm_tokens",
            ]
        ]
        rows += [
            [
                p.label,
                p.conversations,
                p.contained,
                p.settled,
                p.handoffs,
                p.llm_calls,
                p.llm_failures,
                p.llm_tokens,
            ]
            for p in f.periods
        ]
        rows += [[], ["figure", "value"]]
        rows += [
            ["conversations", f.conversations],
            ["containment", _fraction(f.containment)],
            ["contained", f.contained],
            ["settled", f.settled],
            ["still_open", f.pending],
            ["handoffs", f.handoffs],
            ["handoff_rate", _fraction(f.handoff_rate)],
            ["time_to_claim_p50_s", _fraction(f.claim_seconds[0])],
            ["time_to_claim_p90_s", _fraction(f.claim_seconds[1])],
            ["handling_time_p50_s", _fraction(f.handling_seconds[0])],
            ["handling_time_p90_s", _fraction(f.handling_seconds[1])],
            ["csat_answers", f.csat_answers],
            ["csat_response_rate", _fraction(f.csat_response_rate)],
            ["not_understood", f.not_understood],
            ["llm_calls", f.llm_calls],
            ["llm_failures", f.llm_failures],
            ["llm_prompt_tokens", f.llm_prompt_tokens],
            ["llm_completion_tokens", f.llm_completion_tokens],
        ]
        rows += [[f"handoff_reason:{r}", n] for r, n in f.handoff_reasons]
        rows += [[f"csat_score:{s}", n] for s, n in f.csat_distribution.items()]
        rows += [[f"intent:{name}", n] for name, n in f.intents]
        for flow, started, completed, cancelled in f.flows:
            rows += [
                [f"flow_started:{flow}", started],
                [f"flow_completed:{flow}", completed],
                [f"flow_cancelled:{flow}", cancelled],
            ]
        return _csv(rows, "kefu-figures.csv")

    async def list_conversations(request: Request) -> tuple[_Filters, dict[str, Any]]:
        params = request.query_params
        filters = _filters(params)
        handoff = params.get("handoff", "")
        if handoff not in ("", "yes", "no"):
            raise _BadRequest("handoff must be yes, no or empty")
        search, intent = params.get("q", "").strip()[:200], params.get("intent", "").strip()[:100]
        await reporting.refresh(budget=constants.DASHBOARD_REFRESH_BUDGET)
        rows = await reporting.conversations(
            filters.query(now=time.time(), window=containment_window),
            search=search,
            intent=intent,
            handoff=None if not handoff else handoff == "yes",
            limit=1000 if request.url.path.endswith(".csv") else 200,
        )
        return filters, {"rows": rows, "search": search, "intent": intent, "handoff": handoff}

    async def conversations(request: Request) -> Response:
        filters, values = await list_conversations(request)
        export = f"/dashboard/export/conversations.csv?{urlencode(dict(request.query_params))}"
        return render(
            request, "conversations.html", page="conversations", q=filters, export=export, **values
        )

    async def conversations_csv(request: Request) -> Response:
        _, values = await list_conversations(request)
        rows: list[list[Any]] = [
            [
                "conversation_id",
                "channel",
                "language",
                "started_at",
                "last_active_at",
                "customer_messages",
                "handoff_reason",
                "csat",
            ]
        ]
        rows += [
            [
                r.conversation_id,
                r.channel,
                r.language,
                _when(r.started_at),
                _when(r.last_active_at),
                r.user_messages,
                r.handoff_reason or "",
                "" if r.csat is None else r.csat,
            ]
            for r in values["rows"]
        ]
        return _csv(rows, "kefu-conversations.csv")

    async def conversation(request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        events = await reporting.transcript(conversation_id)
        if events is None:
            missing = render(request, "missing.html", page="conversations")
            missing.status_code = 404
            return missing
        lines = [line for line in map(_line, events) if line is not None]
        t = words(_ui(request.query_params))
        for line in lines:
            line.who = t.get(line.who, line.who)
        return render(
            request,
            "conversation.html",
            page="conversations",
            conversation_id=conversation_id,
            lines=lines,
        )

    async def unknown(request: Request) -> Response:
        filters = _filters(request.query_params)
        await reporting.refresh(budget=constants.DASHBOARD_REFRESH_BUDGET)
        messages = await reporting.unknown_messages(
            filters.query(now=time.time(), window=containment_window), limit=MAX_GROUPED
        )
        groups = await asyncio.to_thread(group_messages, messages, embed=embed)
        return render(request, "unknown.html", page="unknown", q=filters, groups=groups)

    async def unknown_export(request: Request) -> Response:
        form = await _form(request)
        intent = (form.get("intent") or [""])[0]
        if not _INTENT.fullmatch(intent):
            raise _BadRequest("intent must be a name of letters, digits and _")
        texts = [mask_personal_data(t) for t in form.get("text", [])]
        if not texts:
            raise _BadRequest("no examples to export")
        return PlainTextResponse(
            nlu_yaml(intent, texts[:MAX_GROUPED]),
            media_type="application/x-yaml",
            headers={"Content-Disposition": f'attachment; filename="nlu_{intent}.yml"'},
        )

    return [
        Route("/dashboard/login", login_form, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard", guarded(overview), methods=["GET"]),
        Route("/dashboard/conversations", guarded(conversations), methods=["GET"]),
        Route(
            "/dashboard/conversations/{conversation_id:path}",
            guarded(conversation),
            methods=["GET"],
        ),
        Route("/dashboard/unknown", guarded(unknown), methods=["GET"]),
        Route("/dashboard/unknown/export", guarded(unknown_export, page=False), methods=["POST"]),
        Route("/dashboard/export/figures.csv", guarded(figures_csv, page=False), methods=["GET"]),
        Route(
            "/dashboard/export/conversations.csv",
            guarded(conversations_csv, page=False),
            methods=["GET"],
        ),
    ]


@dataclass
class _Line:
    timestamp: float
    who: str
    text: str
    detail: str = ""


def _line(event: dict[str, Any]) -> _Line | None:
    """One transcript line for an event, personal data masked; None for internal events."""
    kind = event.get("event")
    ts = float(event.get("timestamp") or 0.0)
    if kind == "user":
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        text = str(event.get("text") or event.get("payload") or "")
        return _Line(ts, "customer", mask_personal_data(text), f"[{intent}]" if intent else "")
    if kind == "bot":
        return _Line(ts, "bot", mask_personal_data(str(event.get("text") or "")))
    if kind == "agent_message":
        return _Line(ts, "agent", mask_personal_data(str(event.get("text") or "")))
    if kind == "slot":
        value = mask_personal_data(str(event.get("value")))
        return _Line(ts, "", "", f"slot {event.get('name')} = {value}")
    if kind in ("flow_started", "flow_completed", "flow_cancelled", "flow_interrupted"):
        return _Line(ts, "", "", f"{kind} {event.get('flow_id')}")
    if kind == "handoff_requested":
        return _Line(ts, "", "", f"handoff requested ({event.get('reason') or 'asked'})")
    if kind in ("agent_joined", "handoff_resolved", "agent_note"):
        note = mask_personal_data(str(event.get("text") or ""))
        return _Line(ts, "", "", f"{kind} {event.get('agent') or ''} {note}".strip())
    if kind == "csat_comment" or (kind == "csat_answer" and event.get("comment")):
        # (A conversation stored before csat_comment has the comment as a second answer.)
        comment = mask_personal_data(str(event.get("comment") or ""))
        return _Line(ts, "", "", f"CSAT comment: {comment}")
    if kind == "csat_answer":
        return _Line(ts, "", "", f"CSAT {event.get('score')}")
    return None


async def _form(request: Request) -> dict[str, list[str]]:
    """A URL-encoded form body (the only kind the pages send)."""
    try:
        body = (await request.body()).decode()
        return parse_qs(body, max_num_fields=MAX_GROUPED + 10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest("the form must be URL-encoded UTF-8 with few fields") from None


def _ui(params: QueryParams) -> str:
    ui = params.get("ui", "en")
    return ui if ui in LANGUAGES else "en"


def _filters(params: QueryParams) -> _Filters:
    try:
        days = int(params.get("days", "30"))
    except ValueError:
        raise _BadRequest("days must be a whole number") from None
    if days not in PERIODS:
        raise _BadRequest(f"days must be one of {', '.join(map(str, PERIODS))}")
    group = params.get("group", "day")
    if group not in ("day", "week"):
        raise _BadRequest("group must be day or week")
    return _Filters(
        days=days,
        group=group,
        channel=params.get("channel", "").strip()[:50],
        language=params.get("language", "").strip()[:10],
    )


def _csv(rows: list[list[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")
