"""End to end: the runtime (--dry-run, reporting on) → the real API server (uvicorn, loopback) → real PostgreSQL,
the pod's identity a projected ServiceAccount token signed by a key the test generates and verified against its JWKS."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from datetime import datetime

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.platform import start_platform, stop_platform
from tests.fixtures.runtime import EXIT_INVALID_PREDICTION, EXIT_OK, RunningBootstrap, bootstrap_env, free_port, make_bundle, run_bootstrap
from tests.test_podidentity import ISSUER, SA_A, create_two_deployments, jwks, projected_token
from tests.test_results import REFUSING, expected_prediction_latencies

NAME = "linear-forecaster"


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def platform(tmp_path, database_url, records, key):
    """The API with results reporting configured, and two live deployments: linear-forecaster and mean-reverter."""
    a, b = create_two_deployments(records)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_API_POD_JWKS": str(keys), "ALLORA_API_POD_ISSUER": ISSUER, "ALLORA_GITOPS_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    try:
        yield server, a, b
    finally:
        stop_platform(server)


def post(url: str, token: str, results: list[dict]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/results", json={"results": results}, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_twenty_dry_run_windows_reach_the_database_through_the_api_and_status_shows_them(platform, tmp_path, cli, database_url, key):
    server, a, b = platform
    token_file = tmp_path / "token"
    token = projected_token(key, "cluster-key")
    token_file.write_text(token)
    bundle = make_bundle(tmp_path / "bundle", REFUSING)
    env = bootstrap_env(ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file))
    run = run_bootstrap(bundle, "--dry-run", *[arg for n in range(1, 21) for arg in ("--nonce", str(n))], env=env)
    assert run.code == EXIT_INVALID_PREDICTION, run.out + run.err
    stopped = run.one("results_reporter_stopped")
    assert (stopped["sent"], stopped["dropped"], stopped["pending"]) == (20, 0, 0)
    assert token not in run.out + run.err + server.log.read_text()

    status = cli("gitops", "status", NAME, "--database-url", database_url, "--json")
    assert status.code == 0, status.err
    [row] = json.loads(status.out)
    results = row["results"]
    expected_latency = expected_prediction_latencies(run)
    [hour] = [w for w in results["windows"] if w["window"] == "1h"]
    assert hour == {
        "window": "1h", "kind": "prediction", "total": 20, "success": 16, "error": 4, "timeout": 0,
        "success_rate": 0.8, "latency_ms": expected_latency,
    }  # fmt: skip
    errors = {(e["reason"], e["error_type"]): e["count"] for e in results["errors"]}
    assert errors == {("exception", "ValueError"): 3, ("invalid_value", "NoneType"): 1}
    other = cli("gitops", "status", "mean-reverter", "--database-url", database_url, "--json")
    assert json.loads(other.out)[0]["results"]["windows"] == []  # nothing reached the other deployment

    # The same batch again (a lost answer): stored once.
    again = post(server.url, token, [e for e in run.events if e["event"] == "prediction"][:3])
    assert again.status_code == 200 and again.json() == {
        "deployment_id": str(a.id), "received": 3, "stored": 0, "already_recorded": 3, "unattributed": 0,
        "refused": [], "adjusted": [],
    }  # fmt: skip


def test_tokens_that_do_not_verify_are_401_and_other_service_accounts_403(platform, key):
    server, _, _ = platform
    result = {"ts": "2026-01-31T12:00:00.000Z", "event": "prediction", "nonce": 1, "value": 0.5}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "expired": (projected_token(key, "cluster-key", issued=time.time() - 7200), 401, "the token has expired"),
        "audience": (projected_token(key, "cluster-key", aud=("https://kubernetes.default.svc",)), 401, "the token's audience is not allora-platform"),
        "other key": (projected_token(stranger, "cluster-key"), 401, "the token's signature does not verify"),
        "a user token": ("agp_0123abcd_" + "x" * 43, 401, "the token is a platform API token (agp_…), not a pod's ServiceAccount "
                         "token: results are reported with the pod's projected token (locally: allora-gitops local-issuer token)"),
        "no deployment": (projected_token(key, "cluster-key", sa="default"), 403, "ServiceAccount allora-models/default belongs to no live deployment"),
        "other namespace": (
            projected_token(key, "cluster-key", namespace="team-b", sa=SA_A), 403,
            "ServiceAccount team-b/linear-forecaster-testnet is not in the deployments' namespace",
        ),
    }  # fmt: skip
    for what, (token, status, detail) in cases.items():
        answer = post(server.url, token, [result])
        assert (answer.status_code, answer.json()["detail"]) == (status, detail), what
        assert token not in answer.text
    missing = httpx.post(f"{server.url}/api/v1/results", json={"results": [result]}, timeout=10)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="allora-platform"'


def test_a_malformed_result_is_refused_alone_and_the_rest_of_its_batch_is_stored(platform, key, records):
    server, a, _ = platform
    good = {"ts": "2026-01-31T12:00:00.000Z", "event": "prediction", "nonce": 1, "value": 0.5}
    answer = post(server.url, projected_token(key, "cluster-key"), [good, {**good, "nonce": -1}])
    assert answer.status_code == 200
    assert answer.json()["stored"] == 1
    assert answer.json()["refused"] == [
        {"index": 1, "nonce": -1, "message": "nonce must be a whole number from 0 to 9223372036854775807, not -1"},
    ]
    # NaN is not JSON but Python reads it: never a successful prediction
    answer = httpx.post(
        f"{server.url}/api/v1/results", content='{"results": [{"event": "prediction", "nonce": 2, "value": NaN}]}',
        headers={"Authorization": f"Bearer {projected_token(key, 'cluster-key')}", "Content-Type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200
    assert answer.json()["refused"] == [{"index": 0, "nonce": 2, "message": "value must be finite, not NaN"}]
    assert records.connection.execute("SELECT nonce FROM submission_results").fetchall() == [(1,)]
    # a body that is not a batch is refused whole: a 4xx problem, never a 5xx (the reporter drops it, never retries)
    for body, status in (([good], 422), ({"results": "x"}, 422), ({"results": [good] * 5001}, 413)):
        whole = httpx.post(f"{server.url}/api/v1/results", json=body, headers={"Authorization": f"Bearer {projected_token(key, 'cluster-key')}"}, timeout=30)
        assert (whole.status_code, whole.headers["content-type"]) == (status, "application/problem+json"), whole.text


def test_without_the_clusters_issuer_results_are_503_and_half_a_configuration_does_not_start(tmp_path, database_url, key, monkeypatch):
    from allora_gitops.api.settings import load_api_settings
    from allora_gitops.errors import UsageError

    server = start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    try:
        answer = post(server.url, projected_token(key, "cluster-key"), [])
    finally:
        stop_platform(server)
    assert answer.status_code == 503
    assert answer.json()["detail"] == "results reporting is not configured on this server: set ALLORA_API_POD_JWKS and ALLORA_API_POD_ISSUER"
    monkeypatch.setenv("ALLORA_API_POD_JWKS", str(tmp_path / "jwks.json"))
    with pytest.raises(UsageError, match=r"^\$ALLORA_API_POD_JWKS and \$ALLORA_API_POD_ISSUER go together"):
        load_api_settings(repo="x")


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _stored_nonces(database_url: str, deployment_id) -> list[int]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT nonce FROM submission_results WHERE deployment_id = %s AND kind = 'prediction' ORDER BY nonce",
                            (deployment_id,)).fetchall()  # fmt: skip
    return [r[0] for r in rows]


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_30_second_api_outage_keeps_the_pace_and_the_backlog_arrives_once_or_counted_as_dropped(tmp_path, database_url, records, key):
    """The real server (uvicorn) stopped for 30 s and started again on its port while two runtimes predict every
    second: A (the default queue) delivers its whole backlog, each result once; B (a queue of 10) drops the oldest,
    and its drop counter says how many. Neither slows down. The reporter's backoff (1 s doubling, jittered) means
    the backlog may arrive up to ~30 s after the restart: waited for, never slept."""
    a, b = create_two_deployments(records)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    serve = dict(
        database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_API_POD_JWKS": str(keys), "ALLORA_API_POD_ISSUER": ISSUER, "ALLORA_GITOPS_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    server = start_platform(tmp_path, **serve)
    port = int(server.url.rsplit(":", 1)[1])
    interval, outage, bound = 1.0, 30.0, 10
    bundle = make_bundle(tmp_path / "bundle", "def run(nonce):\n    return nonce / 1000\n")
    runtimes = {}
    try:
        for name, sa, extra in (("a", SA_A, {}), ("b", "mean-reverter-testnet", {"ALLORA_RESULTS_QUEUE_LIMIT": str(bound)})):
            token_file = tmp_path / f"token-{name}"
            token_file.write_text(projected_token(key, "cluster-key", sa=sa))
            metrics_port = free_port()
            env = bootstrap_env(
                ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file),
                ALLORA_METRICS_PORT=str(metrics_port), ALLORA_METRICS_ADDRESS="127.0.0.1", **extra,
            )  # fmt: skip
            running = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", str(interval), env=env)
            runtimes[name] = (running, metrics_port)
        for deployment in (a, b):  # reporting works before the outage
            _wait_until(lambda: len(_stored_nonces(database_url, deployment.id)) >= 3, 60, "the first results stored")

        stop_platform(server)
        down_at = time.time()
        time.sleep(outage)  # the outage itself: the API is gone for 30 s
        server = start_platform(tmp_path, **serve, port=port)
        up_at = time.time()
        for running, _ in runtimes.values():
            running.wait_for(lambda ev: any(e["event"] == "results_send_recovered" for e in ev), timeout=120)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{runtimes['b'][1]}/metrics", timeout=5).read().decode()
        stopped = {}
        for name, (running, _) in runtimes.items():
            code, _ = running.stop(signal.SIGTERM, timeout=30)  # the reporter sends what is left, within 3 s
            assert code == EXIT_OK, "".join(running.lines)
            [stopped[name]] = [e for e in running.events if e["event"] == "results_reporter_stopped"]
    finally:
        for running, _ in runtimes.values():
            running.kill()
        stop_platform(server)

    for name, (running, _) in runtimes.items():
        predictions = [e for e in running.events if e["event"] == "prediction"]
        stamps = [_seconds(e["ts"]) for e in predictions]
        gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        assert max(gaps) < interval + 0.5, (name, max(gaps))  # no window waited on the reporter
        during = [s for s in stamps if down_at <= s <= up_at]
        assert len(during) >= (up_at - down_at) / (interval + 0.1) - 1, (name, len(during), up_at - down_at)
        assert any(e["event"] == "results_send_failed" for e in running.events)

    predicted_a = [e["nonce"] for e in runtimes["a"][0].events if e["event"] == "prediction"]
    assert _stored_nonces(database_url, a.id) == sorted(predicted_a)  # every one, once (the list is not a set)
    assert (stopped["a"]["sent"], stopped["a"]["dropped"], stopped["a"]["pending"]) == (len(predicted_a), 0, 0)

    predicted_b = [e["nonce"] for e in runtimes["b"][0].events if e["event"] == "prediction"]
    stored_b = _stored_nonces(database_url, b.id)
    missing = sorted(set(predicted_b) - set(stored_b))
    assert len(missing) >= (outage / interval) - bound - 2, missing  # ~30 queued while down, room for 10
    assert set(stored_b) <= set(predicted_b) and len(stored_b) == len(set(stored_b))
    # the dropped are the oldest of the backlog: one run of nonces from the outage, and the 10 after them were kept
    assert missing == list(range(missing[0], missing[-1] + 1))
    assert set(range(missing[-1] + 1, missing[-1] + 1 + bound)) <= set(stored_b)
    dropped_metric = next(line for line in scraped.splitlines() if line.startswith('allora_results_dropped_total{reason="queue_full"}'))
    assert float(dropped_metric.rsplit(" ", 1)[1]) == len(missing) == stopped["b"]["dropped"]
    assert (stopped["b"]["sent"], stopped["b"]["pending"]) == (len(stored_b), 0)
    assert len(stored_b) + len(missing) == len(predicted_b)
