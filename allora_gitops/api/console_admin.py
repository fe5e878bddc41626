"""The tokens page and the admin pages of ``allora-gitops serve``: server-rendered HTML forms (no JavaScript), on
the sign-in session of :mod:`allora_gitops.api.web`.

- ``GET /tokens``: the caller's own API tokens (prefix, created, expires, last used, revoked) and a form to create
  one; ``POST /tokens`` creates it and answers with it **once** (the page is ``Cache-Control: no-store``; only the
  token's sha256 and prefix are stored, as ``allora-gitops token create`` does); ``POST /tokens/{prefix}/revoke``
  revokes one of the caller's own tokens (another user's prefix is a 404). Revoking the token the session signed
  in with ends the session: the answer says so and clears the cookie.
- ``GET /admin/users``: every user (admin flag, live tokens, wallets, limits) and a form that creates a user's
  token (the user is created when new, as ``token create --user``); ``GET /admin/users/{name}``: one user's
  tokens (revoke one, or every one: the accounts have no "disabled" flag, and a user with no live token can
  neither call the API nor sign in), wallet assignments (assign, unassign: ``wallet assign|unassign``) and limits
  (only the fields given change; a separate reset: ``user-limits``), and the admin flag (``user-admin [--revoke]``).

Admin pages answer a non-admin with the same 404 as a page that does not exist: an ordinary user learns nothing
about them (the deployment pages treat another user's deployment the same way), and no link leads there.

Every form carries the session's CSRF token (``WebSession.csrf``, an HMAC of the session): a POST without it or
with another one is refused (403) before anything changes. Errors are the messages the CLI prints for the same
input (``UsageError``, ``RecordRefused``), shown on the form's page with the status the API would give.
"""

from __future__ import annotations

import hmac
import re
from typing import Optional

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from allora_gitops.api.dependencies import get_settings, open_session
from allora_gitops.api.problems import core_status
from allora_gitops.api.auth import Accounts, parse_expiry
from allora_gitops.api.settings import ApiSettings
from allora_gitops.api.web import SESSION_COOKIE, WebSession, _cookie_parts, _page, _secure, _to_login, end_session, read_session
from allora_gitops.errors import RecordConflict, RecordRefused, UsageError
from allora_gitops.redact import echoable, shown_value

router = APIRouter(include_in_schema=False)

DEFAULT_TOKEN_DAYS = 90  # allora-gitops token create's default expiry (cli/serve.py DEFAULT_TOKEN_EXPIRY)
_PREFIX = re.compile(r"^agp_[0-9a-f]{8}$")
FORM_ERRORS = (UsageError, RecordRefused, RecordConflict)  # the input's fault: shown on the form, never a 5xx


def _forged(request: Request) -> HTMLResponse:
    return _page(request, "error.html", 403, title="Form expired", message="The form did not come from this page: reload it and try again.")


def _session(request: Request, accounts: Accounts) -> Optional[WebSession]:
    return read_session(request.cookies.get(SESSION_COOKIE), accounts)


def _csrf_ok(web: WebSession, csrf: str) -> bool:
    return bool(csrf) and hmac.compare_digest(csrf, web.csrf)


def _expiry_from_days(days: str, *, allow_never: bool = False):
    """The expiry of a token made ``days`` (a whole number, as typed) from now, through ``parse_expiry`` (the
    CLI's ``--expires Nd``, with its errors); ``never`` only where allowed (the admin's form, as the CLI)."""
    text = days.strip()
    if allow_never and text.lower() == "never":
        return None
    if not text.isdigit():
        raise UsageError(f"expires in days {shown_value(text)}: give a whole number of days ({DEFAULT_TOKEN_DAYS} when unsure)" + (" or 'never'" if allow_never else ""))
    return parse_expiry(f"{int(text)}d")


# --- tokens: every signed-in user -------------------------------------------------------------------


def _tokens_page(request: Request, web: WebSession, accounts: Accounts, status: int = 200, **context) -> HTMLResponse:
    from datetime import datetime, timezone

    tokens = list(reversed(accounts.list_tokens(web.principal.name)))  # newest first
    current = _cookie_parts(request.cookies.get(SESSION_COOKIE))[0]
    return _page(request, "tokens.html", status, web=web, tokens=tokens, current=current, now=datetime.now(timezone.utc),
                 default_days=DEFAULT_TOKEN_DAYS, **context)  # fmt: skip


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, revoked: Optional[str] = None, session=Depends(open_session)):
    web = _session(request, session[1])
    if web is None:
        return _to_login(request)
    shown = revoked if revoked and _PREFIX.match(revoked) else None  # only a prefix, never other text
    return _tokens_page(request, web, session[1], revoked=shown)


@router.post("/tokens", response_class=HTMLResponse)
def create_own_token(request: Request, days: str = Form(""), csrf: str = Form(""), session=Depends(open_session)):
    accounts = session[1]
    web = _session(request, accounts)
    if web is None:
        return _to_login()
    if not _csrf_ok(web, csrf):
        return _forged(request)
    try:
        expires_at = _expiry_from_days(days)
    except UsageError as exc:
        return _tokens_page(request, web, accounts, core_status(exc), error=str(exc), days=echoable({"days": days})["days"])
    secret, info = accounts.create_token(web.principal.name, expires_at=expires_at)
    return _page(request, "tokens_created.html", 201, web=web, secret=secret, info=info, back="/tokens")


@router.post("/tokens/{prefix}/revoke", response_class=HTMLResponse)
def revoke_own_token(prefix: str, request: Request, csrf: str = Form(""), session=Depends(open_session)):
    accounts = session[1]
    web = _session(request, accounts)
    if web is None:
        return _to_login()
    if not _csrf_ok(web, csrf):
        return _forged(request)
    if prefix not in {t.prefix for t in accounts.list_tokens(web.principal.name)}:  # another user's, or none
        return _page(request, "error.html", 404, web=web, title="Not found", message="There is no such token among yours.")
    accounts.revoke_token(prefix)
    if prefix == _cookie_parts(request.cookies.get(SESSION_COOKIE))[0]:  # the session's own token: sign out
        return _signed_out(request, accounts, prefix)
    return RedirectResponse(f"/tokens?revoked={prefix}", status_code=303)


# --- admin: users, wallet assignments, limits -------------------------------------------------------


def _admin(request: Request, accounts: Accounts):
    """(session, None) for an admin; (None, response) otherwise: sign-in for no session, 404 for a non-admin."""
    web = _session(request, accounts)
    if web is None:
        return None, _to_login(request if request.method == "GET" else None)
    if not web.principal.is_admin:
        return None, _page(request, "error.html", 404, web=web, title="Not found", message="There is no such page.")
    return web, None


def _users(accounts: Accounts) -> list[dict]:
    rows = accounts.connection.execute(
        """SELECT u.name, u.is_admin, u.max_live_deployments, u.max_upload_bytes,
                  count(t.id) FILTER (WHERE t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())),
                  (SELECT coalesce(array_agg(w.secret_name ORDER BY w.secret_name), '{}') FROM wallet_assignments w WHERE w.user_id = u.id)
           FROM platform_users u LEFT JOIN api_tokens t ON t.user_id = u.id
           GROUP BY u.id ORDER BY u.name"""
    ).fetchall()
    return [dict(name=r[0], is_admin=r[1], max_live_deployments=r[2], max_upload_bytes=r[3], live_tokens=r[4], wallets=r[5]) for r in rows]


def _users_page(request: Request, web: WebSession, accounts: Accounts, settings: ApiSettings, status: int = 200, **context) -> HTMLResponse:
    return _page(request, "admin_users.html", status, web=web, users=_users(accounts), settings=settings,
                 default_days=DEFAULT_TOKEN_DAYS, **context)  # fmt: skip


def _user_page(request: Request, web: WebSession, accounts: Accounts, settings: ApiSettings, name: str, status: int = 200, **context) -> HTMLResponse:
    from datetime import datetime, timezone

    found = [u for u in _users(accounts) if u["name"] == name]
    if not found:
        return _no_user(request, web, accounts, name)
    return _page(request, "admin_user.html", status, web=web, user=found[0], tokens=list(reversed(accounts.list_tokens(name))),
                 settings=settings, now=datetime.now(timezone.utc), current=_cookie_parts(request.cookies.get(SESSION_COOKIE))[0],
                 **context)  # fmt: skip


def _no_user(request: Request, web: WebSession, accounts: Accounts, name: str) -> HTMLResponse:
    """404 for a user who does not exist, in the CLI's words (``user-limits``, ``wallet unassign``)."""
    try:
        accounts._user_id(name)
        message = f"no user {name!r}"
    except UsageError as exc:
        message = str(exc)
    return _page(request, "error.html", 404, web=web, title="Not found", message=message)


@router.get("/admin", response_class=HTMLResponse)
def admin_home(request: Request, session=Depends(open_session)):
    web, refused = _admin(request, session[1])
    return refused or RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/users", response_class=HTMLResponse)
def admin_users(request: Request, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
    web, refused = _admin(request, session[1])
    return refused or _users_page(request, web, session[1], settings)


@router.post("/admin/users", response_class=HTMLResponse)
def admin_create_user_token(request: Request, user: str = Form(""), days: str = Form(""), admin: str = Form(""), csrf: str = Form(""),
                            session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):  # fmt: skip
    accounts = session[1]
    web, refused = _admin(request, accounts)
    if refused:
        return refused
    if not _csrf_ok(web, csrf):
        return _forged(request)
    try:
        expires_at = _expiry_from_days(days, allow_never=True)
        secret, info = accounts.create_token(user.strip(), admin=True if admin else None, expires_at=expires_at)
    except FORM_ERRORS as exc:
        return _users_page(request, web, accounts, settings, core_status(exc), error=str(exc), form={**echoable({"user": user, "days": days}), "admin": bool(admin)})
    return _page(request, "tokens_created.html", 201, web=web, secret=secret, info=info, back=f"/admin/users/{info.user}")


@router.get("/admin/users/{name}", response_class=HTMLResponse)
def admin_user(name: str, request: Request, done: Optional[str] = None, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
    web, refused = _admin(request, session[1])
    return refused or _user_page(request, web, session[1], settings, name, done=DONE.get(done or ""))


DONE = {"assigned": "Wallet assigned.", "unassigned": "Wallet unassigned.", "not-assigned": "That wallet was not assigned to this user.",
        "limits": "Limits saved.", "admin": "Now an admin: sees and changes everything.",
        "not-admin": "No longer an admin: keeps their own bundles and deployments.", "reset": "Both limits are back to the server's settings.", "revoked": "Token revoked.",
        "revoked-all": "Every token of this user is revoked: they can neither call the API nor sign in until given a new one."}  # fmt: skip


def _admin_post(request: Request, accounts: Accounts, csrf: str):
    web, refused = _admin(request, accounts)
    if refused:
        return None, refused
    if not _csrf_ok(web, csrf):
        return None, _forged(request)
    return web, None


def _back(name: str, done: str) -> RedirectResponse:
    from urllib.parse import quote

    return RedirectResponse(f"/admin/users/{quote(name, safe='')}?done={done}", status_code=303)


@router.post("/admin/users/{name}/wallets", response_class=HTMLResponse)
def admin_assign_wallet(name: str, request: Request, secret: str = Form(""), csrf: str = Form(""), session=Depends(open_session),
                        settings: ApiSettings = Depends(get_settings)):  # fmt: skip
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    try:
        accounts._user_id(name)  # the page's user exists: assigning never creates one from here
        accounts.assign_wallet(name, secret.strip())
    except FORM_ERRORS as exc:
        return _user_page(request, web, accounts, settings, name, core_status(exc), wallet_error=str(exc))
    return _back(name, "assigned")


@router.post("/admin/users/{name}/wallets/unassign", response_class=HTMLResponse)
def admin_unassign_wallet(name: str, request: Request, secret: str = Form(""), csrf: str = Form(""), session=Depends(open_session),
                          settings: ApiSettings = Depends(get_settings)):  # fmt: skip
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    try:
        removed = accounts.unassign_wallet(name, secret)
    except FORM_ERRORS as exc:
        return _user_page(request, web, accounts, settings, name, core_status(exc), wallet_error=str(exc))
    return _back(name, "unassigned" if removed else "not-assigned")


def _limit(text: str, field: str, minimum: int) -> Optional[int]:
    """A limit as typed: None when blank (unchanged); else the CLI's option check (``min=``), in its words."""
    text = text.strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit():
        raise UsageError(f"Invalid value for '{field}': Input should be a valid integer, unable to parse string as an integer")
    value = int(text)
    if value < minimum:
        raise UsageError(f"Invalid value for '{field}': Input should be greater than or equal to {minimum}")
    return value


@router.post("/admin/users/{name}/limits", response_class=HTMLResponse)
def admin_set_limits(name: str, request: Request, max_live_deployments: str = Form(""), max_upload_mb: str = Form(""), reset: str = Form(""),
                     csrf: str = Form(""), session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):  # fmt: skip
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    try:  # the checks of `allora-gitops user-limits`, in its order
        live = _limit(max_live_deployments, "--max-live-deployments", 0)
        upload_mb = _limit(max_upload_mb, "--max-upload-mb", 1)
        if reset and (live is not None or upload_mb is not None):
            raise UsageError("--reset returns both limits to the server's settings: give it alone, then set what differs")
        accounts.set_limits(name, max_live_deployments=live, max_upload_bytes=upload_mb << 20 if upload_mb else None, reset=bool(reset))
    except FORM_ERRORS as exc:
        return _user_page(request, web, accounts, settings, name, core_status(exc), limits_error=str(exc),
                          limits_form=echoable({"max_live_deployments": max_live_deployments, "max_upload_mb": max_upload_mb}))  # fmt: skip
    return _back(name, "reset" if reset else "limits")


@router.post("/admin/users/{name}/admin", response_class=HTMLResponse)
def admin_set_admin(name: str, request: Request, admin: str = Form(""), csrf: str = Form(""), session=Depends(open_session),
                    settings: ApiSettings = Depends(get_settings)):  # fmt: skip
    """``allora-gitops user-admin NAME`` (``admin=1``) or ``--revoke`` (``admin=0``)."""
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    if admin not in ("0", "1"):
        return _user_page(request, web, accounts, settings, name, 422, admin_error="admin: give 1 (make an admin) or 0 (take admin away)")
    try:
        accounts.set_admin(name, admin == "1")
    except FORM_ERRORS:
        return _no_user(request, web, accounts, name)
    return _back(name, "admin" if admin == "1" else "not-admin")


@router.post("/admin/users/{name}/tokens/{prefix}/revoke", response_class=HTMLResponse)
def admin_revoke_token(name: str, prefix: str, request: Request, csrf: str = Form(""), session=Depends(open_session)):
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    if prefix not in {t.prefix for t in accounts.list_tokens(name)}:
        return _page(request, "error.html", 404, web=web, title="Not found", message=f"{name!r} has no such token.")
    accounts.revoke_token(prefix)
    return _signed_out(request, accounts, prefix) if prefix == _cookie_parts(request.cookies.get(SESSION_COOKIE))[0] else _back(name, "revoked")


@router.post("/admin/users/{name}/tokens/revoke-all", response_class=HTMLResponse)
def admin_revoke_every_token(name: str, request: Request, csrf: str = Form(""), session=Depends(open_session)):
    accounts = session[1]
    web, refused = _admin_post(request, accounts, csrf)
    if refused:
        return refused
    tokens = accounts.list_tokens(name)
    for t in tokens:
        if t.revoked_at is None:
            accounts.revoke_token(t.prefix)
    current = _cookie_parts(request.cookies.get(SESSION_COOKIE))[0]
    if current in {t.prefix for t in tokens}:  # the admin's own
        return _signed_out(request, accounts, current)
    return _back(name, "revoked-all")


def _signed_out(request: Request, accounts: Accounts, prefix: str) -> HTMLResponse:
    """The answer once the session's own token ``prefix`` was revoked: the session ends, its cookie goes, and
    the page says why (a bare sign-in form would leave the reader wondering)."""
    end_session(accounts.connection, request.cookies.get(SESSION_COOKIE))
    response = _page(request, "tokens_signed_out.html", prefix=prefix)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=_secure(request))
    return response
