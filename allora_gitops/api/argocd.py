"""``POST /api/v1/argocd/events``: Argo CD's notifications controller reports a sync, a failure or a degradation.

The caller proves it is Argo CD with the webhook token of ``argocd-notifications-secret`` (``allora-gitops
argocd rotate-token``), a kind of token of its own: a user's API token is refused like a wrong one (401).
The body is what the repository's notification templates render (``argocd_reports.ArgoCDEvent``; 422 with
one problem per field otherwise). The answer is 200 either way an event is *handled*: ``{"recorded": true,
…}`` with the release commit it was matched to, or ``{"recorded": false, "ignored": true, "reason": …}`` for
an unknown Application, a stale revision, a replay or a revision that runs no recorded release — Argo CD
logs the answer and nobody retries it.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBearer

from allora_gitops.api.dependencies import get_settings
from allora_gitops.api.problems import ApiError
from allora_gitops.api.settings import ApiSettings
from allora_gitops.argocd_reports import ArgoCDEvent

log = logging.getLogger("allora_gitops.api")

router = APIRouter(tags=["argocd"])
argocd_bearer = HTTPBearer(
    auto_error=False, scheme_name="argocdToken",
    description="The webhook token of argocd-notifications-secret (`allora-gitops argocd rotate-token`)",
)  # fmt: skip


def argocd_session(request: Request, settings: ApiSettings = Depends(get_settings), _declared: Any = Depends(argocd_bearer)) -> Iterator[Any]:
    """The records, once the bearer token is a live Argo CD webhook token; 401 (one answer) for missing, wrong or expired."""
    from allora_gitops.argocd_reports import check_argocd_token
    from allora_gitops.db import open_records

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    records = open_records(settings.database_url)
    try:
        if scheme.lower() != "bearer" or not check_argocd_token(records.connection, token.strip()):
            raise ApiError(
                401, "a valid Argo CD webhook token is required: 'Authorization: Bearer TOKEN' "
                "(made by `allora-gitops argocd rotate-token`, kept in argocd-notifications-secret)",
                headers={"WWW-Authenticate": 'Bearer realm="allora-platform-argocd"'},
            )  # fmt: skip
        yield records
    finally:
        records.close()


@router.post("/v1/argocd/events", summary="Record what Argo CD reports about a release (sync status, revision, health)")
def post_argocd_event(event: ArgoCDEvent, records: Any = Depends(argocd_session), settings: ApiSettings = Depends(get_settings)) -> dict:
    from allora_gitops.argocd_reports import GitRepositoryView, record_event, recorded_releases

    def repository():
        return GitRepositoryView(settings.repo, settings.base_branch)

    releases_of = lambda name, network: recorded_releases(records, name, network)  # noqa: E731
    outcome = record_event(records.connection, event, releases_of, _Lazy(repository))
    log.info("Argo CD %s of %s at %s: %s%s", event.event, outcome.application, outcome.revision[:12],
             "" if outcome.recorded else "ignored: ", outcome.reason)  # fmt: skip
    return outcome.to_dict()


class _Lazy:
    """The repository, fetched only when an event's revision is not a release commit itself (a merge commit)."""

    def __init__(self, make):
        self._make, self._view = make, None

    def _get(self):
        if self._view is None:
            self._view = self._make()
        return self._view

    def has(self, revision: str) -> bool:
        return self._get().has(revision)

    def runs(self, revision: str, name: str, network: str):
        return self._get().runs(revision, name, network)

    def is_ancestor(self, commit: str, revision: str) -> bool:
        return self._get().is_ancestor(commit, revision)
