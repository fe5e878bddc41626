"""Model logs end to end: the runtime (--dry-run, shipping on) → the real API server (uvicorn, loopback) → real
PostgreSQL → ``allora-bundle logs`` and the API, with the pod's identity a projected ServiceAccount token signed by
a key the test generates (as tests/test_api_results.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from allora_gitops.api.auth import Accounts
from tests.conftest import cli_env
from tests.fixtures.platform import start_platform, stop_platform
from tests.fixtures.runtime import RunningBootstrap, bootstrap_env, make_bundle
from tests.test_podidentity import ISSUER, jwks, projected_token, create_two_deployments

# The wallet's mnemonic (the runtime knows it: ALLORA_MNEMONIC) and one it does not know (the database catches it).
MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
OTHER_MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
CHATTY = f'''\
import sys, traceback, warnings

def run(nonce):
    print(f"computing window {{nonce}}")
    print(f"to stderr {{nonce}}", file=sys.stderr)
    warnings.warn(f"feature drift at {{nonce}}")
    try:
        1 / 0
    except ZeroDivisionError:
        traceback.print_exc()
    print("wallet: {MNEMONIC}")
    print("pasted: {OTHER_MNEMONIC}")
    return nonce / 1000
'''


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def site_env() -> dict[str, str]:
    """More of the server's environment (a test parametrized with ``site_env`` sets its own)."""
    return {}


@pytest.fixture
def site(tmp_path, database_url, records, key, site_env):
    """The API with pod identity configured; alice owns linear-forecaster (a), bob owns mean-reverter (b)."""
    a, b = create_two_deployments(records)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(("cluster-key", key))))
    server = start_platform(
        tmp_path, database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_API_POD_JWKS": str(keys), "ALLORA_API_POD_ISSUER": ISSUER, "ALLORA_GITOPS_HOME": str(tmp_path / "state"),
             **site_env},
    )  # fmt: skip
    tokens = {user: server.token(user) for user in ("alice", "bob")}
    accounts = Accounts(records.connection)
    accounts.claim_name(accounts.authenticate(tokens["alice"]), a.name)
    accounts.claim_name(accounts.authenticate(tokens["bob"]), b.name)
    try:
        yield server, tokens, a, b
    finally:
        stop_platform(server)


def ship(url: str, token: str, lines: list) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/logs", json={"lines": lines}, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def read(url: str, token: str, **params) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/logs", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def now_ts(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stored_messages(database_url: str, deployment_id) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT message FROM model_logs WHERE deployment_id = %s ORDER BY ts, id", (deployment_id,))]


class Follower:
    """``allora-bundle logs NAME --follow`` in the background; every output line with the monotonic time it came."""

    def __init__(self, url: str, token: str, *args: str):
        env = cli_env({"ALLORA_PLATFORM_URL": url, "ALLORA_PLATFORM_TOKEN": token, "XDG_CONFIG_HOME": "/nonexistent"})
        self.proc = subprocess.Popen([sys.executable, "-m", "allora_gitops.cli.bundle", "logs", *args, "--follow"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, text: str) -> float | None:
        return next((at for at, line in list(self.lines) if text in line), None)

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def test_what_a_model_prints_reaches_logs_follow_within_2_s_and_no_mnemonic_anywhere(site, tmp_path, key, database_url):
    server, tokens, a, b = site
    token_file = tmp_path / "pod-token"
    token_file.write_text(projected_token(key, "cluster-key"))
    bundle = make_bundle(tmp_path / "bundle", CHATTY, name="linear-forecaster")
    env = bootstrap_env(ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file), ALLORA_MNEMONIC=MNEMONIC)
    follower = Follower(server.url, tokens["alice"], "linear-forecaster")
    time.sleep(1.5)  # the follower has read the (empty) log once: what follows arrives while it polls
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "1", "--count", "6", "--start-nonce", "1", env=env)
    try:
        running.wait_for(lambda events: any(e.get("message") == "computing window 3" for e in events), timeout=60)
        printed_at = time.monotonic()  # the line is on the pod log now (within the time the reader took)
        deadline = printed_at + 5
        while follower.first("computing window 3") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived = follower.first("computing window 3")
        assert arrived is not None, follower.lines
        assert arrived - printed_at < 2.0, f"{arrived - printed_at:.2f} s"
        running.wait_for(lambda events: any(e["event"] == "stopped" for e in events), timeout=60)
    finally:
        running.kill()
        err = follower.stop()
    shown = "\n".join(line for _, line in follower.lines)
    assert "to stderr 3" in shown and "UserWarning: feature drift at 1" in shown  # stderr and the warning, as warnings
    assert "ZeroDivisionError: division by zero" in shown and "Traceback (most recent call last):" in shown
    assert any("WARNING" in line and "to stderr 2" in line for _, line in follower.lines)
    stored = stored_messages(database_url, a.id)
    answer = read(server.url, tokens["alice"], name="linear-forecaster", since="10m", limit=1000).text
    for where, text in (("store", "\n".join(stored)), ("API", answer), ("follow", shown), ("server log", server.log.read_text()),
                        ("follow stderr", err)):  # fmt: skip
        assert "abandon abandon" not in text and "legal winner" not in text, where
    assert any(m == "wallet: [redacted]" for m in stored)  # the runtime scrubbed its own wallet's mnemonic
    assert any(m == "[redacted: the text looked like a wallet secret]" for m in stored)  # the database caught the other
    assert stored_messages(database_url, b.id) == []  # nothing reached the other deployment


def test_levels_since_and_the_cursor(site, key):
    server, tokens, a, b = site
    pod = projected_token(key, "cluster-key")
    lines = [{"ts": now_ts(timedelta(minutes=-30)), "level": "info", "event": "print", "message": "old"},
             {"ts": now_ts(timedelta(seconds=-5)), "level": "warning", "event": "print", "message": "careful", "stream": "stderr"},
             {"ts": now_ts(), "level": "error", "event": "log", "message": "broke", "traceback": "Traceback …\nValueError: x"},
             {"ts": now_ts(), "level": "info", "event": "prediction", "nonce": 7, "value": "0.5", "latency_ms": 1.2},
             "not an object", {"ts": "yesterday", "message": "no time"}]  # fmt: skip
    answer = ship(server.url, pod, lines)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deployment_id": str(a.id), "received": 6, "stored": 4, "dropped": 0, "refused": [
        {"index": 4, "message": "a line must be a JSON object"},
        {"index": 5, "message": "ts must be an ISO 8601 time with a zone, not 'yesterday'"}]}  # fmt: skip
    alice = tokens["alice"]
    everything = read(server.url, alice, name="linear-forecaster").json()["lines"]
    assert [line["message"] for line in everything] == ["old", "careful", "broke\nTraceback …\nValueError: x", "nonce=7 value=0.5 latency_ms=1.2"]
    assert [line["message"] for line in read(server.url, alice, name="linear-forecaster", since="10m").json()["lines"]][0] == "careful"
    warnings = read(server.url, alice, name="linear-forecaster", level="warning").json()["lines"]
    assert [(line["level"], line["message"][:5]) for line in warnings] == [("warning", "caref"), ("error", "broke")]
    after = read(server.url, alice, name="linear-forecaster", after=everything[1]["cursor"]).json()["lines"]
    assert [line["message"][:5] for line in after] == ["broke", "nonce"]
    bad = read(server.url, alice, name="linear-forecaster", level="loud")
    assert (bad.status_code, bad.json()["detail"]) == (422, "level 'loud' is not one of debug, info, warning, error, critical")


def test_credentials_missing_wrong_expired_and_another_users_are_refused_on_both_endpoints(site, key, records):
    server, tokens, a, b = site
    line = [{"ts": now_ts(), "level": "info", "event": "print", "message": "hello"}]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    posts = {
        "missing": (None, 401),
        "wrong key": (projected_token(stranger, "cluster-key"), 401),
        "expired": (projected_token(key, "cluster-key", issued=time.time() - 7200), 401),
        "a user's API token": (tokens["alice"], 401),
        "no live deployment": (projected_token(key, "cluster-key", sa="default"), 403),
    }
    for what, (token, status) in posts.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.post(f"{server.url}/api/v1/logs", json={"lines": line}, headers=headers, timeout=10)
        assert answer.status_code == status, (what, answer.text)
    # b's pod writes b's log only: the token names the deployment, the body cannot
    other = ship(server.url, projected_token(key, "cluster-key", sa="mean-reverter-testnet"), [{**line[0], "message": "from b"}])
    assert other.json()["deployment_id"] == str(b.id)
    assert read(server.url, tokens["bob"], name="mean-reverter").json()["lines"][0]["message"] == "from b"
    assert read(server.url, tokens["alice"], name="linear-forecaster").json()["lines"] == []

    accounts = Accounts(records.connection)
    expired, _ = accounts.create_token("carol")
    records.connection.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE prefix = %s", (expired[:12],))
    revoked, _ = accounts.create_token("dave")
    accounts.revoke_token(revoked)
    gets = {"missing": None, "wrong": tokens["alice"][:-4] + "AAAA", "expired": expired, "revoked": revoked}
    for what, token in gets.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.get(f"{server.url}/api/v1/logs", params={"name": "mean-reverter"}, headers=headers, timeout=10)
        assert answer.status_code == 401 and "from b" not in answer.text, what
    for params in ({"name": "mean-reverter"}, {"deployment_id": str(b.id)}):  # bob's, asked by alice: as if it did not exist
        answer = read(server.url, tokens["alice"], **params)
        assert answer.status_code == 404 and "from b" not in answer.text, params
    assert read(server.url, server.token("root", admin=True), name="mean-reverter").json()["lines"][0]["message"] == "from b"
    # the page's tail endpoint: a session cookie or nothing
    signed_out = httpx.get(f"{server.url}/deployments/{b.id}/logs", params={"after": "0-0"}, timeout=10)
    assert signed_out.status_code == 401 and "from b" not in signed_out.text
    with httpx.Client(base_url=server.url, timeout=10) as alice:
        import re

        form = alice.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert alice.post("/login", data={"token": tokens["alice"], "csrf": csrf}).status_code == 303
        assert alice.get(f"/deployments/{a.id}/logs", params={"after": "0-0"}).json()["lines"] == []
        theirs = alice.get(f"/deployments/{b.id}/logs", params={"after": "0-0"})
        assert theirs.status_code == 404 and "from b" not in theirs.text
        assert "from b" not in alice.get(f"/deployments/{b.id}").text
        by_page_id = alice.get(f"/deployments/{b.deployment_id}/logs", params={"after": "0-0"})  # the id the page's URL holds
        assert by_page_id.status_code == 404 and "from b" not in by_page_id.text
    with httpx.Client(base_url=server.url, timeout=10) as bob:  # the owner reaches the tail by the page's own id, as by a release's
        form = bob.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert bob.post("/login", data={"token": tokens["bob"], "csrf": csrf}).status_code == 303
        for deployment_id in (b.deployment_id, b.id):
            mine = bob.get(f"/deployments/{deployment_id}/logs", params={"after": "0-0"})
            assert mine.status_code == 200 and [x["message"] for x in mine.json()["lines"]] == ["from b"], (deployment_id, mine.text)


@pytest.mark.parametrize("site_env", [{"ALLORA_API_LOGS_MAX_LINES": "50", "ALLORA_API_LOGS_RETENTION": "1d"}])
def test_retention_removes_lines_older_than_the_days_and_beyond_the_per_deployment_cap(site, key, database_url):
    server, tokens, a, b = site
    pod = projected_token(key, "cluster-key")
    old = [{"ts": now_ts(timedelta(days=-2, seconds=i)), "level": "info", "event": "print", "message": f"old {i}"} for i in range(5)]
    new = [{"ts": now_ts(timedelta(seconds=i - 60)), "level": "info", "event": "print", "message": f"new {i}"} for i in range(60)]
    assert ship(server.url, pod, old + new).json()["stored"] == 65
    assert stored_messages(database_url, a.id) == [f"new {i}" for i in range(10, 60)]  # 1 d retention, a cap of 50


def test_a_pod_over_its_rate_is_answered_with_what_was_dropped(site, key):
    server, tokens, a, b = site
    pod = projected_token(key, "cluster-key")
    line = {"ts": now_ts(), "level": "info", "event": "print", "message": "spam"}
    answers = [ship(server.url, pod, [line] * 700).json() for _ in range(4)]  # 2,800 lines at once: a burst holds 2,000
    stored = sum(x["stored"] for x in answers)
    assert stored < 2800 and sum(x["dropped"] for x in answers) == 2800 - stored
    assert answers[0] == {"deployment_id": str(a.id), "received": 700, "stored": 700, "dropped": 0, "refused": []}
    assert answers[3]["dropped"] > 0


def chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_a_deep_link_signs_in_onto_the_page_whose_live_tail_shows_the_models_lines_within_2_s(site, tmp_path, key, database_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    server, tokens, a, b = site
    token_file = tmp_path / "pod-token"
    token_file.write_text(projected_token(key, "cluster-key"))
    bundle = make_bundle(tmp_path / "bundle", CHATTY, name="linear-forecaster")
    env = bootstrap_env(ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file), ALLORA_MNEMONIC=MNEMONIC)
    browser = chromium(tmp_path)
    running = None
    try:
        page = f"{server.url}/deployments/{a.id}"
        browser.get(page)  # a followed link, signed out: the form, then back to this page
        assert browser.current_url.startswith(f"{server.url}/login?next=")
        browser.find_element(By.ID, "token").send_keys(tokens["alice"])
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        WebDriverWait(browser, 10).until(EC.url_to_be(page), message=browser.page_source)
        assert browser.find_element(By.ID, "logs-empty").is_displayed()
        WebDriverWait(browser, 5).until(EC.text_to_be_present_in_element((By.ID, "logs-status"), "Live"))
        running = RunningBootstrap(bundle, "--dry-run", "--interval", "1", "--count", "5", "--start-nonce", "1", env=env)
        running.wait_for(lambda events: any(e.get("message") == "computing window 2" for e in events), timeout=60)
        printed_at = time.monotonic()
        WebDriverWait(browser, 5, poll_frequency=0.05).until(
            EC.text_to_be_present_in_element((By.ID, "logs-lines"), "computing window 2"), message="not in the live tail")
        assert time.monotonic() - printed_at < 2.0
        running.wait_for(lambda events: any(e["event"] == "stopped" for e in events), timeout=60)
        WebDriverWait(browser, 5).until(EC.text_to_be_present_in_element((By.ID, "logs-lines"), "computing window 5"))
        tail = browser.find_element(By.ID, "logs-lines").text
        assert "ZeroDivisionError: division by zero" in tail and "UserWarning: feature drift at 1" in tail
        assert "abandon abandon" not in browser.page_source and "legal winner" not in browser.page_source
        assert not browser.find_element(By.ID, "logs-empty").is_displayed()
        warnings = browser.find_elements(By.CSS_SELECTOR, "#logs-lines li.log-warning")
        assert any("to stderr 1" in w.text for w in warnings)
        browser.execute_script("document.getElementById('logs').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "deployment-logs.png"))

        # the level filter, a plain GET form: only warnings and above, and still live
        from selenium.webdriver.support.select import Select

        Select(browser.find_element(By.ID, "logs-level")).select_by_value("warning")
        browser.find_element(By.CSS_SELECTOR, "form.logs-filter button").click()
        WebDriverWait(browser, 10).until(EC.url_contains("level=warning"))
        levels = {li.get_attribute("class") for li in browser.find_elements(By.CSS_SELECTOR, "#logs-lines li")}
        assert levels and levels <= {"log-warning", "log-error", "log-critical"}, levels
        browser.save_screenshot(str(tmp_path / "deployment-logs-warnings.png"))
        browser.get(f"{server.url}/deployments/{b.id}/logs?after=0-0")  # bob's: as if it did not exist
        assert "There is no such deployment among yours." in browser.page_source
    finally:
        if running is not None:
            running.kill()
        browser.quit()
    shots = [tmp_path / "deployment-logs.png", tmp_path / "deployment-logs-warnings.png"]
    assert all(p.stat().st_size > 10_000 for p in shots)
    keep_artifacts(*shots)


def keep_artifacts(*paths) -> None:
    """Copy screenshots to $ALLORA_TEST_ARTIFACTS when set (CI uploads that directory), to be looked at."""
    import os

    where = os.environ.get("ALLORA_TEST_ARTIFACTS")
    if where:
        os.makedirs(where, exist_ok=True)
        for path in paths:
            shutil.copy(path, where)


def test_a_model_printing_1000_lines_a_second_keeps_its_pace_and_the_excess_is_counted(site, tmp_path, key, database_url):
    import urllib.request

    from tests.fixtures.runtime import EXIT_OK, free_port

    server, tokens, a, b = site
    token_file = tmp_path / "pod-token"
    token_file.write_text(projected_token(key, "cluster-key"))
    bundle = make_bundle(tmp_path / "bundle", 'def run(nonce):\n    for i in range(1000):\n        print(f"line {i} of {nonce}")\n    return nonce / 1000\n')
    metrics_port = free_port()
    env = bootstrap_env(ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE=str(token_file),
                        ALLORA_METRICS_PORT=str(metrics_port), ALLORA_METRICS_ADDRESS="127.0.0.1")  # fmt: skip
    running = RunningBootstrap(bundle, "--dry-run", "--interval", "1", "--count", "8", "--start-nonce", "1", env=env)
    try:
        running.wait_for(lambda events: sum(e["event"] == "prediction" for e in events) >= 6, timeout=120)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        running.wait_for(lambda events: any(e["event"] == "stopped" for e in events), timeout=60)
        assert running.proc.wait(timeout=30) == EXIT_OK
    finally:
        running.kill()
    stamps = [datetime.fromisoformat(e["ts"]).timestamp() for e in running.events if e["event"] == "prediction"]
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    # the pace kept: no window waited on shipping (a loaded CI machine adds jitter; the cost itself is measured in
    # benchmarks/bench_log_shipping.py)
    assert len(stamps) == 8 and max(gaps) < 2.0 and sum(gaps) / len(gaps) < 1.25, gaps
    dropped = float(next(x for x in scraped.splitlines() if x.startswith('allora_log_lines_dropped_total{reason="rate_limited"}')).split()[-1])
    assert dropped > 1000  # by the 6th window ~6,000 lines were printed; the default rate ships 100 a second (a burst of 1,000)
    [stopped] = [e for e in running.events if e["event"] == "logs_shipper_stopped"]
    assert stopped["dropped"] >= dropped and stopped["pending"] == 0
    stored = stored_messages(database_url, a.id)
    assert len(stored) == len(set(stored)) == stopped["sent"]  # what was sent was stored, nothing twice
    assert sum(e["event"] == "print" for e in running.events) == 8000  # the pod log itself keeps every line


def test_allora_bundle_logs_prints_filters_and_refuses_what_is_not_yours(site, key, cli, monkeypatch, tmp_path):
    server, tokens, a, b = site
    at = now_ts()
    ship(server.url, projected_token(key, "cluster-key"), [
        {"ts": at, "level": "info", "event": "print", "message": "hello"},
        {"ts": at, "level": "warning", "event": "print", "message": "careful", "stream": "stderr"},
        {"ts": at, "level": "info", "event": "prediction", "nonce": 7, "value": "0.5"},
    ])  # fmt: skip
    monkeypatch.setenv("ALLORA_PLATFORM_URL", server.url)
    monkeypatch.setenv("ALLORA_PLATFORM_TOKEN", tokens["alice"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    shown = cli("bundle", "logs", "linear-forecaster")
    assert shown.code == 0, shown.err
    assert shown.out.splitlines() == [f"{at} INFO     hello", f"{at} WARNING  careful", f"{at} INFO     [prediction] nonce=7 value=0.5"]
    warnings = cli("bundle", "logs", "linear-forecaster", "--network", "testnet", "--level", "warning", "--json")
    assert [json.loads(x) for x in warnings.out.splitlines()] == [
        {"ts": at, "level": "warning", "event": "print", "pod": "linear-forecaster-testnet-5d9c7b8f4-x2x4k", "message": "careful"}]
    bundle = make_bundle(tmp_path / "bundle", "def run(nonce):\n    return 1.0\n", name="linear-forecaster")
    monkeypatch.chdir(bundle)
    assert cli("bundle", "logs", "--since", "10m").out.count("\n") == 3  # NAME from ./model.yaml
    theirs = cli("bundle", "logs", "mean-reverter")
    assert (theirs.code, theirs.err) == (1, "error: the platform refused the request (404): no deployment of mean-reverter among yours\n")
    bad = cli("bundle", "logs", "linear-forecaster", "--since", "yesterday")
    assert bad.code == 1 and "since 'yesterday' is neither a duration (10m, 2h, 7d) nor an ISO 8601 time" in bad.err
    monkeypatch.chdir(tmp_path)
    nameless = cli("bundle", "logs")
    assert nameless.code == 2 and "give NAME, or run this in the bundle's directory" in nameless.err


def test_a_platform_without_the_logs_endpoint_turns_shipping_off_once(tmp_path):
    """An older platform (404 on /api/v1/logs): one line saying so, not a refused batch per quarter second for ever."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from allora_runtime.log import JsonLog
    from allora_runtime.settings import results_settings
    from allora_runtime.shipper import start_shipper, stop_shipper

    posts = []

    class Old(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posts.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    out = tmp_path / "out.log"
    with open(out, "w") as stream:
        log = JsonLog(stream)
        settings = results_settings({"ALLORA_RESULTS_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v1/results",
                                     "ALLORA_RESULTS_TOKEN_FILE": str(token)})  # fmt: skip
        shipper = start_shipper(settings, log)
        for i in range(20):
            log.emit("print", message=f"line {i}")
            time.sleep(0.1)
        stop_shipper(shipper, log)
    server.shutdown()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert posts and set(posts) == {"/api/v1/logs"} and len(posts) <= 2
    assert sum(e["event"] == "logs_shipping_off" for e in events) == 1 and log.logs_tap is None
    assert sum(e["event"] == "logs_rejected" for e in events) <= 2


def test_allora_gitops_logs_reads_any_deployments_log_from_the_records(site, key, cli, database_url):
    server, tokens, a, b = site
    at = now_ts()
    ship(server.url, projected_token(key, "cluster-key", sa="mean-reverter-testnet"), [
        {"ts": at, "level": "error", "event": "log", "message": "boom", "traceback": "Traceback …\nValueError: x"},
        {"ts": at, "level": "info", "event": "print", "message": "fine"},
    ])  # fmt: skip
    shown = cli("gitops", "logs", "mean-reverter", "--level", "error", "--database-url", database_url)
    assert (shown.code, shown.out) == (0, f"{at} ERROR    boom\nTraceback …\nValueError: x\n")
    missing = cli("gitops", "logs", "no-such-model", "--database-url", database_url)
    assert (missing.code, missing.err) == (2, "error: no deployment of no-such-model\n")
