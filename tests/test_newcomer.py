"""What a newcomer tripped on (issue 24 item 3): sign-in returns to the followed page (and only to this site),
``/api/docs`` works without the internet, empty states and errors name the reader's own tool, and ``login`` to a
server that is down says which URL did not answer and why. Against the real server (uvicorn, real PostgreSQL)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from allora_gitops.api.auth import Accounts
from allora_gitops.api.web import safe_next
from tests.conftest import cli_env
from tests.fixtures.platform import free_port, start_owned_platform, stop_platform
from tests.test_podidentity import create_two_deployments


@pytest.fixture
def site(tmp_path, database_url, records):
    a, b = create_two_deployments(records)
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": a.name, "bob": b.name})
    try:
        yield server, tokens, a, b, records
    finally:
        stop_platform(server)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def next_of(html: str) -> str:
    return re.search(r'name="next" value="([^"]*)"', html).group(1)


def test_signing_in_from_a_followed_link_lands_on_that_page(site):
    server, tokens, a, b, _ = site
    target = f"/deployments/{a.id}?level=warning"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        bounced = client.get(target)
        assert (bounced.status_code, bounced.headers["location"]) == (303, f"/login?next={quote(target, safe='')}")
        form = client.get(bounced.headers["location"])
        assert next_of(form.text) == target.replace("?", "?")  # carried by the form, escaped by the template
        signed = client.post("/login", data={"token": tokens["alice"], "csrf": csrf_of(form.text), "next": target})
        assert (signed.status_code, signed.headers["location"]) == (303, target)
        assert client.get(target).status_code == 200
        # a wrong token keeps the page to return to
        client.cookies.clear()
        form = client.get(bounced.headers["location"])
        refused = client.post("/login", data={"token": "agp_00000000_" + "A" * 43, "csrf": csrf_of(form.text), "next": target})
        assert refused.status_code == 401 and next_of(refused.text) == target


@pytest.mark.parametrize("attempt", [
    "https://evil.example/", "//evil.example/x", "/\\evil.example", "/%2F%2Fevil.example", "/%5Cevil.example",
    "javascript:alert(1)", "/\tevil", "/%09/evil.example", "http:/evil.example", "", "/login?next=//evil.example",
])  # fmt: skip
def test_sign_in_never_returns_to_another_site(site, attempt):
    server, tokens, a, b, _ = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        form = client.get("/login", params={"next": attempt})
        assert next_of(form.text) == "/"
        signed = client.post("/login", data={"token": tokens["alice"], "csrf": csrf_of(form.text), "next": attempt})
        assert (signed.status_code, signed.headers["location"]) == (303, "/")


def test_safe_next_keeps_paths_of_this_site():
    assert safe_next("/deployments/1b4e28ba-2fa1-11d2-883f-0016d3cca427?level=error") == "/deployments/1b4e28ba-2fa1-11d2-883f-0016d3cca427?level=error"
    assert safe_next("/") == "/" and safe_next(None) == "/" and safe_next("/" + "a" * 2001) == "/"


def test_api_docs_are_served_from_the_app_not_a_cdn(site):
    server, *_ = site
    with httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/api/docs")
        assert page.status_code == 200 and "cdn.jsdelivr" not in page.text and "https://" not in page.text
        for asset, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css"), ("favicon.png", "image/png")):
            assert f"/api/docs/assets/{asset}" in page.text
            answer = client.get(f"/api/docs/assets/{asset}")
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind) and len(answer.content) > 500
        assert client.get("/api/docs/assets/redoc.standalone.js").status_code == 404  # only what the page uses
        assert client.get("/api/docs/assets/..%2F..%2F__init__.py").status_code == 404


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_without_the_internet_api_docs_show_every_route(site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    from tests.test_logs import chromium, keep_artifacts

    server, *_ = site
    browser = chromium(tmp_path)
    try:
        browser.get(f"{server.url}/api/docs")
        WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
        assert "allora-gitops platform API" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
        paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/api/v1/logs", "/api/deployments", "/api/bundles"} <= {p.replace("\u200b", "") for p in paths}
        browser.save_screenshot(str(tmp_path / "api-docs.png"))
    finally:
        browser.quit()
    assert (tmp_path / "api-docs.png").stat().st_size > 10_000
    keep_artifacts(tmp_path / "api-docs.png")


def test_empty_states_and_a_revoked_token_point_a_developer_to_allora_bundle(site):
    server, tokens, a, b, records = site
    carol = server.token("carol")  # a developer without deployments
    with httpx.Client(base_url=server.url, timeout=10) as client:
        form = client.get("/login")
        client.post("/login", data={"token": carol, "csrf": csrf_of(form.text)})
        page = client.get("/").text
        assert "allora-bundle push --deploy" in page and f"allora-bundle login --platform {server.url}" in page
        assert '<a href="/upload">' in page  # or from the browser
        assert "allora-gitops publish" not in page  # a platform command, not hers
    Accounts(records.connection).revoke_token(carol)
    refused = httpx.get(f"{server.url}/api/bundles", headers=server.headers(carol), timeout=10)
    assert refused.status_code == 401
    detail = refused.json()["detail"]
    assert "allora-bundle login --platform URL" in detail and "allora-gitops token create" not in detail


def test_login_to_a_server_that_is_down_names_the_url_and_why(tmp_path):
    port = free_port()  # nothing listens there
    env = cli_env({"XDG_CONFIG_HOME": str(tmp_path / "config")})
    run = subprocess.run([sys.executable, "-m", "allora_gitops.cli.bundle", "login", "--platform", f"http://127.0.0.1:{port}"],
                         input="agp_00000000_" + "A" * 43 + "\n", env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == (
        f"error: cannot reach the platform at http://127.0.0.1:{port}/api/bundles: connection refused: nothing listens there"
        " (is the server running, and is the port right?)\n"
    )
    assert not (tmp_path / "config" / "allora-gitops" / "platform.json").exists()
    unknown = subprocess.run([sys.executable, "-m", "allora_gitops.cli.bundle", "login", "--platform", "https://no-such-host.invalid"],
                             input="x\n", env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unknown.stderr == "error: cannot reach the platform at https://no-such-host.invalid/api/bundles: the host name does not resolve (check the URL)\n"
