"""Where a deployment is in its life, as far as the platform can know: one pure function over recorded facts.

The guide's step 10 names the stages a model developer watches (building → running → active); the platform
knows them as::

    pending → committed → merged → synced → image built → healthy → running → active

Each stage has its own evidence, all of it already recorded:

================  =====================================================================================
pending           the deployment row exists (``created_at``)
committed         its change is on a review branch: a commit sha, or a status past ``pending``
merged            the change is on the base branch Argo CD deploys: status ``merged`` or ``synced``
synced            Argo CD reported the release's commit applied (``argocd_reports``, matched by commit)
image built       the row's ``container_image`` names a digest (``…@sha256:…``, written by
                  ``build-image --write-back``), or results arrive from a merged deployment, or Argo
                  CD reports it Healthy (its pod could not run without an image)
healthy           Argo CD reported the release Healthy
running           a result (prediction or submission, any status) within ``RUNNING_POLLS`` polling
                  intervals
active            a *successful submission* within ``ACTIVE_POLLS`` polling intervals
================  =====================================================================================

The stage is the last one of the unbroken chain from ``pending``: evidence for a later stage does not
count while an earlier one is missing. In particular, results for a deployment whose change is not merged
(``pending``/``committed``: a local ``--dry-run`` run, an imported log) do not make it *running*: Argo CD
has not deployed it, so the results come from a run outside the cluster. The stage stays ``committed`` and
the reason says results are arriving from elsewhere.

``failed``, ``abandoned``, ``retiring``, ``retired`` and ``superseded`` (a release a later one replaced) are side states and show as themselves; their
``reached`` list still tells what the facts show (a ``retiring`` deployment may still be running).

``synced`` and ``healthy`` need Argo CD's notifications (``argocd/notifications-cm.yaml``): without any
report about the release they are skipped, not missing, so a platform Argo CD does not report to still
shows *running* and *active*. A report of a failed sync or of a Degraded health makes the stage
``degraded``, its reason Argo CD's message — until results newer than that report show the model runs.

No silence means "never": after ``RUNNING_POLLS`` intervals without a result a merged deployment falls back
to *image built* (or *merged*), with a reason such as ``no result for 9 min, polling interval 2 min``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

STAGES = ("pending", "committed", "merged", "synced", "image built", "healthy", "running", "active")
ARGOCD_STAGES = ("synced", "healthy")  # evidence only Argo CD's reports give: skipped when there is none
DEGRADED = "degraded"  # a failed sync or Degraded health reported by Argo CD (between merged and running)
SIDE_STATES = ("failed", "abandoned", "retiring", "retired", "superseded")
DEFAULT_POLLING_INTERVAL = 120  # seconds: model.yaml's allora.polling_interval default (bundle/manifest.py)
# "running": a result within this many polling intervals. One missed window is ordinary (a slow run, the
# reporter's batching); three in a row means results stopped arriving.
RUNNING_POLLS = 3
# "active": a successful submission within this many polling intervals; the same span as the
# AlloraNoRecentSuccess alert's NO_SUCCESS_POLLS (render/monitoring.py), so the page and the alert agree.
ACTIVE_POLLS = 5
DIGEST_MARKER = "@sha256:"


@dataclass(frozen=True)
class LifecycleFacts:
    """What the platform recorded about one deployment. Times are timezone-aware.

    ``status``: the record's state (db/records.py ``DEPLOYMENT_STATUSES``); ``image``: its container image
    reference; ``polling_interval``: seconds (None: the model.yaml default, 120); ``last_result_at``: the
    newest result of any kind and status; ``last_success_at``: the newest *successful submission*.
    """

    status: str
    image: Optional[str] = None
    polling_interval: Optional[int] = None
    created_at: Optional[datetime] = None
    commit_sha: Optional[str] = None
    branch: Optional[str] = None
    status_message: Optional[str] = None
    last_result_at: Optional[datetime] = None
    last_success_at: Optional[datetime] = None
    argocd: Any = None  # the newest Argo CD report on the release's commit (argocd_reports.ArgoCDReport), if any

    @classmethod
    def of(cls, deployment: Any, summary: Any = None, argocd: Any = None) -> "LifecycleFacts":
        """From a ``DeploymentRecord``, when results were read its ``ResultSummary``, and its Argo CD report."""
        return cls(
            status=deployment.status, image=deployment.container_image, polling_interval=deployment.polling_interval,
            created_at=deployment.created_at, commit_sha=deployment.commit_sha, branch=deployment.repo_branch,
            status_message=deployment.status_message,
            last_result_at=summary.last_result_at if summary is not None else None,
            last_success_at=summary.last_success_at.get("submission") if summary is not None else None,
            argocd=argocd,
        )  # fmt: skip


@dataclass(frozen=True)
class StageReached:
    """A stage the facts show; ``at`` is the time of its evidence when one is recorded (for running and
    active: the newest result / successful submission), else None."""

    stage: str
    at: Optional[datetime] = None


@dataclass(frozen=True)
class Lifecycle:
    """``derive_lifecycle``'s answer: the ``stage`` (one of ``STAGES`` or ``SIDE_STATES``), the stages
    ``reached`` in order, a one-line ``reason``, and the ``polling_interval`` (seconds) it was judged by."""

    stage: str
    reason: str
    polling_interval: int
    reached: list[StageReached] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings."""
        return {
            "stage": self.stage,
            "reason": self.reason,
            "polling_interval": self.polling_interval,
            "reached": [{"stage": r.stage, "at": r.at.isoformat() if r.at else None} for r in self.reached],
        }


def derive_lifecycle(facts: LifecycleFacts, now: datetime) -> Lifecycle:
    """The lifecycle stage of one deployment as of ``now`` (timezone-aware; use the database's clock, the
    one results are stamped with). Pure: no I/O. Rules in the module docstring."""
    interval = facts.polling_interval if facts.polling_interval and facts.polling_interval > 0 else DEFAULT_POLLING_INTERVAL
    running_span, active_span = RUNNING_POLLS * interval, ACTIVE_POLLS * interval
    result_age = _age(facts.last_result_at, now)
    success_age = _age(facts.last_success_at, now)
    has_digest = DIGEST_MARKER in (facts.image or "")
    report = facts.argocd
    merged = facts.status in ("merged", "synced") or report is not None  # Argo CD syncs only the base branch
    # results newer than Argo CD's last word show the pod runs: a recovery Argo CD reports no more (oncePer revision)
    since = report is not None and facts.last_result_at is not None and facts.last_result_at > report.reported_at
    healthy = report is not None and (report.health_status == "Healthy" or since)
    results_recent = result_age is not None and result_age <= running_span
    evidence = {
        "pending": (True, facts.created_at),
        "committed": (bool(facts.commit_sha) or facts.status in ("committed", "merged", "synced"), None),
        "merged": (merged, None),
        "synced": (report is not None and (report.sync_status == "Synced" and report.event != "sync-failed" or since), _at(report)),
        "image built": (has_digest or (merged and facts.last_result_at is not None) or healthy, None),
        "healthy": (healthy, _at(report)),
        "running": (results_recent, facts.last_result_at),
        "active": (results_recent and success_age is not None and success_age <= active_span, facts.last_success_at),
    }
    reached = []
    for stage in STAGES:
        shown, at = evidence[stage]
        if not shown and stage in ARGOCD_STAGES and report is None:
            continue  # no Argo CD report at all: these stages cannot be known, so they do not break the chain
        if not shown:
            break
        reached.append(StageReached(stage, at))
    stage = facts.status if facts.status in SIDE_STATES else reached[-1].stage
    if stage not in SIDE_STATES and _degraded(report, facts.last_result_at):
        stage = DEGRADED
    every = f"polling interval {human_span(interval)}"
    return Lifecycle(stage=stage, reason=_reason(stage, facts, has_digest, result_age, success_age, every), polling_interval=interval, reached=reached)


def _at(report: Any) -> Optional[datetime]:
    return report.reported_at if report is not None else None


def _degraded(report: Any, last_result_at: Optional[datetime]) -> bool:
    """A failed sync or Degraded health reported, and no result since that report (which would show it runs)."""
    if report is None or not report.failed:
        return False
    return last_result_at is None or last_result_at <= report.reported_at


def _reason(stage: str, f: LifecycleFacts, has_digest: bool, result_age, success_age, every: str) -> str:
    last = f"last result {human_span(result_age)} ago" if result_age is not None else "no result reported yet"
    if stage in SIDE_STATES:
        told = {"failed": "publishing failed", "abandoned": "its review branch was deleted unmerged",
                "retiring": "a retire change waits for review", "retired": "removed from the cluster",
                "superseded": "a later release replaced it on the base branch"}[stage]  # fmt: skip
        return (f"{stage}: {f.status_message or told}" + (f"; {last}" if result_age is not None else ""))[:500]
    # reasons are shown in parentheses after the stage (`running (…)`): no parentheses inside them
    if stage == DEGRADED:
        what = "sync failed" if f.argocd.event == "sync-failed" else f"health {f.argocd.health_status}"
        return f"Argo CD: {what} at revision {f.argocd.revision[:12]}: {f.argocd.message or 'no message'}"[:500]
    outside = f"; results arrive from a run outside the cluster, e.g. --dry-run: {last}" if result_age is not None else ""
    if stage == "pending":
        return f"recorded; its change is not committed yet{outside}"
    if stage == "committed":
        where = f" on {f.branch}" if f.branch else ""
        return f"waiting for review{where}: Argo CD deploys it once merged{outside}"
    if stage == "merged":  # any result would have shown the image
        return "merged; no image digest recorded yet by build-image --write-back, and no result reported yet"
    if stage in ARGOCD_STAGES:
        said = "synced" if stage == "synced" else "synced and healthy"
        where = f"Argo CD reports it {said} at revision {f.argocd.revision[:12]}"
        return f"{where}; " + (f"no result reported yet, {every}" if result_age is None else f"no result for {human_span(result_age)}, {every}")
    if stage == "image built":
        if result_age is None:  # then the digest is the evidence
            return f"image built; no result reported yet, {every}"
        return f"no result for {human_span(result_age)}, {every}"
    if stage == "running":
        if success_age is None:
            return f"results arriving, {last}; no successful submission yet"
        return f"results arriving, {last}; no successful submission for {human_span(success_age)}, {every}"
    return f"last successful submission {human_span(success_age)} ago, {every}"


def _age(at: Optional[datetime], now: datetime) -> Optional[float]:
    """Seconds from ``at`` to ``now``; a result stamped slightly in the future (clock skew) counts as now."""
    return None if at is None else max(0.0, (now - at).total_seconds())


def human_age(at: datetime, now: datetime) -> str:
    """How long before ``now`` ``at`` was, as people say it (``human_span``; a time after ``now`` is 0 s)."""
    return human_span(_age(at, now))


def human_span(seconds: float) -> str:
    """A duration as people say it: 45 s, 9 min, 3 h, 2 d (rounded down)."""
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 2 * 3600:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


# --- the status of one deployment, as `status NAME`, the API and the page show it -------------------------


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment's lifecycle and its results summary (``db.results.ResultSummary``), judged at the
    summary's ``as_of`` (the database's clock)."""

    network: str
    lifecycle: Lifecycle
    summary: Any

    def results_dict(self) -> dict[str, Any]:
        """The summary as JSON, each recent result with its ``explorer_url`` (None without a valid tx hash)."""
        from allora_gitops.explorer import explorer_tx_url

        out = self.summary.to_dict()
        for row in out["recent"]:
            row["explorer_url"] = explorer_tx_url(self.network, row.get("tx_hash"))
        return out


def deployment_status(conn, deployment: Any, *, recent: int = 10) -> DeploymentStatus:
    """Read one deployment's results summary (``db.results.deployment_result_summary``, the last ``recent``
    results) and derive its lifecycle from it. Raises ``DatabaseError`` when the database fails."""
    from allora_gitops.db.results import deployment_result_summary

    from allora_gitops.argocd_reports import reports_by_commit

    summary = deployment_result_summary(conn, deployment.id, recent=recent)
    report = reports_by_commit(conn, [deployment.commit_sha]).get(deployment.commit_sha or "")
    return DeploymentStatus(deployment.network, derive_lifecycle(LifecycleFacts.of(deployment, summary, report), summary.as_of), summary)


def deployments_lifecycles(conn, deployments: list, *, overviews: Optional[dict] = None) -> dict[str, Lifecycle]:
    """deployment id → Lifecycle for many deployments at once, from their newest result and newest successful
    submission (``db.results.deployment_overviews``: one statement for all of them), judged at the database's
    clock. ``overviews``: those already read for these deployments (the deployments page reads them for its
    other columns), so they are not read twice."""
    from allora_gitops.db.results import deployment_overviews

    from allora_gitops.argocd_reports import reports_by_commit

    if overviews is None:
        overviews = deployment_overviews(conn, [d.id for d in deployments], kinds=())
    reports = reports_by_commit(conn, [d.commit_sha for d in deployments])
    return {
        d.id: derive_lifecycle(LifecycleFacts.of(d, overviews[d.id], reports.get(d.commit_sha or "")), overviews[d.id].as_of)
        for d in deployments
    }
