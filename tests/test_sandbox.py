"""Sandbox runs end to end: a real bare repository, real PostgreSQL, kubectl kustomize, kubernetes-validate, checkov."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from allora_gitops import constants as C
from allora_gitops.render.sandbox import SandboxRun
from tests.conftest import EXAMPLES
from tests.fixtures.git import git, remote_file
from tests.fixtures.rendered import EXAMPLE_SHA256
from tests.test_publish import make_bundle

try:  # conftest's star import leaves out underscore names; the postgres fixtures need this one
    from tests.fixtures.postgres import _migrated_template  # noqa: F401
except ImportError:
    pass

NAME = "linear-forecaster"
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def env(database_url, gitops_home, tmp_path, monkeypatch) -> dict[str, str]:
    values = {
        "ALLORA_DATABASE_URL": database_url,
        "ALLORA_STORE_URL": (tmp_path / "objects").as_uri(),
        "ALLORA_GITOPS_HOME": str(gitops_home),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def set_repo_settings(repo: Path, extra: str) -> None:
    """Merge ``extra`` (YAML) into the marker file's sections on main (as an operator's reviewed change would)."""
    import yaml

    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist

    doc = yaml.safe_load(remote_file(repo, "main", C.REPO_MARKER_FILE))
    for key, value in yaml.safe_load(extra).items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    text = yaml.safe_dump(doc, sort_keys=False)
    persist(parse_remote(repo), TreeChange(files={C.REPO_MARKER_FILE: text}), branch="main", message="settings\n")


def rendered_sandbox(make_spec, root: Path) -> Path:
    from allora_gitops.render import write_tree
    from allora_gitops.render.sandbox import SandboxRun, render_sandbox

    spec = make_spec("testnet", wallet_secret="allora-sandbox-wallet")
    write_tree(render_sandbox(spec, SandboxRun(1800, "2026-12-01T00:30:00Z", "alice", "allora-sandbox-wallet")), root)
    return root / C.sandbox_dir(NAME, EXAMPLE_SHA256)


def test_the_sandbox_job_is_bounded_and_has_the_deployments_pod(make_spec, tmp_path):
    import yaml

    directory = rendered_sandbox(make_spec, tmp_path / "repo")
    objects = list(yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout))
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["apiVersion"] == "batch/v1"
    run_id = SandboxRun(1800, "2026-12-01T00:30:00Z", "alice", "allora-sandbox-wallet").run_id
    assert job["metadata"]["name"] == f"{NAME}-{run_id}-sandbox-{EXAMPLE_SHA256[:12]}"
    assert (job["spec"]["activeDeadlineSeconds"], job["spec"]["backoffLimit"]) == (1800, 0)
    # under Argo CD's selfHeal a TTL deletion would be undone: the finished Job would run again (argo-cd #13851)
    assert "ttlSecondsAfterFinished" not in job["spec"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ALLORA_MAX_RUNTIME"] == "1800" and env["ALLORA_NETWORK"] == "testnet"
    assert [v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "wallet"] == ["allora-sandbox-wallet"]
    # the deployment's pod security, unchanged
    from allora_gitops.render import render_base

    base = yaml.safe_load(render_base(make_spec("testnet"))[f"{C.deployment_base_dir(NAME)}/deployment.yaml"])
    base_pod = base["spec"]["template"]["spec"]
    assert pod["securityContext"] == base_pod["securityContext"]
    assert container["securityContext"] == base_pod["containers"][0]["securityContext"]
    assert container["livenessProbe"] == base_pod["containers"][0]["livenessProbe"]
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")  # scraped like a deployment, this sandbox's pods only
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": f"{NAME}-{EXAMPLE_SHA256[:12]}", "allora.network/sandbox": "true",
    }  # fmt: skip
    assert monitor["spec"]["selector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert "PrometheusRule" not in {o["kind"] for o in objects}
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["allora.network/sandbox"] == "true"
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == f"{NAME}-{EXAMPLE_SHA256[:12]}"


def test_a_restarted_sandbox_gets_a_new_job_name_and_the_name_fits_a_label(make_spec, tmp_path):
    """A Job's pod template is immutable: a restart under the old name would fail every sync (argo-cd #14910)."""
    import yaml

    from allora_gitops.render.sandbox import render_sandbox

    def job(spec, run) -> dict:
        return yaml.safe_load(render_sandbox(spec, run)[f"{C.sandbox_dir(spec.name, spec.sha256)}/job.yaml"])

    spec = make_spec("testnet", wallet_secret="allora-sandbox-wallet")
    first = job(spec, SandboxRun(1800, "2026-12-01T00:30:00Z", "alice", "allora-sandbox-wallet"))
    again = job(spec, SandboxRun(1800, "2026-12-01T01:10:00Z", "alice", "allora-sandbox-wallet"))
    assert first["metadata"]["name"] != again["metadata"]["name"]
    assert first["spec"]["template"]["spec"]["containers"][0]["image"] == again["spec"]["template"]["spec"]["containers"][0]["image"]

    longest = "m" * C.MAX_NAME_LENGTH
    long_spec = make_spec("testnet", name=longest, wallet_secret="allora-sandbox-wallet")
    root = tmp_path / "long"
    from allora_gitops.render import write_tree

    write_tree(render_sandbox(long_spec, SandboxRun(60, "2026-12-01T00:01:00Z", "alice", "allora-sandbox-wallet")), root)
    objects = yaml.safe_load_all(
        subprocess.run(["kubectl", "kustomize", str(root / C.sandbox_dir(longest, spec.sha256))], capture_output=True, text=True, check=True).stdout
    )
    (name,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Job"]
    assert len(name) == 63 and name.endswith(f"-sandbox-{spec.sha256[:12]}")  # the pods' job-name label value


def test_the_sandbox_passes_verify_strict_schemas_and_checkov(cli, make_spec, tmp_path):
    from tests.test_render import find_checkov

    root = tmp_path / "repo"
    directory = rendered_sandbox(make_spec, root)

    r = cli("gitops", "verify", root, "--json")

    assert r.code == 0, r.out
    assert json.loads(r.out)["checked"]["overlays"] == [directory.relative_to(root).as_posix()]
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "sandbox.yaml").write_text(subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout)
    proc = subprocess.run([find_checkov(), "-d", str(scan), "--framework", "kubernetes", "--skip-download", "-o", "json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    failed = [(c["check_id"], c["resource"]) for c in (report.get("results") or {}).get("failed_checks", [])]
    assert failed == [] and proc.returncode == 0
    assert report["summary"]["passed"] > 50


def test_sandbox_commits_on_a_review_branch_and_records_a_sandbox_row(cli, env, gitops_remote, records):
    r = cli("gitops", "sandbox", EXAMPLES / NAME, "--repo", gitops_remote, "--duration", "30m", "--topic-id", "7", "--owner", "alice")

    assert r.code == 0, r.err
    rows = records.list_deployments(kind="sandbox")
    assert len(rows) == 1 and records.list_deployments(name=NAME) == []  # ordinary listings leave sandboxes out
    row = rows[0]
    directory = C.sandbox_dir(NAME, row.bundle_sha256)
    branch = C.sandbox_branch(NAME, row.bundle_sha256)
    assert r.out.startswith(f"sandbox {directory} ({NAME} 1.0.0) until ") and r.out.rstrip().endswith(f"on {branch}")
    assert (row.kind, row.owner, row.network, row.topic_id, row.status) == ("sandbox", "alice", "testnet", 7, "committed")
    assert row.wallet_secret_name == "allora-sandbox-wallet" and row.repo_branch == branch
    assert timedelta(minutes=29) < row.expires_at - row.created_at <= timedelta(minutes=31)
    job = remote_file(gitops_remote, branch, f"{directory}/job.yaml")
    assert "activeDeadlineSeconds: 1800" in job and 'value: "7"' in job
    assert remote_file(gitops_remote, "main", f"{directory}/job.yaml") is None

    listed = cli("gitops", "list", "--sandboxes", "--repo", gitops_remote, "--ref", branch)
    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[1].split()[:3] == [f"{NAME}-{row.bundle_sha256[:12]}", "1.0.0", "alice"]
    assert listed.out.splitlines()[1].split()[-1] == "running"  # what that branch would run
    # on the base branch nothing runs until the review branch is merged
    on_main = cli("gitops", "list", "--sandboxes", "--repo", gitops_remote, "--json")
    assert on_main.code == 0, on_main.err
    assert [(s["sandbox"], s["state"]) for s in json.loads(on_main.out)] == [(f"{NAME}-{row.bundle_sha256[:12]}", "committed")]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--network", "mainnet"), 1, "error: sandboxes run on testnet only (with the platform's wallet), not mainnet; use `allora-gitops publish` for mainnet"),
        (("--wallet-secret", "linear-forecaster-testnet-wallet"), 1,
         "error: a sandbox runs with the platform's sandbox wallet Secret allora-sandbox-wallet, never a user's "
         "(--wallet-secret linear-forecaster-testnet-wallet refused)"),
        (("--duration", "2h"), 2, "error: --duration 2h: a sandbox runs for more than 0 s and at most 60 minutes"),
    ],
)
def test_refusals_are_one_line_and_touch_nothing(cli, env, gitops_remote, records, args, code, message):
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "sandbox", EXAMPLES / NAME, "--repo", gitops_remote, "--owner", "alice", *args)

    assert (r.code, r.err.splitlines()) == (code, [message])
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert records.list_deployments(kind="sandbox") == [] and records.list_bundles() == []


@pytest.mark.parametrize("commit", ["review", "direct"])
def test_another_owners_running_sandbox_of_the_same_bundle_is_not_taken_over(cli, env, gitops_remote, records, commit):
    from allora_gitops.errors import GitOpsError
    from allora_gitops.sandbox import SandboxRequest, start_sandbox

    set_repo_settings(gitops_remote, f"sandbox:\n  commit: {commit}\n")
    t0 = datetime.now(timezone.utc).replace(microsecond=0)  # the CLI below runs on the real clock
    alice = start_sandbox(SandboxRequest(source=EXAMPLES / NAME, repo=str(gitops_remote), owner="alice", duration="30m"), clock=lambda: t0)
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "sandbox", EXAMPLES / NAME, "--repo", gitops_remote, "--owner", "bob", "--duration", "10m")

    assert (r.code, r.err.splitlines()[-1]) == (
        1, f"error: {alice.directory} already runs for alice until {(t0 + timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}; one sandbox per bundle at a time: "
        "wait for it to end or run `allora-gitops sandbox prune`",
    )  # fmt: skip
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert 'allora.network/sandbox-owner: "alice"' in remote_file(gitops_remote, alice.branch, f"{alice.directory}/kustomization.yaml")
    # alice may start it again (a new end time); once it has ended, bob may take it
    assert start_sandbox(SandboxRequest(source=EXAMPLES / NAME, repo=str(gitops_remote), owner="alice", duration="20m"), clock=lambda: t0).committed
    late = start_sandbox(SandboxRequest(source=EXAMPLES / NAME, repo=str(gitops_remote), owner="bob", duration="10m"), clock=lambda: t0 + timedelta(minutes=21))
    assert late.committed and 'allora.network/sandbox-owner: "bob"' in remote_file(gitops_remote, late.branch, f"{late.directory}/kustomization.yaml")


def test_per_user_limit_and_prune_with_a_fake_clock(cli, env, gitops_remote, records, tmp_path):
    from allora_gitops.errors import GitOpsError
    from allora_gitops.sandbox import SandboxRequest, prune_sandboxes, start_sandbox

    set_repo_settings(gitops_remote, "sandbox:\n  commit: direct\n  max_per_user: 2\n")
    started = {}
    for n, (owner, minutes, at) in enumerate([("alice", 10, T0), ("alice", 60, T0), ("bob", 30, T0)]):
        bundle = make_bundle(tmp_path / "bundles", version=f"1.0.{n}")
        result = start_sandbox(SandboxRequest(source=bundle, repo=str(gitops_remote), owner=owner, duration=f"{minutes}m"), clock=lambda at=at: at)
        assert result.branch == "main" and result.committed
        started[n] = result.directory
    with pytest.raises(GitOpsError, match=r"^alice already runs 2 sandbox\(es\) .*; the limit is 2 at a time"):
        start_sandbox(SandboxRequest(source=make_bundle(tmp_path / "bundles", version="1.0.9"), repo=str(gitops_remote), owner="alice"), clock=lambda: T0)
    # after alice's first one ended, she may start another
    fourth = start_sandbox(
        SandboxRequest(source=make_bundle(tmp_path / "bundles", version="1.0.3"), repo=str(gitops_remote), owner="alice", duration="1h"),
        clock=lambda: T0 + timedelta(minutes=20),
    )
    head = git(gitops_remote, "rev-parse", "main").strip()

    r = cli("gitops", "sandbox", "prune", "--repo", gitops_remote, "--now", "2026-12-01T00:35:00Z")

    assert r.code == 0, r.err
    assert r.out.splitlines()[:2] == [f"removed {started[0]}", f"removed {started[2]}"]  # 10 and 30 minutes are over
    assert git(gitops_remote, "rev-list", "--count", f"{head}..main").strip() == "1"  # one commit
    remaining = sorted({p.split("/")[1] for p in git(gitops_remote, "ls-tree", "-r", "--name-only", "main", C.SANDBOXES_DIR).split()})
    assert remaining == sorted([started[1].split("/")[1], fourth.directory.split("/")[1]])
    retired = {r.repo_branch and f"{r.name}-{r.bundle_sha256[:12]}" for r in records.list_deployments(kind="sandbox", status="retired")}
    assert retired == {started[0].split("/")[1], started[2].split("/")[1]}
    again = prune_sandboxes(str(gitops_remote), clock=lambda: T0 + timedelta(minutes=35))
    assert (again.removed, again.commit) == ([], None)


def test_repo_init_adds_a_scheduled_prune_workflow_that_passes_zizmor(gitops_template_repo, tmp_path):
    import yaml

    from tests.fixtures.workflows import zizmor_findings

    text = remote_file(gitops_template_repo, "main", C.CI_SANDBOXES_WORKFLOW_FILE)
    assert zizmor_findings(text, tmp_path / "sandboxes.yaml") == []
    doc = yaml.safe_load(text)
    assert doc[True]["schedule"] == [{"cron": "*/10 * * * *"}]
    assert '"$RUNNER_TEMP/venv/bin/allora-gitops" sandbox prune --no-record --base "main"' in doc["jobs"]["prune"]["steps"][-1]["run"]


def test_a_bad_sandbox_setting_is_one_line_naming_the_marker(cli, env, gitops_remote):
    set_repo_settings(gitops_remote, "sandbox:\n  commit: sometimes\n")
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "sandbox", EXAMPLES / NAME, "--repo", gitops_remote, "--owner", "alice")

    assert (r.code, r.err.splitlines()) == (1, [
        "error: invalid repository settings in .allora-gitops.yaml (main)",
        ".allora-gitops.yaml (main):23:11: error: sandbox.commit: Input should be 'review' or 'direct' (got 'sometimes')",
    ])
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before
