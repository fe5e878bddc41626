"""The monitoring pages of ``allora-gitops serve``: server-rendered HTML (Jinja2, no JavaScript), signed in with
the same API tokens as the API.

- ``GET /login``, ``POST /login``: a form that takes an API token and sets the session cookie;
- ``POST /logout``: ends the session on the server (the old cookie is refused from then on) and clears it;
- ``GET /``: the caller's deployments (every one for an admin), a page at a time (``?after=``, filters ``owner``,
  ``network``, ``state``, ``prefix``: docs/reference/paging.md): name, network, version, state, last
  successful submission, success rate and p95 latency over 24 h;
- ``GET /deployments/{id}``: one deployment: state, rates and latency per window, a success/failure chart
  and a latency chart (inline SVG), recent results, refusals with their reasons, resources (CPU and
  memory against the limits, restarts, from Prometheus when ``--prometheus-url`` is set), the ``kubectl logs``
  command for its pod. Another user's deployment is a 404, as in the API.

The session cookie is ``<token prefix>.<expiry>.<session id>.<HMAC-SHA256>``, keyed by the token's stored sha256
(which never leaves the server): the token itself is not in it. Each sign-in is a row of ``web_sessions`` keyed
by the sha256 of the random session id (migration 0011), so sign-out ends it for every replica; revoking or
expiring the token ends it too. It is HttpOnly, SameSite=Strict, and Secure when the request came over HTTPS
(directly, or through a proxy in ``--forwarded-allow-ips`` sending ``X-Forwarded-Proto: https``) or when
``ALLORA_API_SECURE_COOKIES`` is true.
Forms carry a CSRF token: the logout form's is an HMAC of the session; the login form's is a random value
also set in a short-lived cookie (double submit, OWASP CSRF Prevention Cheat Sheet).
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timezone
from hashlib import sha256
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from allora_gitops.api.dependencies import get_settings, open_session
from allora_gitops.api.auth import TOKEN_PREFIX, Principal, token_prefix
from allora_gitops.api.settings import ApiSettings

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def when(t) -> Markup:
    """An aware time as ``<time datetime=ISO>YYYY-MM-DD HH:MM:SS UTC</time>`` (shown in UTC whatever the database
    session's zone), ``never`` for None (the pages' ``when``)."""
    if not t:
        return Markup("never")
    # an f-string, not Markup.format (string.Formatter: 40 % of a 1,000-row page's rendering) nor escape(): a
    # datetime's isoformat and this strftime give digits, "-", ":", ".", "+", "T", " " and "UTC", nothing to escape
    return Markup(f'<time datetime="{t.isoformat()}">{t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}</time>')


def rate(w) -> str:
    """A ``WindowStats``' success rate as ``80.0 %``; ``–`` when there is none."""
    return f"{w.success_rate * 100:.1f} %" if w and w.success_rate is not None else "–"


def ms(v) -> str:
    """Milliseconds as ``412 ms``, with one decimal below 10 ms (``0.4 ms``, as ``status`` prints them, not
    ``0 ms``); ``–`` for None."""
    if v is None:
        return "–"
    return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"


def lifecycle(stage) -> Markup:
    """A ``lifecycle.Lifecycle`` as ``<strong>stage</strong><br><small>reason</small>`` (both escaped)."""
    return Markup(f"<strong>{escape(stage.stage)}</strong><br><small>{escape(stage.reason)}</small>")


# filters, not only macros: a macro call costs ~10 µs, four per row of a 1,000-row table (benchmarks/bench_pages.py)
templates.env.filters.update(when=when, rate=rate, ms=ms, lifecycle=lifecycle)
SESSION_COOKIE = "allora_session"
LOGIN_CSRF_COOKIE = "allora_login_csrf"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 3600
RECENT = 20
CHART_WIDTH, CHART_HEIGHT = 720, 160
LATENCY_MARK_RADIUS = 3.5  # the latency chart's points (deployment.html)
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"}  # fmt: skip


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf: str  # what the logout form must send back


def _sign(key: str, purpose: str, payload: str) -> str:
    return hmac.new(key.encode(), f"{purpose}:{payload}".encode(), sha256).hexdigest()


def start_session(conn, prefix: str, key: str) -> str:
    """Record a new sign-in of the token ``prefix`` (stored sha256 ``key``); its cookie value. Sessions that ended
    a day ago or more are deleted on the way (they only ever refuse)."""
    session_id = secrets.token_urlsafe(32)
    expires = int(time.time()) + SESSION_SECONDS
    conn.execute("DELETE FROM web_sessions WHERE expires_at < now() - interval '1 day'")
    conn.execute(
        """INSERT INTO web_sessions (sha256, token_id, expires_at)
           SELECT %s, id, to_timestamp(%s) FROM api_tokens WHERE prefix = %s""",
        (sha256(session_id.encode()).hexdigest(), expires, prefix),
    )
    payload = f"{prefix}.{expires}.{session_id}"
    return f"{payload}.{_sign(key, 'session', payload)}"


def end_session(conn, cookie: Optional[str]) -> None:
    """Sign-out: the cookie's session row ends now (its signature was checked by :func:`read_session`)."""
    session_id = _cookie_parts(cookie)[2]
    if session_id:
        conn.execute("UPDATE web_sessions SET ended_at = coalesce(ended_at, now()) WHERE sha256 = %s", (sha256(session_id.encode()).hexdigest(),))


def _cookie_parts(cookie: Optional[str]) -> tuple[str, str, str, str]:
    parts = (cookie or "").split(".")
    return tuple(parts) if len(parts) == 4 else ("", "", "", "")  # type: ignore[return-value]


def read_session(cookie: Optional[str], accounts) -> Optional[WebSession]:
    """The session of a cookie value when its signature holds, it has not expired or ended, and its token is still live."""
    prefix, expires, session_id, signature = _cookie_parts(cookie)
    if not prefix.startswith(TOKEN_PREFIX) or not expires.isdigit() or int(expires) < time.time() or not session_id:
        return None
    found = accounts.live_token(prefix)
    payload = f"{prefix}.{expires}.{session_id}"
    if found is None or not hmac.compare_digest(signature, _sign(found[0], "session", payload)):
        return None
    row = accounts.connection.execute(
        """SELECT 1 FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
           WHERE s.sha256 = %s AND t.prefix = %s AND s.ended_at IS NULL AND s.expires_at > now()""",
        (sha256(session_id.encode()).hexdigest(), prefix),
    ).fetchone()
    if row is None:
        return None
    return WebSession(found[1], _sign(found[0], "csrf", payload))


def _secure(request: Request) -> bool:
    """Secure cookies: forced by the setting, else when the request came over HTTPS (uvicorn takes the scheme
    from ``X-Forwarded-Proto`` of a proxy in ``--forwarded-allow-ips`` only)."""
    return request.app.state.settings.secure_cookies or request.url.scheme == "https"


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status, headers=PAGE_HEADERS)


def safe_next(target: Optional[str]) -> str:
    """Where sign-in may return: a path of this site (``/deployments/…?level=warning``), else ``/``.

    Refused (``/``): anything with a scheme or host (``https://evil.example``, ``//evil.example``, ``/\\evil.example``,
    which browsers read as ``//``), control characters (a ``\t`` or ``\n`` that browsers drop from URLs), and
    anything longer than 2,000 characters: an open redirect would let a link to this site's sign-in send the
    signed-in user anywhere."""
    from urllib.parse import unquote, urlsplit

    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    decoded = unquote(target)
    if any(ord(c) < 0x20 or c == "\x7f" or c == "\\" for c in decoded) or decoded.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("/login"):
        return "/"
    return target


def _login_page(request: Request, status: int = 200, error: Optional[str] = None, next_path: str = "/") -> HTMLResponse:
    csrf = secrets.token_urlsafe(32)
    response = _page(request, "login.html", status, csrf=csrf, error=error, next=safe_next(next_path))
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=LOGIN_FORM_SECONDS, httponly=True, samesite="strict", secure=_secure(request))
    return response


def _to_login(request: Optional[Request] = None) -> RedirectResponse:
    """To the sign-in form; from a page, with ``?next=`` that page, so sign-in returns to it."""
    from urllib.parse import quote

    target = "/"
    if request is not None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login" if target == "/" else f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/"):
    return _login_page(request, next_path=next)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: str = Form(""), csrf: str = Form(""), next: str = Form("/"), session=Depends(open_session)):
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf, expected):
        return _page(request, "error.html", 403, title="Form expired", message="The sign-in form has expired or did not come from this site: sign in again.")
    _, accounts = session
    prefix = token_prefix(token.strip())
    found = accounts.live_token(prefix) if accounts.authenticate(token.strip()) is not None else None
    if found is None:
        return _login_page(request, 401, "That token is not valid: it is unknown, revoked or expired.", next_path=next)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, start_session(accounts.connection, prefix, found[0]),
        max_age=SESSION_SECONDS, httponly=True, samesite="strict", secure=_secure(request),
    )  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(""), session=Depends(open_session)):
    web = read_session(request.cookies.get(SESSION_COOKIE), session[1])
    if web is not None and not hmac.compare_digest(csrf, web.csrf):
        return _page(request, "error.html", 403, title="Form expired", message="The sign-out form did not come from this page: reload it and try again.")
    if web is not None:
        end_session(session[1].connection, request.cookies.get(SESSION_COOKIE))
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=_secure(request))
    return response


PAGE_SIZE = 50  # deployments per page of `/`
PAGE_FILTERS = ("owner", "network", "state", "prefix")  # `/`'s query parameters besides `after` and `limit`


@router.get("/", response_class=HTMLResponse)
def deployments_page(request: Request, session=Depends(open_session)):
    """One page of the caller's deployments (every one for an admin), by name then network, PAGE_SIZE at a time:
    ``?after=`` the previous page's cursor, filtered by ``owner``, ``network``, ``state`` (live, waiting, retired)
    and name ``prefix`` — all in SQL (``db.paging``); only this page's releases and results are read."""
    from urllib.parse import urlencode

    from allora_gitops.db.paging import DeploymentFilter
    from allora_gitops.db.results import deployment_overviews
    from allora_gitops.errors import UsageError
    from allora_gitops.gitops.inventory import live_release_in
    from allora_gitops.lifecycle import deployments_lifecycles

    records, accounts = session
    web = read_session(request.cookies.get(SESSION_COOKIE), accounts)
    if web is None:
        return _to_login()
    q = request.query_params
    filters = {k: q[k] for k in PAGE_FILTERS if q.get(k)}
    try:
        limit = int(q.get("limit") or PAGE_SIZE)
        f = DeploymentFilter(owner=filters.get("owner"), network=filters.get("network"), state=filters.get("state"),
                             name_prefix=filters.get("prefix"), visible_to=None if web.principal.is_admin else web.principal.user_id)  # fmt: skip
        page, next_cursor = records.page_deployments(f, after=q.get("after"), limit=limit)
    except (UsageError, ValueError) as exc:
        message = exc.message if isinstance(exc, UsageError) else "invalid limit: a whole number"
        return _page(request, "error.html", 400, web=web, title="Bad request", message=f"{message}. Start again from the first page.")
    releases_of = records.releases_of([t.id for t in page])  # this page's releases only, in one statement
    shown, pending = [], {}  # one row per deployment: its live release, else its newest; and what waits for review
    for target in page:
        releases = releases_of[target.id]
        if not releases:
            continue
        waiting = [r for r in releases if r.status in ("pending", "committed")]
        shown.append(live_release_in(target, releases) or releases[-1])
        pending[shown[-1].id] = waiting
    overviews = deployment_overviews(records.connection, [d.id for d in shown], kinds=["submission"])  # one statement for the page
    rows = [(d, o.window("submission"), o.last_success_at["submission"]) for d in shown for o in (overviews[d.id],)]
    lifecycles = deployments_lifecycles(records.connection, shown, overviews=overviews)  # from the same rows
    keep = {**filters, **({"limit": str(limit)} if limit != PAGE_SIZE else {})}
    links = {"first": ("/?" + urlencode(keep) if keep else "/") if q.get("after") else None,
             "next": "/?" + urlencode({**keep, "after": next_cursor}) if next_cursor else None}  # fmt: skip
    return _page(request, "deployments.html", web=web, rows=rows, lifecycles=lifecycles, pending=pending, links=links,
                 filters=filters, filtered=bool(filters or q.get("after")))  # fmt: skip


def deployment_named(records, deployment_id: str):
    """The deployment (``db.records.Deployment``) that ``/deployments/ID`` and the URLs under it name: ID is the
    deployment's id or one of its releases' ids (older links, results, the logs tail); None for anything else."""
    if not _is_uuid(deployment_id):
        return None
    target = records.get_deployment_by_id(deployment_id)
    if target is None:
        release = records.get_deployment(deployment_id)
        target = records.get_deployment_by_id(release.deployment_id) if release is not None and release.deployment_id else None
    return target


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
def deployment_page(deployment_id: str, request: Request, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
    from allora_gitops.db.results import WINDOWS, result_timeline
    from allora_gitops.explorer import explorer_tx_url
    from allora_gitops.gitops.inventory import live_release_in
    from allora_gitops.lifecycle import STAGES, deployment_status, human_age

    records, accounts = session
    web = read_session(request.cookies.get(SESSION_COOKIE), accounts)
    if web is None:
        return _to_login(request)
    target = deployment_named(records, deployment_id)
    releases = records.list_releases(target.id) if target is not None else []
    if target is None or not releases or not accounts.may_see(web.principal, target.name):
        return _page(request, "error.html", 404, web=web, title="Not found", message="There is no such deployment among yours.")
    live = live_release_in(target, releases)
    d = live or releases[-1]
    pending = [r for r in releases if r.status in ("pending", "committed")]
    by_version = records.results_by_version(target.id)
    status = deployment_status(records.connection, d, recent=RECENT)
    summary = status.summary
    kind = chart_kind(summary)
    timeline = result_timeline(records.connection, d.id, kind=kind, now=summary.as_of)
    resources = _resources_view(settings, d)
    from allora_gitops.db.logs import logs_block

    return _page(
        request, "deployment.html", web=web, d=d, summary=summary, windows=[label for label, _ in WINDOWS],
        lifecycle=status.lifecycle, stages=STAGES, tx_url=lambda tx_hash: explorer_tx_url(d.network, tx_hash),
        chart=outcome_chart(timeline), latency=latency_chart(timeline), resources=resources, chart_kind=kind,
        age=lambda at: human_age(at, summary.as_of),
        logs_command=f"kubectl logs deployment/{d.name}-{d.network} -c model -n {settings.models_namespace} --tail=200",
        logs=logs_block(records, d, request.query_params.get("level")),
        chain=chain_page_view(records, d),
        target=target, live=live, pending=pending, releases=list(reversed(releases)), by_version=by_version,
    )  # fmt: skip


def chart_kind(summary) -> str:
    """What the page charts: ``submission``, unless the last 24 h hold predictions and no submission at all
    (a ``--dry-run`` reporting results, a pod not yet past its first window): then ``prediction``, so the
    charts show what is arriving instead of 24 empty hours."""
    submissions, predictions = summary.window("24h", "submission"), summary.window("24h", "prediction")
    if (submissions is None or submissions.total == 0) and predictions is not None and predictions.total > 0:
        return "prediction"
    return "submission"


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def outcome_chart(timeline) -> dict:
    """Stacked bars (successes below, failures above) of ``result_timeline``'s buckets, in SVG user units."""
    top = max((b.success + b.failure for b in timeline), default=0)
    slot = CHART_WIDTH / max(len(timeline), 1)
    bars = []
    for i, b in enumerate(timeline):
        ok_h = CHART_HEIGHT * b.success / top if top else 0
        bad_h = CHART_HEIGHT * b.failure / top if top else 0
        bars.append({"x": round(i * slot + 1, 2), "w": round(slot - 2, 2), "ok_y": round(CHART_HEIGHT - ok_h, 2), "ok_h": round(ok_h, 2),
                     "bad_y": round(CHART_HEIGHT - ok_h - bad_h, 2), "bad_h": round(bad_h, 2), "bucket": b})  # fmt: skip
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "top": top, "bars": bars,
            "total_ok": sum(b.success for b in timeline), "total_bad": sum(b.failure for b in timeline)}  # fmt: skip


def latency_chart(timeline) -> dict:
    """A polyline of each bucket's p95 latency (buckets without latency are skipped). The highest point sits a
    mark's radius below the top edge, so its circle is drawn whole (the SVG clips at its edges)."""
    values = [(i, b.p95_latency_ms) for i, b in enumerate(timeline) if b.p95_latency_ms is not None]
    top = max((v for _, v in values), default=0.0)
    slot = CHART_WIDTH / max(len(timeline), 1)
    span = CHART_HEIGHT - LATENCY_MARK_RADIUS
    marks = [{"x": round(i * slot + slot / 2, 2), "y": round(CHART_HEIGHT - (span * v / top if top else 0), 2), "ms": v,
              "bucket": timeline[i]} for i, v in values]  # fmt: skip
    points = " ".join(f"{m['x']},{m['y']}" for m in marks)
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "top": top, "points": points, "marks": marks, "count": len(values), "radius": LATENCY_MARK_RADIUS}


def _resources_view(settings: ApiSettings, d) -> dict:
    """The page's resources block: the usage and its two charts (at most ~1.5 s, never an error page)."""
    from allora_gitops.api.deployments import read_deployment_resources

    usage = read_deployment_resources(settings, d)
    return {"usage": usage, "cpu": series_chart(usage.cpu_series, usage.cpu_limit_cores, usage.series_seconds),
            "memory": series_chart(usage.memory_series, usage.memory_limit_bytes, usage.series_seconds)}  # fmt: skip


def series_chart(points, limit: Optional[float], seconds: int, height: int = CHART_HEIGHT // 2) -> dict:
    """A polyline of ``[(unix seconds, value)]`` over the last ``seconds`` (right edge: the last point), scaled
    to the larger of the highest value and ``limit``; ``limit_y`` places the limit's line (None: no limit)."""
    top = max([v for _, v in points] + [limit or 0.0]) or 1.0
    end = points[-1][0] if points else 0.0
    marks = [{"x": round(3 + (CHART_WIDTH - 6) * (1 - (end - t) / seconds), 2), "y": round(height - height * v / top, 2), "t": t, "v": v}
             for t, v in points if end - t <= seconds]  # fmt: skip
    return {"width": CHART_WIDTH, "height": height, "top": top, "marks": marks, "points": " ".join(f"{m['x']},{m['y']}" for m in marks),
            "limit_y": round(height - height * limit / top, 2) if limit else None, "count": len(marks)}  # fmt: skip


def chain_page_view(records, d):
    """The deployment page's chain section (templates/_chain.html): a ``ChainView`` and its score chart, or None."""
    from allora_gitops.chain.store import chain_view, live_workers

    found = [w for w in live_workers(records.connection, name=d.name, network=d.network) if w.deployment_id == d.id]
    if not found:
        return None
    view = chain_view(records.connection, found[0])
    return {"view": view, "chart": score_chart(view.trend)}


def score_chart(trend, width: int = 480, height: int = 120) -> dict:
    """Polyline points for the score EMA and the topic's lowest score over the observations kept."""
    values = [float(s) for _, s, _ in trend] + [float(lo) for _, _, lo in trend if lo is not None]
    if len(trend) < 2 or not values:
        return {"count": len(trend), "width": width, "height": height, "score": "", "lowest": ""}
    top, bottom = max(values), min(values)
    span = (top - bottom) or 1.0

    def y(v: float) -> float:
        return round(height - 4 - (v - bottom) / span * (height - 8), 1)

    step = width / (len(trend) - 1)
    score = " ".join(f"{round(i * step, 1)},{y(float(s))}" for i, (_, s, _) in enumerate(trend))
    lowest = " ".join(f"{round(i * step, 1)},{y(float(lo))}" for i, (_, _, lo) in enumerate(trend) if lo is not None)
    return {"count": len(trend), "width": width, "height": height, "score": score, "lowest": lowest, "top": top, "bottom": bottom}
