"""Argo CD reports back: the repository's notification templates, rendered for a sample Application, posted to
the real platform (uvicorn) with the webhook token, change what status, the API and the page say.

Argo CD itself cannot run here. What stands in for it: the ConfigMap ``repo init`` wrote (read from the bare
repository), its webhook service's URL path and headers (``$key`` replaced from the Secret, as Argo CD does)
and each template's body rendered over a sample Application by ``tests/fixtures/gotemplate.py`` (Go template
semantics for the constructs the templates use; anything else fails the test).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

from allora_gitops import constants as C
from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import git, remote_file
from tests.fixtures.gotemplate import render_go_template
from tests.fixtures.platform import start_platform, stop_platform

NAME = "linear-forecaster"
APPLICATION = f"{NAME}-testnet"
PATH = f"deployments/{NAME}/overlays/testnet"


@pytest.fixture
def gitops(cli, database_url, gitops_home, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_DATABASE_URL", database_url)
    monkeypatch.setenv("ALLORA_STORE_URL", (tmp_path / "objects").as_uri())
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(gitops_home))
    return lambda *args: cli("gitops", *args)


@pytest.fixture
def server(tmp_path, database_url, gitops_remote, gitops_home):
    platform = start_platform(
        tmp_path, database_url=database_url, repo=gitops_remote, store_url=(tmp_path / "objects").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "server-state")},
    )  # fmt: skip
    try:
        yield platform
    finally:
        stop_platform(platform)


def merge_commit(repo: Path, branch: str) -> str:
    """A reviewer's merge of ``branch`` into main as a merge commit (GitHub's default), not a fast-forward."""
    main, tip = git(repo, "rev-parse", "main").strip(), git(repo, "rev-parse", branch).strip()
    env_args = ("-c", "user.name=reviewer", "-c", "user.email=reviewer@example.com")
    merge = git(repo, *env_args, "commit-tree", f"{tip}^{{tree}}", "-p", main, "-p", tip, "-m", f"Merge {branch}").strip()
    git(repo, "update-ref", "refs/heads/main", merge, main)
    return merge


class ArgoCD:
    """Argo CD's notifications controller, as far as the repository's ConfigMap tells it what to send."""

    def __init__(self, repo: Path, base_url: str, secret: dict[str, str]):
        text = remote_file(repo, "main", f"{C.ARGOCD_DIR}/notifications-cm.yaml")
        assert text is not None, "repo init renders argocd/notifications-cm.yaml"
        self.cm = yaml.safe_load(text)
        self.base_url, self.secret = base_url, secret
        self.service = yaml.safe_load(self.cm["data"][f"service.webhook.{C.ARGOCD_WEBHOOK_SERVICE}"])

    def trigger(self, name: str) -> dict:
        [condition] = yaml.safe_load(self.cm["data"][f"trigger.{name}"])
        return condition

    def request(self, template: str, app: dict) -> tuple[str, dict, bytes]:
        webhook = yaml.safe_load(self.cm["data"][f"template.{template}"])["webhook"][C.ARGOCD_WEBHOOK_SERVICE]
        assert webhook["method"] == "POST"
        body = render_go_template(webhook["body"], {"app": app, "context": {}})
        headers = {h["name"]: re.sub(r"\$([\w-]+)", lambda m: self.secret[m.group(1)], h["value"]) for h in self.service["headers"]}
        assert self.service["url"] == C.PLATFORM_SERVICE_URL  # the platform's Service in the cluster; here, the test's server
        return self.base_url + webhook["path"], headers, body.encode()

    def send(self, template: str, app: dict) -> httpx.Response:
        url, headers, body = self.request(template, app)
        return httpx.post(url, headers=headers, content=body, timeout=30)


def application(revision: str, *, health: str = "Healthy", health_message: str | None = None, phase: str = "Succeeded",
                op_message: str = "successfully synced (all tasks run)", finished: str = "2026-12-07T10:00:00Z",
                reconciled: str = "2026-12-07T10:00:05Z", name: str = APPLICATION, path: str = PATH) -> dict:  # fmt: skip
    """An Application as Argo CD stores it (the fields the templates and triggers read, and some they do not)."""
    health_status = {"status": health, **({"message": health_message} if health_message else {})}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "labels": {"app.kubernetes.io/managed-by": "allora-gitops"}},
        "spec": {"project": "allora-models", "source": {"repoURL": "file:///repo.git", "targetRevision": "main", "path": path},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "allora-models"}},
        "status": {
            "sync": {"status": "Synced", "revision": revision},
            "health": health_status,
            "operationState": {"phase": phase, "message": op_message, "startedAt": "2026-12-07T09:59:58Z", "finishedAt": finished,
                               "syncResult": {"revision": revision}},
            "reconciledAt": reconciled,
            "resources": [
                {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "allora-models", "name": f"{NAME}-testnet",
                 "status": "Synced", "health": {"status": health, **({"message": "Deployment \"x\" exceeded its progress deadline"}
                                                                      if health == "Degraded" else {})}},
                {"version": "v1", "kind": "ServiceAccount", "namespace": "allora-models", "name": f"{NAME}-testnet", "status": "Synced"},
            ],
        },
    }  # fmt: skip


@pytest.fixture
def published(gitops, gitops_remote, records, tmp_path):
    """linear-forecaster 1.0.0 published on testnet and merged into main with a merge commit: (release commit, main's revision)."""
    r = gitops("publish", make_bundle(tmp_path), "--repo", gitops_remote, "--network", "testnet")
    assert r.code == 0, r.err
    [d] = records.list_deployments(name=NAME)
    revision = merge_commit(gitops_remote, C.review_branch(NAME, "testnet", "1.0.0"))
    assert revision != d.commit_sha
    return d, revision


def lifecycle_of(gitops, repo) -> dict:
    status = gitops("status", NAME, "--repo", repo, "--json")
    assert status.code == 0, status.err
    [row] = json.loads(status.out)
    return row["lifecycle"]


def test_the_rendered_wiring_is_consistent(gitops_remote):
    cm = yaml.safe_load(remote_file(gitops_remote, "main", f"{C.ARGOCD_DIR}/notifications-cm.yaml"))
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-notifications-cm", "argocd")
    triggers = {k.removeprefix("trigger."): yaml.safe_load(v)[0] for k, v in cm["data"].items() if k.startswith("trigger.")}
    assert tuple(triggers) == C.ARGOCD_TRIGGERS
    assert triggers["on-allora-deployed"]["oncePer"] == "app.status.sync.revision"  # once per revision
    for trigger in triggers.values():  # every template a trigger sends exists
        assert all(f"template.{t}" in cm["data"] for t in trigger["send"])
    # the token comes from argocd-notifications-secret, never from the repository
    service = yaml.safe_load(cm["data"][f"service.webhook.{C.ARGOCD_WEBHOOK_SERVICE}"])
    assert {"name": "Authorization", "value": f"Bearer ${C.ARGOCD_WEBHOOK_TOKEN_KEY}"} in service["headers"]
    # the AppProject subscribes its Applications to each trigger
    project = yaml.safe_load(remote_file(gitops_remote, "main", f"{C.ARGOCD_DIR}/appproject.yaml"))
    assert project["metadata"]["annotations"] == {
        f"notifications.argoproj.io/subscribe.{t}.{C.ARGOCD_WEBHOOK_SERVICE}": "" for t in C.ARGOCD_TRIGGERS
    }


def test_repo_config_adds_the_wiring_to_a_repository_made_before_it(cli, gitops_remote, gitops_home):
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist

    older = {f"{C.ARGOCD_DIR}/notifications-cm.yaml"}
    persist(parse_remote(gitops_remote), TreeChange(delete_files=tuple(older)), branch="main", message="as before 0009\n")
    assert remote_file(gitops_remote, "main", f"{C.ARGOCD_DIR}/notifications-cm.yaml") is None

    r = cli("gitops", "repo", "config", "--repo", gitops_remote, "monitoring", "true", "--branch", "main")

    assert r.code == 0, r.err
    assert "trigger.on-allora-deployed" in remote_file(gitops_remote, "main", f"{C.ARGOCD_DIR}/notifications-cm.yaml")


def test_argocd_reports_move_the_release_through_synced_healthy_and_degraded(gitops, cli, gitops_remote, published, server, records):
    d, revision = published
    token = cli("gitops", "argocd", "rotate-token", "--grace", "0")
    assert token.code == 0, token.err
    secret = token.out.strip()
    assert secret.startswith("aga_") and C.ARGOCD_WEBHOOK_TOKEN_KEY in token.err
    argocd = ArgoCD(gitops_remote, server.url, {C.ARGOCD_WEBHOOK_TOKEN_KEY: secret})
    before = lifecycle_of(gitops, gitops_remote)
    assert before["stage"] == "merged" and "synced" not in [s["stage"] for s in before["reached"]]

    # synced and healthy: the merge commit Argo CD deployed is matched to the release it runs
    answer = argocd.send("allora-deployed", application(revision))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "recorded": True, "ignored": False, "reason": "deployed: Synced, Healthy", "application": APPLICATION, "revision": revision,
        "name": NAME, "network": "testnet", "release_commit": d.commit_sha,
    }  # fmt: skip
    healthy = lifecycle_of(gitops, gitops_remote)
    assert healthy["stage"] == "healthy"
    assert [s["stage"] for s in healthy["reached"]] == ["pending", "committed", "merged", "synced", "image built", "healthy"]

    # degraded, with Argo CD's message (any characters: the template sends it as a JSON string)
    message = 'Deployment "linear-forecaster-testnet" exceeded its progress deadline <rollout> & more'
    degraded_app = application(revision, health="Degraded", health_message=message, reconciled="2026-12-07T10:20:00Z")
    answer = argocd.send("allora-health-degraded", degraded_app)
    assert answer.status_code == 200 and answer.json()["recorded"] is True, answer.text
    shown = lifecycle_of(gitops, gitops_remote)
    assert shown["stage"] == "degraded"
    assert shown["reason"] == f"Argo CD: health Degraded at revision {revision[:12]}: {message}"
    status = gitops("status", NAME, "--repo", gitops_remote)
    assert f"lifecycle: degraded (Argo CD: health Degraded at revision {revision[:12]}: {message})" in status.out
    # the API and the page say the same
    admin = server.token("ops", admin=True)
    api = httpx.get(f"{server.url}/api/deployments/{d.id}", headers=server.headers(admin), timeout=30).json()
    assert (api["lifecycle"]["stage"], api["lifecycle"]["reason"]) == ("degraded", shown["reason"])
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        form = browser.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert browser.post("/login", data={"token": admin, "csrf": csrf}).status_code in (200, 303)
        page = browser.get(f"/deployments/{d.id}")
        assert page.status_code == 200 and "degraded" in page.text
        assert "exceeded its progress deadline &lt;rollout&gt; &amp; more" in page.text  # Argo CD's message, escaped

    # the same report again is a replay: ignored, and said so
    again = argocd.send("allora-health-degraded", degraded_app)
    assert again.status_code == 200
    assert again.json()["recorded"] is False and again.json()["reason"] == f"replay: this health-degraded report of {revision[:12]} is already recorded"


def test_a_sync_failure_shows_argo_cds_message(gitops, cli, gitops_remote, published, server):
    _d, revision = published
    secret = cli("gitops", "argocd", "rotate-token").out.strip()
    argocd = ArgoCD(gitops_remote, server.url, {C.ARGOCD_WEBHOOK_TOKEN_KEY: secret})
    failed = application(revision, health="Missing", phase="Failed", op_message="one or more objects failed to apply, reason: "
                         'Job.batch "x" is invalid: spec.template: field is immutable', finished="2026-12-07T10:01:00Z")  # fmt: skip
    assert "Failed" in argocd.trigger("on-allora-sync-failed")["when"]

    answer = argocd.send("allora-sync-failed", failed)

    assert answer.status_code == 200 and answer.json()["recorded"] is True, answer.text
    shown = lifecycle_of(gitops, gitops_remote)
    assert shown["stage"] == "degraded"
    assert shown["reason"] == (f"Argo CD: sync failed at revision {revision[:12]}: one or more objects failed to apply, reason: "
                               'Job.batch "x" is invalid: spec.template: field is immutable')  # fmt: skip

    # a message that carries something like a private key is kept redacted, never as it came
    key = "ab" * 32
    leaky = application(revision, health="Missing", phase="Error", op_message=f"env WALLET_KEY=0x{key} rejected",
                        finished="2026-12-07T10:02:00Z")  # fmt: skip
    assert argocd.send("allora-sync-failed", leaky).json()["recorded"] is True
    shown = lifecycle_of(gitops, gitops_remote)
    assert key not in shown["reason"] and "[redacted]" in shown["reason"]


def test_unknown_applications_other_commits_and_stale_revisions_are_ignored_and_say_so(cli, gitops, gitops_remote, published, server):
    d, revision = published
    secret = cli("gitops", "argocd", "rotate-token").out.strip()
    argocd = ArgoCD(gitops_remote, server.url, {C.ARGOCD_WEBHOOK_TOKEN_KEY: secret})
    first = git(gitops_remote, "rev-list", "--max-parents=0", "main").strip()  # repo init's commit: runs nothing

    def outcome(app: dict) -> tuple[bool, str]:
        answer = argocd.send("allora-deployed", app)
        assert answer.status_code == 200, answer.text
        return answer.json()["recorded"], answer.json()["reason"]

    assert outcome(application(revision, name="other-model-testnet", path="deployments/other-model/overlays/testnet")) == (
        False, "unknown application other-model-testnet: no release of other-model on testnet is recorded")
    assert outcome(application(revision, name="sandbox-x", path="sandboxes/linear-forecaster-3f6c1d2e4b5a")) == (
        False, "unknown application sandbox-x (path 'sandboxes/linear-forecaster-3f6c1d2e4b5a'): not a deployment overlay of this platform")
    assert outcome(application(first, finished="2026-12-07T11:00:00Z")) == (
        False, f"revision {first[:12]} runs no recorded release of {NAME} on testnet")
    assert outcome(application("0" * 40, finished="2026-12-07T11:00:00Z")) == (
        False, f"revision {'0' * 12} runs no recorded release of {NAME} on testnet")
    # the release's revision is recorded; a report of another revision from before it is stale
    assert outcome(application(revision, finished="2026-12-07T12:00:00Z"))[0] is True
    recorded, reason = outcome(application(d.commit_sha, finished="2026-12-07T11:30:00Z"))
    assert recorded is False and reason.startswith(f"stale revision: {APPLICATION} already reported {revision[:12]} at 2026-12-07T12:00:00")
    assert lifecycle_of(gitops, gitops_remote)["stage"] == "healthy"


def test_the_webhook_wants_its_own_live_token(cli, gitops_remote, published, server):
    _d, revision = published
    first = cli("gitops", "argocd", "rotate-token", "--grace", "0").out.strip()
    argocd = ArgoCD(gitops_remote, server.url, {C.ARGOCD_WEBHOOK_TOKEN_KEY: first})
    url, headers, body = argocd.request("allora-deployed", application(revision))
    user_token = server.token("alice", admin=True)  # even an admin's API token is not Argo CD's

    def post(authorization: str | None) -> httpx.Response:
        h = {k: v for k, v in headers.items() if k != "Authorization"}
        return httpx.post(url, headers={**h, **({"Authorization": authorization} if authorization else {})}, content=body, timeout=30)

    for authorization in (None, "Bearer", f"Bearer {first[:-1]}x", f"Bearer {user_token}", f"Basic {first}",
                          "Bearer aga_00000000_" + "A" * 43):  # fmt: skip
        answer = post(authorization)
        assert answer.status_code == 401, (authorization, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert first not in answer.text and user_token not in answer.text
    assert post(f"Bearer {first}").status_code == 200

    # rotated without a grace period: the previous token is expired at once; with one, it still works meanwhile
    second = cli("gitops", "argocd", "rotate-token", "--grace", "0").out.strip()
    assert post(f"Bearer {first}").status_code == 401
    third = cli("gitops", "argocd", "rotate-token", "--grace", "1h").out.strip()
    assert post(f"Bearer {second}").status_code == 200 and post(f"Bearer {third}").status_code == 200
    listed = cli("gitops", "argocd", "tokens", "--json")
    assert [t["prefix"] for t in json.loads(listed.out)] == [t[:12] for t in (first, second, third)]
    assert all(s not in listed.out for s in (first, second, third))


def test_a_malformed_report_is_a_422_naming_the_field(cli, gitops_remote, published, server):
    _d, revision = published
    secret = cli("gitops", "argocd", "rotate-token").out.strip()
    argocd = ArgoCD(gitops_remote, server.url, {C.ARGOCD_WEBHOOK_TOKEN_KEY: secret})
    url, headers, body = argocd.request("allora-deployed", application(revision))
    report = json.loads(body)

    for field, value in (("revision", "main"), ("reported_at", "yesterday"), ("sync_status", "Fine"), ("extra", 1)):
        answer = httpx.post(url, headers=headers, json={**report, field: value}, timeout=30)
        assert answer.status_code == 422, answer.text
        assert field in answer.json()["detail"]
