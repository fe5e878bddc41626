"""The rendered alerts under the real ``promtool test rules``: each fires when it should, with its labels, and not just below.

Each case feeds input series to the PrometheusRule of the example (testnet:
polling 120 s, max_seconds 10, so AlloraNoRecentSuccess after 610 s and a
heartbeat max age of 140 s) and states when the alert fires (one evaluation
earlier it is at most pending), its labels and annotations, and a series just
under the threshold that never fires.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from allora_gitops.render.monitoring import alerts, render_rule_file

NS = "allora-models"
DOCS_URL = "https://docs.example.com/allora-gitops"  # the repository's docs_url: where the runbook_url annotations point
DEP = "linear-forecaster-testnet"
POD = f"{DEP}-5d9c7b6f4-x7k2p"
RT = f'namespace="{NS}",allora_deployment="{DEP}",pod="{POD}",container="model",job="{NS}/linear-forecaster"'
KPOD = f'namespace="{NS}",pod="{POD}",container="model"'
# The platform server's chain series as Prometheus stores them: its own labels (allora_chain_*, chain/metrics.py)
# and the server's scrape target labels (another namespace, the platform's pod).
CH = (f'allora_deployment="{DEP}",allora_model="linear-forecaster",allora_network="testnet",'
      'namespace="allora-platform",pod="allora-platform-7c9d5b6f4-q2w3e",job="allora-platform/api"')  # fmt: skip
MEMORY_LIMIT = 536870912  # 512Mi
CPU_LIMIT = 0.5

# Minutes 0-1 running, then back-off 2-4, run 5, back-off 6-9, run 10, back-off 11-15, run 16, back-off 17-21 …
CRASH_LOOP = "_ _ 1x2 _ 1x3 _ 1x4 _ 1x4 _ 1x4"
CRASH_LOOP_AVAILABLE = "1 1 0x2 1 0x3 1 0x4 1 0x4 1 0x4"
# Last heartbeat at 5m; absent_over_time([5m]) from 11m (promtool 2.42: a closed window), for: 5m.
METRICS_MISSING_AT = 16

# alert → (input series (when it fires), minutes when it fires, labels from the expression, description,
#          input series just under the threshold)
CASES = {
    "AlloraConsecutiveFailures": (
        [(f"allora_consecutive_failures{{{RT}}}", "0 1 2 3 4 4 4 4")],
        5,  # 4 failures at 4m, for: 1m
        {"namespace": NS, "allora_deployment": DEP},
        "4 consecutive prediction or submission failures; see allora_prediction_failures_total by reason.",
        [(f"allora_consecutive_failures{{{RT}}}", "0 1 2 3 3 3 3 3 3 3 0 1")],
    ),
    "AlloraModelDown": (
        [(f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', "1 1 0x15")],
        7,  # no replica from 2m, for: 5m
        {"namespace": NS, "deployment": DEP},
        "The model linear-forecaster on testnet has had no available replica for 5 minutes; it submits nothing.",
        [(f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', "1 1 0x3 1x12")],
    ),
    "AlloraCrashLooping": (
        # A realistic crash loop: back-offs of 3-5 minutes, a minute of running between them, in which the
        # waiting reason is absent and a replica is briefly available. No 10 minutes without a gap.
        [
            (f'kube_pod_container_status_waiting_reason{{{KPOD},reason="CrashLoopBackOff"}}', CRASH_LOOP),
            (f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', CRASH_LOOP_AVAILABLE),
        ],
        12,  # waiting from 2m, for: 10m across the runs
        {"namespace": NS, "pod": POD},
        f"{POD} has been in CrashLoopBackOff again and again for 10 minutes; between back-offs it runs too briefly to submit.",
        [
            # two single crashes 7 minutes apart (one short back-off each): the window never bridges them
            (f'kube_pod_container_status_waiting_reason{{{KPOD},reason="CrashLoopBackOff"}}', "_ _ 1 _x6 1 _x20"),
            # another deployment's crash loop is not this one's
            (f'kube_pod_container_status_waiting_reason{{namespace="{NS}",pod="linear-forecaster-mainnet-5d9c7b6f4-x7k2p",'
             'container="model",reason="CrashLoopBackOff"}', "1x25"),
        ],
    ),
    "AlloraMetricsMissing": (
        # The series vanish (an unselected PodMonitor: no target, no up) while the replica stays available.
        [
            (f"allora_heartbeat_timestamp_seconds{{{RT}}}", "0+60x5 _x25"),
            (f"up{{{RT}}}", "1x5 _x25"),
            (f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', "1x30"),
        ],
        METRICS_MISSING_AT,
        {"namespace": NS, "allora_deployment": DEP},
        "The runtime's series are missing (the scrape fails or finds no target), so every runtime alert of this deployment is blind.",
        [
            # the same silence with no replica available is AlloraModelDown's, not a monitoring gap
            (f"allora_heartbeat_timestamp_seconds{{{RT}}}", "0+60x5 _x25"),
            (f"up{{{RT}}}", "1x5 _x25"),
            (f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', "1x5 0x25"),
        ],
    ),
    "AlloraNoRecentSuccess": (
        [(f"allora_last_success_timestamp_seconds{{{RT}}}", "60x20"), (f"process_start_time_seconds{{{RT}}}", "0x20")],
        13,  # 720 - 60 > 610 at 12m, for: 1m
        {"namespace": NS, "allora_deployment": DEP},
        "The runtime runs but has not produced a valid prediction for 12m 0s.",
        [(f"allora_last_success_timestamp_seconds{{{RT}}}", "0+60x20"), (f"process_start_time_seconds{{{RT}}}", "0x20")],
    ),
    "AlloraHighMemory": (
        [
            (f"container_memory_working_set_bytes{{{KPOD}}}", f"{int(MEMORY_LIMIT * 0.85) + 1}x20"),
            (f'kube_pod_container_resource_limits{{{KPOD},resource="memory",unit="byte"}}', f"{MEMORY_LIMIT}x20"),
        ],
        15,
        {"namespace": NS, "pod": POD},
        "The container uses 85% of its memory limit; it will be OOM-killed at 100 %.",
        [
            (f"container_memory_working_set_bytes{{{KPOD}}}", f"{int(MEMORY_LIMIT * 0.8)}x20"),
            (f'kube_pod_container_resource_limits{{{KPOD},resource="memory",unit="byte"}}', f"{MEMORY_LIMIT}x20"),
        ],
    ),
    "AlloraHighCPU": (
        [
            (f"container_cpu_usage_seconds_total{{{KPOD}}}", f"0+{CPU_LIMIT * 0.85 * 60}x25"),
            (f'kube_pod_container_resource_limits{{{KPOD},resource="cpu",unit="core"}}', f"{CPU_LIMIT}x25"),
        ],
        20,  # rate() over [5m] reaches 85 % once the window is full (5m), for: 15m
        {"namespace": NS, "pod": POD},
        "The container uses 85% of its CPU limit and is being throttled.",
        [
            (f"container_cpu_usage_seconds_total{{{KPOD}}}", f"0+{CPU_LIMIT * 0.79 * 60}x25"),
            (f'kube_pod_container_resource_limits{{{KPOD},resource="cpu",unit="core"}}', f"{CPU_LIMIT}x25"),
        ],
    ),
    "AlloraRestarts": (
        [(f"kube_pod_container_status_restarts_total{{{KPOD}}}", "0 0 1 2 3 3 3")],
        4,  # the third restart, for: 0m
        {"namespace": NS},
        "3 restarts in the last hour (crash, OOM kill or failed liveness probe).",
        [(f"kube_pod_container_status_restarts_total{{{KPOD}}}", "0 0 1 2 2 2 2 2")],
    ),
    "AlloraHeartbeatStale": (
        [(f"allora_heartbeat_timestamp_seconds{{{RT}}}", "0 60 120 180x20")],
        8,  # 360 - 180 > 140 at 6m, for: 2m
        {"namespace": NS, "allora_deployment": DEP},
        "The event loop is stuck; the liveness probe will restart the container.",
        [(f"allora_heartbeat_timestamp_seconds{{{RT}}}", "0+60x20")],
    ),
    "AlloraLowWalletBalance": (
        [(f"allora_wallet_balance_uallo{{{RT}}}", "2e18 9e17x20")],
        11,  # below 1 ALLO from 1m, for: 10m
        {"namespace": NS, "allora_deployment": DEP},
        "The wallet holds 9e+17 uallo; submissions fail once it cannot pay the fees. Top it up.",
        [(f"allora_wallet_balance_uallo{{{RT}}}", "2e18 1e18x20")],
    ),
    "AlloraChainReadFailing": (
        [(f"allora_chain_up{{{CH}}}", "1 0x20")],
        16,  # failing from 1m, for: 15m
        {"allora_deployment": DEP},
        "The platform's chain reader has not read this worker's standing for 15 minutes; the other AlloraChain alerts "
        "are blind meanwhile. `allora-gitops chain status` says why (endpoint down, another network, a bad answer).",
        # a read that fails now and then; another deployment's failures
        [(f"allora_chain_up{{{CH}}}", "1 0x10 1 0x8"), (f'allora_chain_up{{{CH.replace(DEP, "other-testnet")}}}', "0x20")],
    ),
    "AlloraChainNotRegistered": (
        [(f"allora_chain_registered{{{CH}}}", "1 0x20")],
        16,  # unregistered from 1m, for: 15m
        {"allora_deployment": DEP},
        "The chain does not list the worker as registered on the topic; the runtime registers it when it starts. Its payloads are refused.",
        [(f"allora_chain_registered{{{CH}}}", "1 0x13 1x6"), (f'allora_chain_registered{{{CH.replace(DEP, "other-testnet")}}}', "0x20")],
    ),
    "AlloraChainNotWhitelisted": (
        [(f"allora_chain_whitelisted{{{CH}}}", "1 0x10")],
        6,  # from 1m, for: 5m
        {"allora_deployment": DEP},
        "can_submit_worker_payload is false: the chain refuses the worker's payloads. Ask the topic's creator to whitelist the address.",
        [(f"allora_chain_whitelisted{{{CH}}}", "1 0x3 1x10")],
    ),
    "AlloraChainTopicInactive": (
        [(f"allora_chain_topic_active{{{CH}}}", "1 0x20")],
        16,
        {"allora_deployment": DEP},
        "The topic opens no worker windows while inactive (too little stake or fees); the worker submits nothing.",
        [(f"allora_chain_topic_active{{{CH}}}", "1x25")],
    ),
    "AlloraChainScoreBelowLowest": (
        [(f"allora_chain_score_ema{{{CH}}}", "0.5 0.29x40"), (f"allora_chain_topic_lowest_score{{{CH}}}", "0.3x40")],
        31,  # under from 1m, for: 30m
        {"allora_deployment": DEP},
        "The worker's score EMA (0.29) is under the topic's lowest active score: it is at risk of being dropped from the active set.",
        [(f"allora_chain_score_ema{{{CH}}}", "0.5 0.3x40"), (f"allora_chain_topic_lowest_score{{{CH}}}", "0.3x40")],
    ),
    "AlloraChainMissedWindows": (
        [(f"allora_chain_missed_windows{{{CH}}}", "2x60 2+1x30")],
        65,  # 6 at 65m against 2 an hour before (2x60 is minutes 0-60)
        {"allora_deployment": DEP},
        "4 more windows of the topic closed without a successful submission recorded in the last hour.",
        # 3 more within the hour; and a high count that no longer grows
        [(f"allora_chain_missed_windows{{{CH}}}", "2x60 2+1x3 5x30"), (f'allora_chain_missed_windows{{{CH.replace(DEP, "x-testnet")}}}', "40x90")],
    ),
}


@pytest.fixture(scope="module")
def testnet_spec(make_spec):
    return make_spec("testnet", secret_store="allora-vault", docs_url=DOCS_URL)


@pytest.fixture(scope="module")
def promtool():
    found = shutil.which("promtool")
    assert found, "promtool is needed (Debian package prometheus; bash .ci/setup installs it)"
    return found


def test_every_rendered_alert_has_a_case_and_a_runbook(testnet_spec):
    from tests.conftest import REPO_ROOT

    names = [a.name for a in alerts(testnet_spec)]
    assert sorted(names) == sorted(CASES)
    runbooks = (REPO_ROOT / "docs" / "how-to" / "runbooks.md").read_text()
    for name in names:
        assert f'<a id="runbook-{name.lower()}"></a>' in runbooks, name


def test_the_crash_loop_case_never_waits_ten_minutes_on_end():
    """The flapping input is the point: a ``for: 10m`` on the raw waiting reason would restart at every run."""
    from itertools import groupby

    minutes = []
    for token in CRASH_LOOP.split():
        value, _, times = token.partition("x")
        minutes += [value] * (int(times) + 1 if times else 1)
    assert len(minutes) > 20
    assert max(len(list(g)) for v, g in groupby(minutes) if v == "1") < 10


def _series(pairs):
    return [{"series": s, "values": v} for s, v in pairs]


def _firing(spec, name: str, expr_labels: dict, description: str, tmp_path) -> dict:
    """Write the deployment's rule file beside the test; the ``exp_alerts`` entry of ``name`` firing with its labels."""
    alert = next(a for a in alerts(spec) if a.name == name)
    (tmp_path / "rules.yaml").write_text(render_rule_file(spec))
    return {
        "exp_labels": {**expr_labels, **alert.labels},
        "exp_annotations": {"summary": alert.summary, "description": description, "runbook_url": alert.runbook_url},
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_at_the_expected_time_with_its_labels_and_not_just_below(name, testnet_spec, promtool, tmp_path):
    firing, minutes, expr_labels, description, under = CASES[name]
    expected = _firing(testnet_spec, name, expr_labels, description, tmp_path)
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _series(firing),
                "alert_rule_test": [
                    {"eval_time": f"{minutes - 1}m", "alertname": name, "exp_alerts": []},
                    {"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": [expected]},
                ],
            },
            {
                "interval": "1m",
                "input_series": _series(under),
                "alert_rule_test": [{"eval_time": f"{m}m", "alertname": name, "exp_alerts": []} for m in range(0, minutes + 6)],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


# Second ways in: (alert, input series, minute it fires, labels from the expression, description). Each
# isolates one branch of an `or` that the main case above never reaches.
BRANCHES = {
    "the scrape fails (sampleLimit, a NetworkPolicy): up is 0 at once, no waiting for the series to go": (
        "AlloraMetricsMissing",
        [
            (f"up{{{RT}}}", "1 1 0x20"),
            (f"allora_heartbeat_timestamp_seconds{{{RT}}}", "0 60 _x20"),
            (f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="{DEP}"}}', "1x22"),
        ],
        7,  # up == 0 from 2m, for: 5m (the heartbeat alone would take until 13m)
        {"namespace": NS, "allora_deployment": DEP},
        "The runtime's series are missing (the scrape fails or finds no target), so every runtime alert of this deployment is blind.",
    ),
    "no success yet: counted from the process start, not from 0": (
        "AlloraNoRecentSuccess",
        [(f"allora_last_success_timestamp_seconds{{{RT}}}", "0x20"), (f"process_start_time_seconds{{{RT}}}", "120x20")],
        14,  # 780 - 120 > 610 at 13m, for: 1m
        {"namespace": NS, "allora_deployment": DEP},
        "The runtime runs but has not produced a valid prediction for 12m 0s.",
    ),
}


@pytest.mark.parametrize("case", sorted(BRANCHES))
def test_each_branch_of_an_alert_fires_on_its_own(case, testnet_spec, promtool, tmp_path):
    name, series, minutes, expr_labels, description = BRANCHES[case]
    expected = _firing(testnet_spec, name, expr_labels, description, tmp_path)
    quiet = [{"eval_time": f"{m}m", "alertname": name, "exp_alerts": []} for m in range(0, minutes)]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _series(series),
                "alert_rule_test": [*quiet, {"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": [expected]}],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_would_catch_a_wrong_expectation(testnet_spec, promtool, tmp_path):
    """The harness can fail: 3 consecutive failures are expected to fire, and promtool says they do not."""
    (tmp_path / "rules.yaml").write_text(render_rule_file(testnet_spec))
    tests = {
        "rule_files": ["rules.yaml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": f"allora_consecutive_failures{{{RT}}}", "values": "3x10"}],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "AlloraConsecutiveFailures", "exp_alerts": [{"exp_labels": {"severity": "warning"}}]}
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout + proc.stderr


def test_a_short_for_copy_comes_from_the_same_template(testnet_spec):
    normal = yaml.safe_load(render_rule_file(testnet_spec))["groups"][0]["rules"]
    short = yaml.safe_load(render_rule_file(testnet_spec, {"AlloraConsecutiveFailures": "5s"}))["groups"][0]["rules"]
    assert [r["for"] for r in short if r["alert"] == "AlloraConsecutiveFailures"] == ["5s"]
    assert [dict(r, **{"for": "x"}) for r in normal] == [dict(r, **{"for": "x"}) for r in short]


def test_runbook_urls_point_at_the_runbook_anchors_under_the_repositorys_docs_url(make_spec):
    """The base is a repository setting (docs_url); each alert links to its anchor on the docs' runbooks page."""
    import yaml

    from allora_gitops.gitops.settings import RepositorySettings
    from allora_gitops.render import DeploymentSettings
    from tests.conftest import REPO_ROOT

    settings = RepositorySettings(repo_url="https://git.example.com/platform/deployments.git", docs_url="https://docs.example.com/allora/")
    defaults = DeploymentSettings(network="testnet").over(settings.deployment_defaults())
    spec = make_spec("testnet", secret_store="allora-vault", docs_url=defaults.docs_url)
    rules = yaml.safe_load(render_rule_file(spec))["groups"][0]["rules"]
    runbooks = (REPO_ROOT / "docs" / "how-to" / "runbooks.md").read_text()
    assert len(rules) == len(CASES)
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://docs.example.com/allora/how-to/runbooks/#runbook-{rule['alert'].lower()}"
        assert f'<a id="{url.split("#")[1]}"></a>' in runbooks, url


def test_without_a_docs_url_the_alerts_carry_no_runbook_url(make_spec):
    """Nothing is guessed: no documentation site named, no link (the old default pointed at a made-up GitHub URL)."""
    import yaml

    rules = yaml.safe_load(render_rule_file(make_spec("testnet", secret_store="allora-vault")))["groups"][0]["rules"]
    assert rules and all(set(rule["annotations"]) == {"summary", "description"} for rule in rules)


@pytest.mark.parametrize("value, message", [
    ("docs.example.com", "not an http(s) URL of a documentation site"),
    ("ftp://docs.example.com/x", "not an http(s) URL of a documentation site"),
    ("https://user:secret@docs.example.com/x", "must be a plain base URL: no credentials"),
    ("htps://user:secret@docs.example.com/x", "not an http(s) URL of a documentation site"),
    ("https://docs.example.com/x?token=abc", "must be a plain base URL: no credentials"),
])  # fmt: skip
def test_a_docs_url_that_is_no_plain_http_url_is_refused_naming_the_key(value, message):
    from allora_gitops.errors import UsageError
    from allora_gitops.gitops.settings import RepositorySettings, set_setting

    settings = RepositorySettings(repo_url="https://git.example.com/platform/deployments.git")
    with pytest.raises(UsageError) as caught:
        set_setting(settings, "docs_url", value)
    assert str(caught.value).startswith("docs_url: ") and message in str(caught.value)
    assert "secret" not in str(caught.value) and "abc" not in str(caught.value)
    assert set_setting(settings, "docs_url", "https://docs.example.com/x/").docs_url == "https://docs.example.com/x"
