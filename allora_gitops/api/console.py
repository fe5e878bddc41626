"""The deploy pages of ``allora-gitops serve`` (the guide's steps 8–9 in the browser): server-rendered forms that
work without JavaScript, signed in with the monitoring pages' session (api/web.py).

- ``GET /upload``, ``POST /upload``: a multipart form (a progress bar when scripts run) posting a bundle archive through the same pipeline as
  ``POST /api/bundles`` (``bundles.receive_bundle``); a refusal shows the API's problems, one file:line line each;
- ``GET/POST /bundles/{name}/{version}/deploy``: the deploy form (an assigned wallet, network, topic, fee tier,
  polling interval, resources, the secrets model.yaml declares) → a preview of the change (the publish's dry run:
  the rendered diff the review branch would hold) → confirm → the review branch and its compare link, through
  ``deployments.deploy_bundle`` (what ``POST /api/deployments`` runs);
- ``GET/POST /deployments/{id}/promote|rollback|retire``: a form where there is something to choose, then a
  confirmation that shows the change's dry run, then the change through the API's functions.

Every POST carries the page's CSRF token (an HMAC of the session, ``WebSession.csrf``) and is refused (403)
without it or with another; another user's bundle, deployment or release is a 404, as the API answers.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from allora_gitops import constants as C
from allora_gitops.api.dependencies import Caller, get_settings, open_session, records_connection
from allora_gitops.api.problems import ApiError, core_problem, validation_problem
from allora_gitops.api.settings import ApiSettings
from allora_gitops.api.web import PAGE_HEADERS, SESSION_COOKIE, WebSession, _is_uuid, _to_login, read_session, templates
from allora_gitops.errors import AlloraGitopsError

router = APIRouter(include_in_schema=False)
CSRF_FIELD = "csrf"
FORM_EXPIRED = "The form did not come from this page or has expired: reload the page and try again."
ACTIONS = ("promote", "rollback", "retire")


def problem_line(p: dict) -> str:
    """One problem of an API answer as a line: ``file:line:col: severity: message`` (``errors.Problem``'s form) or
    ``field: message`` (a request field)."""
    if "field" in p:
        return f"{p['field']}: {p['message']}"
    where = ":".join(str(p[k]) for k in ("file", "line", "col") if k in p)
    return f"{where + ': ' if where else ''}{p.get('severity', 'error')}: {p.get('message', '')}"


templates.env.filters["problem_line"] = problem_line


def _page(request: Request, name: str, status: int = 200, headers: Optional[dict] = None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def _refusal(exc: Exception, request: Request) -> tuple[int, str, list[dict], dict]:
    """(status, detail, problems, headers) of what the API would answer for ``exc``."""
    if isinstance(exc, ApiError):
        return exc.status, exc.detail, exc.problems, exc.headers
    if isinstance(exc, ValidationError):
        return (*validation_problem(exc.errors()), {})
    return (*core_problem(exc, request), {})


REFUSED = (ApiError, ValidationError, AlloraGitopsError)


def _forged(request: Request, web: WebSession, sent: str) -> Optional[HTMLResponse]:
    """The 403 page when ``sent`` is not the session's CSRF token (missing or forged), else None."""
    if sent and hmac.compare_digest(sent, web.csrf):
        return None
    return _page(request, "error.html", 403, web=web, title="Form expired", message=FORM_EXPIRED)


def _not_found(request: Request, web: WebSession, what: str = "deployment") -> HTMLResponse:
    return _page(request, "error.html", 404, web=web, title="Not found", message=f"There is no such {what} among yours.")


def _signed_in(request: Request, session) -> Optional[WebSession]:
    return read_session(request.cookies.get(SESSION_COOKIE), session[1])


def _caller(web: WebSession, session, settings: ApiSettings) -> Caller:
    return Caller(web.principal, session[0], session[1], settings)


# --- upload ------------------------------------------------------------------------------------


def _bundles_of(session, web: WebSession) -> list:
    names = session[1].owned_names(web.principal)
    return [b for b in session[0].list_bundles() if names is None or b.name in names]


@router.get("/upload", response_class=HTMLResponse)
def upload_form(request: Request, session=Depends(open_session)):
    web = _signed_in(request, session)
    if web is None:
        return _to_login(request)
    return _page(request, "upload.html", web=web, bundles=_bundles_of(session, web)[:20])


@router.post("/upload", response_class=HTMLResponse)
async def upload(request: Request, settings: ApiSettings = Depends(get_settings)):
    """``POST /api/bundles``'s pipeline (``receive_bundle``), the session read on a connection given back before
    the body is received (as the API's ``authenticated``), the CSRF token checked before anything is stored."""
    from allora_gitops.api.auth import Accounts
    from allora_gitops.api.bundles import receive_bundle

    def session_of() -> Optional[WebSession]:
        with records_connection(request) as conn:
            return read_session(request.cookies.get(SESSION_COOKIE), Accounts(conn))

    web = await run_in_threadpool(session_of)
    if web is None:
        return _to_login(request)

    def check(fields: dict[str, str]) -> None:
        sent = fields.get(CSRF_FIELD, "")
        if not sent or not hmac.compare_digest(sent, web.csrf):
            raise ApiError(403, FORM_EXPIRED, title="Form expired")

    try:
        record, created = await receive_bundle(request, web.principal, settings, keep=(CSRF_FIELD,), check=check)
    except REFUSED as exc:
        status, detail, problems, headers = _refusal(exc, request)
        if status == 403 and detail == FORM_EXPIRED:
            return _page(request, "error.html", 403, web=web, title="Form expired", message=FORM_EXPIRED)
        return _page(request, "upload.html", status, headers=headers, web=web, detail=detail, problems=problems, bundles=[])
    state = "uploaded" if created else "already-stored"
    return RedirectResponse(f"/bundles/{record.name}/{record.version}/deploy?{state}=1", status_code=303)


@router.get("/static/upload-progress.js")
def upload_script() -> FileResponse:
    """The upload form's progress bar (progressive: the form works without it)."""
    return FileResponse(Path(__file__).parent / "static" / "upload-progress.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})


# --- deploy ------------------------------------------------------------------------------------


def _owned_bundle(session, web: WebSession, name: str, version: str):
    if not session[1].may_see(web.principal, name):
        return None
    return session[0].get_bundle(name, version)


def _declared_secrets(bundle) -> list[str]:
    return list(((bundle.manifest or {}).get("environment") or {}).get("secrets") or [])


def _deploy_defaults(bundle, wallets: list[str]) -> dict[str, str]:
    allora = (bundle.manifest or {}).get("allora") or {}
    return {
        "network": allora.get("network") or C.NETWORKS[0], "wallet": wallets[0] if len(wallets) == 1 else "",
        "topic_id": str(allora.get("topic_id") or ""), "fee_tier": allora.get("fee_tier") or "STANDARD",
        "polling_interval": str(allora.get("polling_interval") or ""), "cpu": "", "cpu_limit": "", "memory": "",
    }  # fmt: skip


DEPLOY_FIELDS = ("network", "wallet", "topic_id", "fee_tier", "polling_interval", "cpu", "cpu_limit", "memory")
SECRET_FIELD = "secret."  # secret.NAME = SECRET/KEY


def deploy_request(bundle, form: dict[str, str]):
    """The API's ``DeploymentRequest`` of the deploy form's fields (empty = the default, as when the JSON leaves
    it out): the same model validates both. Raises pydantic's ValidationError."""
    from allora_gitops.api.deployments import DeploymentRequest

    body: dict[str, Any] = {"bundle": {"name": bundle.name, "version": bundle.version}}
    for key in ("network", "wallet", "topic_id", "fee_tier", "polling_interval"):
        if form.get(key, "").strip():
            body[key] = form[key].strip()
    resources = {k: form[k].strip() for k in ("cpu", "cpu_limit", "memory") if form.get(k, "").strip()}
    if resources:
        body["resources"] = resources
    secrets = {k[len(SECRET_FIELD):]: v.strip() for k, v in form.items() if k.startswith(SECRET_FIELD) and v.strip()}
    if secrets:
        body["secrets"] = secrets
    return DeploymentRequest.model_validate(body)


def _form_values(form) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and (k in DEPLOY_FIELDS or k.startswith(SECRET_FIELD))}


_REFERENCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[-._A-Za-z0-9]+)?$")  # a Secret's name, or SECRET/KEY


def _echoable(values: dict[str, str]) -> dict[str, str]:
    """The refused form's values to show again: a wallet or secret mapping only when it has the shape of a
    reference (a Secret's name, ``SECRET/KEY``), so a key or value pasted there never comes back in a page; any
    other field only when it does not look like a key or a mnemonic (``redact.echoable``)."""
    from allora_gitops.redact import echoable

    return echoable({k: v for k, v in values.items() if (k != "wallet" and not k.startswith(SECRET_FIELD)) or _REFERENCE.match(v.strip())})


@router.get("/bundles/{name}/{version}/deploy", response_class=HTMLResponse)
def deploy_form(name: str, version: str, request: Request, session=Depends(open_session)):
    web = _signed_in(request, session)
    if web is None:
        return _to_login(request)
    bundle = _owned_bundle(session, web, name, version)
    if bundle is None:
        return _not_found(request, web, "bundle")
    wallets = session[1].wallets_of(web.principal.name)
    notice = "Uploaded." if "uploaded" in request.query_params else "These exact bytes were already stored." if "already-stored" in request.query_params else None
    return _deploy_page(request, web, bundle, wallets, _deploy_defaults(bundle, wallets), notice=notice)


def _deploy_page(request, web, bundle, wallets, values, status: int = 200, **context) -> HTMLResponse:
    return _page(request, "deploy.html", status, web=web, bundle=bundle, wallets=wallets, values=values, networks=C.NETWORKS,
                 fee_tiers=C.FEE_TIERS, secrets=_declared_secrets(bundle), runtime=(bundle.manifest or {}).get("runtime") or {},
                 **context)  # fmt: skip


@router.post("/bundles/{name}/{version}/deploy", response_class=HTMLResponse)
async def deploy(name: str, version: str, request: Request, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
    """``step``: ``preview`` (the dry run: checks and the rendered change, nothing written), ``deploy`` (the
    change, onto a review branch), ``edit`` (back to the form with the values)."""
    form = await request.form()  # the rest (queries, git) off the event loop
    return await run_in_threadpool(_deploy, name, version, request, form, session, settings)


def _deploy(name: str, version: str, request: Request, form, session, settings: ApiSettings) -> HTMLResponse:
    from allora_gitops.api.deployments import deploy_bundle

    web = _signed_in(request, session)
    if web is None:
        return _to_login(request)
    refused = _forged(request, web, str(form.get(CSRF_FIELD, "")))
    if refused is not None:
        return refused
    bundle = _owned_bundle(session, web, name, version)
    if bundle is None:
        return _not_found(request, web, "bundle")
    wallets = session[1].wallets_of(web.principal.name)
    values = _form_values(form)
    step = form.get("step", "preview")
    if step == "edit":
        return _deploy_page(request, web, bundle, wallets, values)
    try:
        body = deploy_request(bundle, values)
        result = deploy_bundle(body, _caller(web, session, settings), dry_run=step != "deploy")
    except REFUSED as exc:
        status, detail, problems, _ = _refusal(exc, request)
        return _deploy_page(request, web, bundle, wallets, _echoable(values), status, detail=detail, problems=problems)
    if step != "deploy":
        return _page(request, "preview.html", web=web, result=result, values=values, action=f"/bundles/{bundle.name}/{bundle.version}/deploy",
                     title=f"Deploy {bundle.name} {bundle.version} on {result.network}", confirm="Deploy", step="deploy",
                     back=True)  # fmt: skip
    return _change_page(request, web, result, settings)


def _change_page(request, web, result, settings: ApiSettings) -> HTMLResponse:
    from allora_gitops.publish import compare_url

    link = compare_url(result.repo, result.base_branch, result.branch) if result.branch != result.base_branch else None
    return _page(request, "change.html", 201 if not result.nothing_to_do else 200, web=web, result=result, compare_url=link)


# --- promote, rollback, retire -----------------------------------------------------------------


def _action_context(action: str, d, session, web) -> dict:
    if action == "promote":
        return {"networks": [n for n in C.NETWORKS if n != d.network], "wallets": session[1].wallets_of(web.principal.name)}
    if action == "rollback":
        return {"versions": sorted({b.version for b in session[0].list_bundles(d.name)})}
    return {}


def _action_body(action: str, values: dict[str, str]):
    from allora_gitops.api.deployments import PromoteRequest, RollbackRequest

    fields = {k: v.strip() for k, v in values.items() if v.strip()}
    if action == "promote":
        return PromoteRequest.model_validate({k: fields[k] for k in ("network", "wallet", "topic_id", "fee_tier") if k in fields})
    if action == "rollback":
        return RollbackRequest.model_validate({k: fields[k] for k in ("version", "topic_id") if k in fields})
    return None


def _run_action(action: str, d, body, c: Caller, *, dry_run: bool):
    from allora_gitops.api.deployments import promote_change, retire_change, rollback_change

    if action == "promote":
        return promote_change(d, body, c, dry_run=dry_run)
    if action == "rollback":
        return rollback_change(d, body, c, dry_run=dry_run)
    return retire_change(d, c, dry_run=dry_run)


def _owned(deployment_id: str, c: Caller):
    from allora_gitops.api.deployments import owned_deployment

    return owned_deployment(deployment_id, c) if _is_uuid(deployment_id) else None


ACTION_TITLES = {
    "promote": "Promote {name} from {network}",
    "rollback": "Roll back {name} on {network}",
    "retire": "Retire {name} on {network}",
}
ACTION_CONFIRM = {"promote": "Promote", "rollback": "Roll back", "retire": "Retire"}


def _action_form(request, web, action, d, session, values, status: int = 200, **context) -> HTMLResponse:
    return _page(request, "action.html", status, web=web, action=action, d=d, values=_echoable(values),
                 title=ACTION_TITLES[action].format(name=d.name, version=d.version, network=d.network),
                 **_action_context(action, d, session, web), **context)  # fmt: skip


def _preview(request, web, action, d, body, values, c: Caller, session) -> HTMLResponse:
    try:
        result = _run_action(action, d, body, c, dry_run=True)
    except REFUSED as exc:
        status, detail, problems, _ = _refusal(exc, request)
        if action == "retire":
            return _page(request, "error.html", status, web=web, title="Nothing to retire", message=detail)
        return _action_form(request, web, action, d, session, values, status, detail=detail, problems=problems)
    title = {  # what the dry run found (the base branch's truth), not the records' view of it
        "promote": f"Promote {d.name} {result.version} from {d.network} to {result.network}",
        "rollback": f"Roll back {d.name} on {d.network} to {result.version}",
        "retire": f"Retire {d.name} on {d.network}",  # the summary says which version stops
    }[action]
    return _page(request, "preview.html", web=web, result=result, values=values, action=f"/deployments/{d.deployment_id}/{action}",
                 title=title, confirm=ACTION_CONFIRM[action],
                 step="confirm", back=action != "retire", cancel=f"/deployments/{d.deployment_id}")  # fmt: skip


def _deployment_of(request, web, deployment_id: str, c: Caller):
    """The release to act on, or None (not a UUID, unknown, another user's: one 404 for all)."""
    try:
        return _owned(deployment_id, c)
    except ApiError:
        return None


def action_form(action: str, deployment_id: str, request: Request, session, settings: ApiSettings) -> HTMLResponse:
    """Promote and rollback: a form (what to promote to, which version); retire: straight to its confirmation."""
    web = _signed_in(request, session)
    if web is None:
        return _to_login(request)
    c = _caller(web, session, settings)
    d = _deployment_of(request, web, deployment_id, c)
    if d is None:
        return _not_found(request, web)
    if action == "retire":
        return _preview(request, web, action, d, None, {}, c, session)
    return _action_form(request, web, action, d, session, {"wallet": d.wallet_secret_name} if action == "promote" else {})


def action_post(action: str, deployment_id: str, request: Request, form, session, settings: ApiSettings) -> HTMLResponse:
    """``step``: ``preview`` (the dry run, shown for confirmation), ``confirm`` (the change), ``edit`` (the form again)."""
    web = _signed_in(request, session)
    if web is None:
        return _to_login(request)
    refused = _forged(request, web, str(form.get(CSRF_FIELD, "")))
    if refused is not None:
        return refused
    c = _caller(web, session, settings)
    d = _deployment_of(request, web, deployment_id, c)
    if d is None:
        return _not_found(request, web)
    values = {k: v for k, v in form.items() if isinstance(v, str) and k in ("network", "wallet", "topic_id", "fee_tier", "version")}
    step = form.get("step", "preview")
    if step == "edit" and action != "retire":
        return _action_form(request, web, action, d, session, values)
    try:
        body = _action_body(action, values)
    except ValidationError as exc:
        status, detail, problems, _ = _refusal(exc, request)
        return _action_form(request, web, action, d, session, values, status, detail=detail, problems=problems)
    if step != "confirm":
        return _preview(request, web, action, d, body, values, c, session)
    try:
        result = _run_action(action, d, body, c, dry_run=False)
    except REFUSED as exc:
        status, detail, problems, _ = _refusal(exc, request)
        if action == "retire":
            return _page(request, "error.html", status, web=web, title="Not retired", message=detail)
        return _action_form(request, web, action, d, session, values, status, detail=detail, problems=problems)
    return _change_page(request, web, result, settings)


def _action_routes(action: str) -> None:
    """GET and POST ``/deployments/{id}/<action>`` (one fixed path each: no catch-all shadows other pages)."""

    def get(deployment_id: str, request: Request, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
        return action_form(action, deployment_id, request, session, settings)

    async def post(deployment_id: str, request: Request, session=Depends(open_session), settings: ApiSettings = Depends(get_settings)):
        form = await request.form()  # the rest (queries, git) off the event loop
        return await run_in_threadpool(action_post, action, deployment_id, request, form, session, settings)

    router.add_api_route(f"/deployments/{{deployment_id}}/{action}", get, methods=["GET"], response_class=HTMLResponse, name=f"{action}_form")
    router.add_api_route(f"/deployments/{{deployment_id}}/{action}", post, methods=["POST"], response_class=HTMLResponse, name=action)


for _action in ACTIONS:
    _action_routes(_action)
