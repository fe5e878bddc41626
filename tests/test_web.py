"""The monitoring pages of ``allora-gitops serve``: sign-in with an API token, the session cookie, CSRF, the
deployments page and a deployment's page — over HTTP against the real server (uvicorn on loopback, real
PostgreSQL), and in the real headless Chromium."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from allora_gitops.api.auth import Accounts
from allora_gitops.db.results import ResultRow, record_results, result_timeline
from tests.fixtures.platform import start_owned_platform, stop_platform
from tests.test_podidentity import create_two_deployments

TX = "AB" * 32


@pytest.fixture
def site(tmp_path, database_url, records):
    """The server; alice owns linear-forecaster (16 successes, 4 refusals), bob owns mean-reverter."""
    a, b = create_two_deployments(records)
    now = datetime.now(timezone.utc)
    rows = [
        ResultRow(kind="submission", nonce=1000 + i, status="success", observed_at=now - timedelta(hours=20 - i, minutes=10),
                  value=f"{i}.5", tx_hash=TX, latency_ms=100.0 + i)
        if i % 5 else
        ResultRow(kind="submission", nonce=1000 + i, status="error", observed_at=now - timedelta(hours=20 - i, minutes=10),
                  reason="tx_failed", error_type="BroadcastError", error_message="insufficient fees", latency_ms=400.0)
        for i in range(1, 21)
    ]  # fmt: skip
    record_results(records.connection, a.id, rows)
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": a.name, "bob": b.name})
    try:
        yield server, tokens["alice"], a, b
    finally:
        stop_platform(server)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/login")
    assert form.status_code == 200
    return client.post("/login", data={"token": token, "csrf": csrf_of(form.text)})


def test_sign_in_sets_a_signed_http_only_strict_cookie_and_shows_only_the_callers_deployments(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/").headers["location"] == "/login"  # not signed in: the form
        signed = sign_in(client, alice)
        assert (signed.status_code, signed.headers["location"]) == (303, "/")
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("allora_session=agp_") and alice not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
        page = client.get("/")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert f'href="/deployments/{a.deployment_id}">linear-forecaster</a>' in page.text
        assert "mean-reverter" not in page.text  # bob's
        assert '<td class="num">80.0 %</td><td class="num">400 ms</td>' in page.text  # 16 of 20; p95 over the 4 slow refusals


def test_a_wrong_token_is_refused_and_sets_no_session(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        refused = sign_in(client, alice[:-4] + "AAAA")
        assert refused.status_code == 401
        assert "That token is not valid: it is unknown, revoked or expired." in refused.text
        assert "allora_session" not in refused.headers.get("set-cookie", "")
        assert client.get("/").status_code == 303


def test_a_login_without_the_forms_csrf_token_is_refused(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/login")
        forged = client.post("/login", data={"token": alice, "csrf": "forged"})
        assert forged.status_code == 403 and "Form expired" in forged.text
        assert "allora_session" not in forged.headers.get("set-cookie", "")
    # a cross-site form post: no csrf cookie at all
    assert httpx.post(f"{server.url}/login", data={"token": alice, "csrf": ""}, timeout=10).status_code == 403


def test_logout_needs_the_pages_csrf_token_and_then_ends_the_session(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, alice)
        page = client.get("/")
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
        assert client.get("/").status_code == 200  # still signed in
        out = client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert (out.status_code, out.headers["location"]) == (303, "/login")
        assert 'allora_session=""' in out.headers["set-cookie"]
        assert client.get("/").status_code == 303


def test_a_forged_or_revoked_session_cookie_is_no_session(site, records):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, alice)
        value = client.cookies["allora_session"]
        forged = value[:-1] + ("0" if value[-1] != "0" else "1")
        assert httpx.get(f"{server.url}/", cookies={"allora_session": forged}, timeout=10).status_code == 303
        Accounts(records.connection).revoke_token(alice)
        assert client.get("/").status_code == 303


def test_the_deployment_page_shows_rates_chart_submissions_refusals_and_the_logs_command(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, alice)
        page = client.get(f"/deployments/{a.id}")
        assert page.status_code == 200
        text = page.text
        assert "<title>linear-forecaster on testnet · allora-gitops</title>" in text
        assert "16 succeeded, 4 failed</title>" in text
        assert len(re.findall(r'class="bar-failed"', text)) >= 1
        assert text.count(f">{TX}</a>") == 16 and 'class="bad">error</td>' in text  # the 20 newest: 16 with a tx hash, 4 refusals
        assert "tx_failed (BroadcastError): insufficient fees" in text
        assert "</time><br><small>10 min ago</small></th>" in text  # the newest result, reported 10 min ago
        assert re.search(r"<th scope=\"row\">submission</th><td>error</td><td>tx_failed</td><td>BroadcastError</td>\s*<td class=\"num\">1</td><td class=\"num\">4</td><td class=\"num\">4</td>", text)  # 1h, 24h, 7d
        assert "kubectl logs deployment/linear-forecaster-testnet -c model -n allora-models --tail=200" in text
        assert "Metrics are not configured" in text
        # the deployment (its own id, or a release's): the live release, what waits, the timeline, results per version
        assert client.get(f"/deployments/{a.deployment_id}").text.count("16 succeeded, 4 failed</title>") == 1
        assert re.search(r'<tr><th scope="row">1\.2\.0</th><td class="num">20</td>\s*<td class="num">80\.0%</td><td class="num">400 ms</td></tr>', text)
        assert '<dd id="pending">publish 1.2.0 on <span class="mono">deploy/linear-forecaster/testnet/1.2.0</span></dd>' in text
        assert '<dd id="live-release">none: the base branch runs nothing of this deployment</dd>' in text  # never merged
        assert re.search(r"<td>publish</td><td>1\.2\.0</td><td>pending</td>", text)  # the timeline
        assert client.get(f"/deployments/{b.id}").status_code == 404  # bob's
        assert client.get(f"/deployments/{b.deployment_id}").status_code == 404
        assert client.get("/deployments/not-a-uuid").status_code == 404


def test_a_deployment_with_predictions_only_charts_its_predictions(site, records):
    # a --dry-run reporting results (the README's demo) has no submission: 24 empty hours would say nothing
    server, alice, a, b = site
    now = datetime.now(timezone.utc)
    records.connection.execute("DELETE FROM submission_results WHERE deployment_id = %s", (a.id,))
    record_results(records.connection, a.id, [
        ResultRow(kind="prediction", nonce=i, status="success", observed_at=now - timedelta(minutes=i), value="42.0", latency_ms=0.4)
        for i in range(1, 6)
    ])  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, alice)
        text = client.get(f"/deployments/{a.id}").text
    assert "Predictions per hour over the last 24 hours: 5 succeeded, 0 failed</title>" in text
    assert "Predictions per hour (no submission in 24 h: a dry run, or before the first window)" in text
    assert "p95 prediction latency per hour over the last 24 hours, up to 0.4 ms" in text


def test_result_timeline_counts_successes_and_failures_per_interval(records):
    a, _ = create_two_deployments(records)
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    record_results(records.connection, a.id, [
        ResultRow(kind="submission", nonce=1, status="success", observed_at=now - timedelta(minutes=90), value="1.5", tx_hash=TX, latency_ms=10.0),
        ResultRow(kind="submission", nonce=2, status="timeout", observed_at=now - timedelta(minutes=80), reason="timeout", error_message="no answer in 30 s"),
        ResultRow(kind="submission", nonce=3, status="success", observed_at=now, value="1.5", tx_hash=TX, latency_ms=30.0),
        ResultRow(kind="prediction", nonce=3, status="success", observed_at=now, value="1.5"),
        ResultRow(kind="submission", nonce=4, status="success", observed_at=now - timedelta(days=2), value="1.5", tx_hash=TX),
    ])  # fmt: skip
    timeline = result_timeline(records.connection, a.id, span=timedelta(hours=3), buckets=3, now=now)
    assert [(b.start.hour, b.success, b.failure, b.p95_latency_ms) for b in timeline] == [(9, 0, 0, None), (10, 1, 1, 10.0), (11, 1, 0, 30.0)]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_sign_in_see_the_table_open_a_deployment_and_its_chart(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    server, alice, a, b = site
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        browser.get(f"{server.url}/")
        assert browser.current_url == f"{server.url}/login"
        browser.find_element(By.ID, "token").send_keys(alice)
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        WebDriverWait(browser, 10).until(EC.url_to_be(f"{server.url}/"), message=browser.page_source)
        rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["linear-forecaster"]
        assert rows[0].find_elements(By.TAG_NAME, "td")[4].text == "80.0 %"
        browser.save_screenshot(str(tmp_path / "deployments.png"))
        rows[0].find_element(By.LINK_TEXT, "linear-forecaster").click()
        WebDriverWait(browser, 10).until(EC.url_to_be(f"{server.url}/deployments/{a.deployment_id}"))
        recent = browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")
        assert len(recent) == 20 and sum("tx_failed" in r.text for r in recent) == 4
        chart = browser.find_element(By.ID, "outcome-chart")
        assert chart.size["width"] == 720 and len(chart.find_elements(By.CSS_SELECTOR, "rect.bar-ok")) == 16
        assert len(browser.find_elements(By.CSS_SELECTOR, "#latency-chart circle.latency-point")) == 20
        browser.save_screenshot(str(tmp_path / "deployment.png"))
        browser.get(f"{server.url}/deployments/{b.id}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    finally:
        browser.quit()
    assert (tmp_path / "deployments.png").stat().st_size > 10_000 and (tmp_path / "deployment.png").stat().st_size > 10_000


def test_an_admin_sees_every_deployment_and_every_page(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, server.token("root", admin=True))
        page = client.get("/")
        assert "Signed in as <strong>root</strong> (admin)" in page.text
        assert f'href="/deployments/{a.deployment_id}">linear-forecaster</a>' in page.text and f'href="/deployments/{b.deployment_id}">mean-reverter</a>' in page.text
        assert client.get(f"/deployments/{b.id}").status_code == 200


def test_after_sign_out_the_old_cookie_is_refused_on_the_server(site):
    server, alice, a, b = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        sign_in(client, alice)
        old = client.cookies["allora_session"]
        page = client.get("/")
        assert page.status_code == 200
        assert client.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    # the cookie kept from before (copied, or a browser that ignored the deletion): no session any more
    for path in ("/", f"/deployments/{a.id}"):
        replay = httpx.get(f"{server.url}{path}", cookies={"allora_session": old}, timeout=10)
        back = "" if path == "/" else "?next=" + path.replace("/", "%2F")  # sign-in returns to the followed page
        assert (replay.status_code, replay.headers["location"]) == (303, "/login" + back)
    with httpx.Client(base_url=server.url, timeout=10) as again:  # signing in again is a new session
        sign_in(again, alice)
        assert again.cookies["allora_session"] != old and again.get("/").status_code == 200


def test_the_session_cookie_is_secure_through_a_trusted_proxy_or_when_forced(site, tmp_path, database_url):
    from tests.fixtures.platform import start_platform

    server, alice, a, b = site  # uvicorn believes 127.0.0.1 (its default --forwarded-allow-ips): the ingress here
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}

    def sign_in_behind_tls(client: httpx.Client) -> httpx.Response:
        """As a browser on the proxy's https:// URL: it sends the Secure login cookie back (httpx on http:// would not)."""
        form = client.get("/login")
        csrf_cookie = form.cookies["allora_login_csrf"]
        return client.post("/login", data={"token": alice, "csrf": csrf_of(form.text)}, headers={"Cookie": f"allora_login_csrf={csrf_cookie}"})

    with httpx.Client(base_url=server.url, timeout=10, headers=proxied) as client:
        signed = sign_in_behind_tls(client)
        assert signed.status_code == 303, signed.text
        assert "; secure" in signed.headers["set-cookie"].lower()
    with httpx.Client(base_url=server.url, timeout=10) as plain:  # plain HTTP, no proxy: a Secure cookie would be lost
        assert "secure" not in sign_in(plain, alice).headers["set-cookie"].lower()

    for d in ("untrusted", "forced"):
        (tmp_path / d).mkdir()
    untrusted = start_platform(
        tmp_path / "untrusted", database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state")}, extra_args=("--forwarded-allow-ips", "10.9.9.9"),
    )  # fmt: skip
    forced = start_platform(
        tmp_path / "forced", database_url=database_url, repo=tmp_path / "unused-repo", store_url=(tmp_path / "store").as_uri(),
        env={"ALLORA_GITOPS_HOME": str(tmp_path / "state"), "ALLORA_API_SECURE_COOKIES": "true"},
    )  # fmt: skip
    try:
        with httpx.Client(base_url=untrusted.url, timeout=10, headers=proxied) as client:  # a client posing as the proxy
            assert "secure" not in sign_in(client, alice).headers["set-cookie"].lower()
        with httpx.Client(base_url=forced.url, timeout=10) as client:
            assert "; secure" in sign_in_behind_tls(client).headers["set-cookie"].lower()
    finally:
        stop_platform(untrusted)
        stop_platform(forced)
