"""The API's refusals: one RFC 9457 problem object (``application/problem+json``: type, title, status, detail, and
``problems`` — one per file/line when the core error has them) for every error, and the mapping of the project's
own errors to HTTP statuses by kind. Shared by the application (its exception handlers), the routers and the
console's pages, which show the same problems as the API."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from allora_gitops.errors import (
    AlloraGitopsError,
    BundleError,
    DatabaseError,
    GitOpsError,
    ManifestError,
    RecordConflict,
    RecordRefused,
    RemoteUnavailable,
    RenderError,
    ResultsError,
    StorageError,
    UsageError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ApiError(Exception):
    """An HTTP refusal decided by a route (not found, forbidden, too large…)."""

    def __init__(self, status: int, detail: str, *, title: Optional[str] = None, problems: Optional[list[dict]] = None, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title
        self.problems = problems or []
        self.headers = headers or {}


_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip


def problem(status: int, detail: str, *, title: Optional[str] = None, problems: Optional[list[dict]] = None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def core_status(exc: AlloraGitopsError) -> int:
    """The HTTP status of one of our own errors, by kind."""
    from allora_gitops.api.podidentity import PodIdentityError

    if isinstance(exc, PodIdentityError):
        return exc.status_code  # 401 / 403 / 503
    if isinstance(exc, (ResultsError, RecordRefused)):
        return 422  # malformed input, or a value the records' rules refuse: never a retryable 5xx
    if isinstance(exc, RecordConflict):
        return 409
    if isinstance(exc, (BundleError, ManifestError, RenderError, UsageError)):
        return 422
    if isinstance(exc, (DatabaseError, StorageError, RemoteUnavailable)):
        return 503  # DatabaseBusy included: the pool had no connection to lend in time
    if isinstance(exc, GitOpsError):
        return 409
    return 500


def _scrub(text: str, request: Request) -> str:
    """Server-side paths (the upload spool) are not the client's business."""
    for prefix in getattr(request.state, "scrub", ()):
        text = text.replace(prefix, "")
    return text


def core_problem(exc: AlloraGitopsError, request: Request) -> tuple[int, str, list[dict]]:
    """(status, detail, problems) of one of our own errors, as the API answers it (``problems``: one dict per
    file/line, server-side paths scrubbed); the console's pages show the same."""
    problems = [{**p.to_dict(), **({"file": _scrub(p.file, request)} if p.file else {})} for p in exc.problems]
    detail = _scrub(exc.message or (str(exc.problems[0]) if exc.problems else type(exc).__name__), request)
    return core_status(exc), detail, problems


def validation_problem(errors) -> tuple[int, str, list[dict]]:
    """(422, detail, problems) of pydantic's ``errors()`` for a request: one ``{field, message}`` per error; the
    offending values are left out (a request body may hold what a user pasted by mistake)."""
    problems = [
        {"field": "body", "message": f"not valid JSON ({e.get('ctx', {}).get('error', 'malformed')} at character {e['loc'][-1]})"}
        if e.get("type") == "json_invalid"  # loc is ("body", position): a position, not a field
        else {"field": ".".join(str(x) for x in e.get("loc", ()) if x != "body"), "message": e.get("msg", "invalid")}
        for e in errors
    ]
    return 422, "the request is invalid: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems), problems
