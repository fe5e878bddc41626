"""The deploy pages (api/console.py) over HTTP against the real server (uvicorn, PostgreSQL, a bare GitOps
remote, a file store): the upload and deploy forms run the API's pipeline and answer the API's problems for the
same input, every form refuses a missing or forged CSRF token, another user's bundle, deployment or release is a
404 on every page; and, marked slow, the whole flow in headless Chromium with a screenshot of each page."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.fixtures.bundles import make_bundle
from tests.fixtures.git import merge_into_main, remote_branches, remote_file
from tests.fixtures.platform import start_platform, stop_platform
from tests.test_api import NAME, WALLET, build
from tests.test_web import csrf_of

BAD_FEE_TIER = "CHEAP"


@pytest.fixture
def console(tmp_path, database_url, gitops_remote, gitops_home):
    """The server with a file store; alice (wallet alice-wallet) and bob (bob-wallet) hold tokens."""
    server = start_platform(tmp_path, database_url=database_url, repo=gitops_remote, store_url=(tmp_path / "store").as_uri(),
                            env={"ALLORA_GITOPS_HOME": str(gitops_home)})  # fmt: skip
    try:
        yield server, server.token("alice", wallets=(WALLET,)), server.token("bob", wallets=("bob-wallet",))
    finally:
        stop_platform(server)


def signed_in(server, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=120)
    form = client.get("/login")
    assert client.post("/login", data={"token": token, "csrf": csrf_of(form.text)}).status_code == 303
    return client


def page_csrf(client: httpx.Client, path: str = "/upload") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def broken_archive(tmp_path: Path) -> Path:
    """An archive whose model.yaml names an unknown fee tier, built past the client's checks (as curl would send it)."""
    from allora_gitops.bundle.archive import archive_excludes, write_tar_gz
    from allora_gitops.bundle.ignore import walk_bundle

    bundle = make_bundle(tmp_path / "broken", version="1.0.9")
    manifest = bundle / "model.yaml"
    manifest.write_text(re.sub(r'^  fee_tier: .*$', f'  fee_tier: "{BAD_FEE_TIER}"', manifest.read_text(), flags=re.M))
    out = tmp_path / "broken.tar.gz"
    with open(out, "wb") as fh:
        write_tar_gz(walk_bundle(bundle, archive_excludes(bundle, bundle / "dist")), fh, name=NAME, version="1.0.9", mtime=0)
    return out


def problem_lines(page: str) -> list[str]:
    block = re.search(r'<div class="error" role="alert" id="problems".*?</div>', page, re.S)
    assert block, page
    return [html.unescape(x) for x in re.findall(r"<li>(.*?)</li>", block.group(0), re.S)]


def api_lines(body: dict) -> list[str]:
    from allora_gitops.api.console import problem_line

    return [problem_line(p) for p in body.get("problems", [])]


def upload_page(client: httpx.Client, archive: Path, csrf: str | None) -> httpx.Response:
    data = {"csrf": csrf} if csrf is not None else {}
    with open(archive, "rb") as fh:
        return client.post("/upload", data=data, files={"bundle": (archive.name, fh, "application/gzip")})


def test_the_upload_page_stores_through_the_apis_pipeline_and_shows_its_problems_line_by_line(console, tmp_path):
    server, alice, _ = console
    web = signed_in(server, alice)
    archive = build(make_bundle(tmp_path))
    stored = upload_page(web, archive, page_csrf(web))
    assert (stored.status_code, stored.headers["location"]) == (303, f"/bundles/{NAME}/1.0.0/deploy?uploaded=1")
    api = httpx.get(f"{server.url}/api/bundles", headers=server.headers(alice)).json()
    assert [(b["name"], b["version"], b["published_by"]) for b in api] == [(NAME, "1.0.0", "alice")]
    again = upload_page(web, archive, page_csrf(web))
    assert again.headers["location"].endswith("?already-stored=1")
    assert "already stored" in web.get(again.headers["location"]).text

    broken = broken_archive(tmp_path)
    with open(broken, "rb") as fh:
        from_api = httpx.post(f"{server.url}/api/bundles", files={"bundle": (broken.name, fh)}, headers=server.headers(alice))
    assert from_api.status_code == 422
    shown = upload_page(web, broken, page_csrf(web))
    assert shown.status_code == 422
    lines = problem_lines(shown.text)
    assert lines == api_lines(from_api.json()) and lines
    assert any(re.match(r"^broken\.tar\.gz!model\.yaml:22:\d+: error: allora\.fee_tier: ", line) for line in lines), lines
    assert html.escape(from_api.json()["detail"], quote=False) in shown.text
    assert len(httpx.get(f"{server.url}/api/bundles", headers=server.headers(alice)).json()) == 1  # nothing stored


def test_every_form_refuses_a_missing_or_forged_csrf_token(console, tmp_path):
    server, alice, _ = console
    web = signed_in(server, alice)
    archive = build(make_bundle(tmp_path))
    forged = page_csrf(web)[:-4] + "0000"
    for csrf in (None, forged, ""):
        refused = upload_page(web, archive, csrf)
        assert refused.status_code == 403 and "Form expired" in refused.text
    assert httpx.get(f"{server.url}/api/bundles", headers=server.headers(alice)).json() == []  # nothing stored
    assert upload_page(web, archive, page_csrf(web)).status_code == 303
    deploy = f"/bundles/{NAME}/1.0.0/deploy"
    for csrf in (None, forged):
        data = {"wallet": WALLET, "network": "testnet", "step": "deploy", **({"csrf": csrf} if csrf else {})}
        assert web.post(deploy, data=data).status_code == 403
    assert sorted(remote_branches(server.repo)) == ["main"]
    made = web.post(deploy, data={"wallet": WALLET, "network": "testnet", "step": "deploy", "csrf": page_csrf(web, deploy)})
    assert made.status_code == 201, made.text
    deployment_id = re.search(r'href="/deployments/([0-9a-f-]{36})"', made.text).group(1)
    for action in ("promote", "rollback", "retire"):
        for csrf in (None, forged):
            data = {"step": "confirm", "network": "mainnet", "wallet": WALLET, "version": "1.0.0", **({"csrf": csrf} if csrf else {})}
            assert web.post(f"/deployments/{deployment_id}/{action}", data=data).status_code == 403, action
    assert sorted(remote_branches(server.repo)) == [f"deploy/{NAME}/testnet/1.0.0", "main"]
    # another session's token is forged too: bob's form token does not work in alice's session
    bob_csrf = page_csrf(signed_in(server, console[2]))
    assert web.post(deploy, data={"wallet": WALLET, "step": "preview", "csrf": bob_csrf}).status_code == 403


def diff_of(page: str) -> str:
    """The preview's rendered difference as text."""
    return html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<pre id="diff".*?</pre>', page, re.S).group(0)))


def detail_of(page: str) -> str:
    return html.unescape(re.search(r'id="problems"[^>]*>\s*<p><strong>(.*?)</strong>', page, re.S).group(1))


def test_the_deploy_form_answers_the_apis_problems_for_the_same_bad_input(console, tmp_path):
    server, alice, _ = console
    web = signed_in(server, alice)
    assert upload_page(web, build(make_bundle(tmp_path)), page_csrf(web)).status_code == 303
    deploy = f"/bundles/{NAME}/1.0.0/deploy"
    form = web.get(deploy).text
    assert 'value="69"' in form and f'<option value="{WALLET}" selected>' in form  # prefilled from model.yaml; the only wallet chosen
    bad = [
        ({"topic_id": "0", "cpu": "lots", "polling_interval": "x"}, {"topic_id": 0, "resources": {"cpu": "lots"}, "polling_interval": "x"}),
        ({"wallet": "bob-wallet"}, {"wallet": "bob-wallet"}),  # not assigned to alice: 403
        ({"network": "mainnet", "wallet": ""}, {"network": "mainnet", "wallet": None}),  # mainnet needs its wallet named: 422
        ({"fee_tier": "CHEAP"}, {"fee_tier": "CHEAP"}),
    ]
    for fields, body in bad:
        from_api = httpx.post(f"{server.url}/api/deployments", headers=server.headers(alice),
                              json={"bundle": {"name": NAME, "version": "1.0.0"}, "network": "testnet", "wallet": WALLET, **body})  # fmt: skip
        assert from_api.status_code in (403, 422), from_api.text
        for step in ("preview", "deploy"):
            data = {"csrf": csrf_of(form), "network": "testnet", "wallet": WALLET, "step": step, **fields}
            shown = web.post(deploy, data=data)
            assert shown.status_code == from_api.status_code, (fields, shown.text)
            assert detail_of(shown.text) == from_api.json()["detail"]
            if from_api.json().get("problems"):
                assert problem_lines(shown.text) == api_lines(from_api.json())
            for name, value in fields.items():  # the form keeps what was typed
                if name in ("topic_id", "cpu", "polling_interval"):  # typed (the others are choices among what may be chosen)
                    assert f'value="{value}"' in shown.text, name
    assert sorted(remote_branches(server.repo)) == ["main"]


def test_deploy_shows_the_rendered_change_before_committing_then_the_review_branch(console, tmp_path):
    server, alice, _ = console
    web = signed_in(server, alice)
    assert upload_page(web, build(make_bundle(tmp_path)), page_csrf(web)).status_code == 303
    deploy = f"/bundles/{NAME}/1.0.0/deploy"
    csrf = page_csrf(web, deploy)
    fields = {"csrf": csrf, "network": "testnet", "wallet": WALLET, "topic_id": "77", "fee_tier": "ECO", "polling_interval": "60",
              "cpu": "300m", "memory": "384Mi"}  # fmt: skip
    preview = web.post(deploy, data={**fields, "step": "preview"})
    assert preview.status_code == 200, preview.text
    assert sorted(remote_branches(server.repo)) == ["main"]  # a preview writes nothing
    diff = diff_of(preview.text)
    assert f"+++ b/deployments/{NAME}/overlays/testnet/kustomization.yaml" in diff
    added = "\n".join(line for line in diff.splitlines() if line.startswith("+"))
    assert re.search(r"\b77\b", added) and "300m" in added and "384Mi" in added and WALLET in added and "ECO" in added
    for name, value in fields.items():  # the confirmation carries exactly what was previewed
        assert f'name="{name}" value="{value}"' in preview.text
    assert '<button type="submit" name="step" value="deploy"' in preview.text
    edit = web.post(deploy, data={**fields, "step": "edit"})
    assert 'id="cpu" name="cpu" value="300m"' in edit.text

    made = web.post(deploy, data={**fields, "step": "deploy"})
    assert made.status_code == 201, made.text
    branch = f"deploy/{NAME}/testnet/1.0.0"
    assert re.search(rf'id="review-branch">{re.escape(branch)}<', made.text)
    assert branch in remote_branches(server.repo)
    committed = "".join(remote_file(server.repo, branch, line[len("+++ b/"):]) or "" for line in diff.splitlines() if line.startswith("+++ b/"))
    assert "300m" in committed and "384Mi" in committed  # what the preview showed is what the branch holds
    # the API sees the release the page made, by alice
    deployment_id = re.search(r'href="/deployments/([0-9a-f-]{36})"', made.text).group(1)
    got = httpx.get(f"{server.url}/api/deployments/{deployment_id}", headers=server.headers(alice)).json()
    assert (got["branch"], got["topic_id"], got["fee_tier"], got["wallet"]) == (branch, 77, "ECO", WALLET)
    again = web.post(deploy, data={**fields, "step": "deploy"})  # the open review holds it: nothing to do, said
    assert again.status_code == 200 and "already holds this change" in html.unescape(again.text)
    assert "What changes once merged" not in again.text  # a double submit changes nothing, and the page does not list a change


def deployed(server, web: httpx.Client, tmp_path: Path, version: str, *, merge: bool = True) -> str:
    """Upload and deploy ``version`` from the pages (merged into main unless told): the deployment's id."""
    archive = build(make_bundle(tmp_path, version=version, weight=version))
    assert upload_page(web, archive, page_csrf(web)).status_code == 303
    deploy = f"/bundles/{NAME}/{version}/deploy"
    made = web.post(deploy, data={"csrf": page_csrf(web, deploy), "network": "testnet", "wallet": WALLET, "step": "deploy"})
    assert made.status_code == 201, made.text
    if merge:
        merge_into_main(server.repo, f"deploy/{NAME}/testnet/{version}")
    return re.search(r'href="/deployments/([0-9a-f-]{36})"', made.text).group(1)


def test_promote_rollback_and_retire_each_confirm_what_will_happen_then_do_it(console, tmp_path):
    server, alice, _ = console
    web = signed_in(server, alice)
    deployed(server, web, tmp_path, "1.0.0")
    deployment_id = deployed(server, web, tmp_path, "1.1.0")
    page = web.get(f"/deployments/{deployment_id}").text
    for action in ("promote", "rollback", "retire"):
        assert f'href="/deployments/{deployment_id}/{action}"' in page
    csrf = csrf_of(page)

    form = web.get(f"/deployments/{deployment_id}/promote").text
    assert '<option value="mainnet"' in form and '<option value="testnet"' not in form
    confirm = web.post(f"/deployments/{deployment_id}/promote", data={"csrf": csrf, "network": "mainnet", "wallet": WALLET})
    assert confirm.status_code == 200 and "Promote linear-forecaster 1.1.0 from testnet to mainnet?" in html.unescape(confirm.text)
    assert f"+++ b/deployments/{NAME}/overlays/mainnet/kustomization.yaml" in diff_of(confirm.text)
    assert not any(b.startswith("promote/") for b in remote_branches(server.repo))  # the confirmation wrote nothing
    done = web.post(f"/deployments/{deployment_id}/promote", data={"csrf": csrf, "network": "mainnet", "wallet": WALLET, "step": "confirm"})
    assert done.status_code == 201, done.text
    assert f"promote/{NAME}/mainnet/1.1.0" in remote_branches(server.repo)
    assert f'id="review-branch">promote/{NAME}/mainnet/1.1.0<' in done.text

    form = web.get(f"/deployments/{deployment_id}/rollback").text
    assert '<option value="1.0.0"' in form and '<option value="1.1.0"' in form
    confirm = web.post(f"/deployments/{deployment_id}/rollback", data={"csrf": csrf, "version": "1.0.0"})
    assert "Roll back linear-forecaster on testnet to 1.0.0?" in html.unescape(confirm.text)
    assert re.search(r"^\+.*1\.0\.0", diff_of(confirm.text), re.M) and re.search(r"^-.*1\.1\.0", diff_of(confirm.text), re.M)
    unknown = web.post(f"/deployments/{deployment_id}/rollback", data={"csrf": csrf, "version": "0.9.0", "step": "confirm"})
    from_api = httpx.post(f"{server.url}/api/deployments/{deployment_id}/rollback", json={"version": "0.9.0"}, headers=server.headers(alice))
    assert unknown.status_code == from_api.status_code == 404 and detail_of(unknown.text) == from_api.json()["detail"]
    done = web.post(f"/deployments/{deployment_id}/rollback", data={"csrf": csrf, "version": "1.0.0", "step": "confirm"})
    assert done.status_code == 201 and f"rollback/{NAME}/testnet/1.0.0" in remote_branches(server.repo)

    confirm = web.get(f"/deployments/{deployment_id}/retire")
    assert confirm.status_code == 200 and "Retire linear-forecaster on testnet?" in html.unescape(confirm.text)
    assert f"--- a/deployments/{NAME}/base/kustomization.yaml" in diff_of(confirm.text)
    done = web.post(f"/deployments/{deployment_id}/retire", data={"csrf": csrf, "step": "confirm"})
    assert done.status_code == 201 and f"retire/{NAME}/testnet" in remote_branches(server.repo)


def test_another_users_bundle_deployment_or_release_is_a_404_on_every_new_page_and_form(console, tmp_path):
    server, alice, bob = console
    web = signed_in(server, alice)
    deployment_id = deployed(server, web, tmp_path, "1.0.0")
    release_id = httpx.get(f"{server.url}/api/deployments/{deployment_id}", headers=server.headers(alice)).json()["release_id"]
    other = signed_in(server, bob)
    csrf = page_csrf(other)
    for path in (f"/bundles/{NAME}/1.0.0/deploy", f"/bundles/{NAME}/9.9.9/deploy", "/bundles/no-such/1.0.0/deploy"):
        assert other.get(path).status_code == 404, path
        assert other.post(path, data={"csrf": csrf, "wallet": "bob-wallet", "step": "deploy"}).status_code == 404, path
    for ident in (deployment_id, release_id, "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        for action in ("promote", "rollback", "retire"):
            path = f"/deployments/{ident}/{action}"
            assert other.get(path).status_code == 404, path
            shown = other.post(path, data={"csrf": csrf, "step": "confirm", "network": "mainnet", "wallet": "bob-wallet", "version": "1.0.0"})
            assert shown.status_code == 404 and "no such deployment among yours" in shown.text, path
            api = httpx.post(f"{server.url}/api/deployments/{ident}/{action}", headers=server.headers(bob),
                             json={"promote": {"network": "mainnet"}, "rollback": {"version": "1.0.0"}, "retire": None}[action])  # fmt: skip
            assert api.status_code in (404, 422), api.text  # the API's answer for the same id (422: not a UUID)
    assert sorted(remote_branches(server.repo)) == [f"deploy/{NAME}/testnet/1.0.0", "main"]  # alice's; nothing for bob
    assert other.get("/upload").status_code == 200 and NAME not in other.get("/upload").text
    # an admin sees all
    admin = signed_in(server, server.token("root", admin=True))
    assert admin.get(f"/bundles/{NAME}/1.0.0/deploy").status_code == 200
    assert admin.get(f"/deployments/{deployment_id}/rollback").status_code == 200
    # signed out: every page sends to sign-in and back
    anonymous = httpx.Client(base_url=server.url)
    for path in ("/upload", f"/bundles/{NAME}/1.0.0/deploy", f"/deployments/{deployment_id}/promote"):
        got = anonymous.get(path)
        assert got.status_code == 303 and got.headers["location"].startswith("/login?next=%2F"), path


def test_the_change_page_links_the_review_for_an_http_remote():
    from allora_gitops.api.web import templates
    from allora_gitops.publish import PublishResult, compare_url

    result = PublishResult(action="publish", name=NAME, network="testnet", version="1.0.0", sha256="0" * 64,
                           repo="https://git.example/platform/deployments.git", branch=f"deploy/{NAME}/testnet/1.0.0", base_branch="main",
                           commit="a" * 40, committed=True, summary=["new deployment"], review=["then merge it"])  # fmt: skip
    link = compare_url(result.repo, result.base_branch, result.branch)
    page = templates.get_template("change.html").render(result=result, compare_url=link, web=None)
    assert f'id="compare-link" href="https://git.example/platform/deployments/compare/main...deploy/{NAME}/testnet/1.0.0"' in page
    assert f'id="review-branch">deploy/{NAME}/testnet/1.0.0<' in page


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_sign_in_from_a_deep_link_upload_deploy_with_a_preview_promote_and_roll_back(console, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    from tests.test_logs import chromium, keep_artifacts

    server, alice, _ = console
    shots: list[Path] = []
    browser = chromium(tmp_path)
    wait = WebDriverWait(browser, 120)

    def shot(name: str) -> None:
        shots.append(tmp_path / f"console-{len(shots) + 1:02d}-{name}.png")
        browser.save_screenshot(str(shots[-1]))

    def h1() -> str:
        return browser.find_element(By.TAG_NAME, "h1").text

    def upload(archive: Path) -> None:
        browser.get(f"{server.url}/upload")
        browser.find_element(By.ID, "bundle").send_keys(str(archive))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()

    def deploy_from_form() -> None:
        browser.find_element(By.CSS_SELECTOR, "#deploy-form button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.ID, "diff")))
        browser.find_element(By.CSS_SELECTOR, "#confirm-form button[value=deploy]").click()
        wait.until(EC.presence_of_element_located((By.ID, "review-branch")))

    try:
        deep = f"{server.url}/upload"
        browser.get(deep)  # a followed link, signed out: sign-in, then back on it
        assert browser.current_url == f"{server.url}/login?next=%2Fupload"
        shot("sign-in")
        browser.find_element(By.ID, "token").send_keys(alice, Keys.ENTER)
        wait.until(EC.url_to_be(deep), message=browser.page_source)
        assert h1() == "Upload a bundle"
        shot("upload")

        upload(build(make_bundle(tmp_path)))  # the example bundle
        wait.until(EC.url_contains(f"/bundles/{NAME}/1.0.0/deploy"))
        assert "Uploaded." in browser.find_element(By.CSS_SELECTOR, "p.notice").text
        assert browser.find_element(By.ID, "topic_id").get_attribute("value") == "69"  # from model.yaml
        assert Select(browser.find_element(By.ID, "wallet")).first_selected_option.text == WALLET
        shot("deploy-form")

        upload(broken_archive(tmp_path))
        wait.until(EC.presence_of_element_located((By.ID, "problems")))
        problems = browser.find_element(By.ID, "problems").text
        assert re.search(r"broken\.tar\.gz!model\.yaml:22:\d+: error: allora\.fee_tier", problems), problems
        shot("upload-problems")

        browser.get(f"{server.url}/bundles/{NAME}/1.0.0/deploy")
        browser.find_element(By.ID, "polling_interval").clear()
        browser.find_element(By.ID, "polling_interval").send_keys("60")
        browser.find_element(By.CSS_SELECTOR, "#deploy-form button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.ID, "diff")))
        assert h1() == f"Deploy {NAME} 1.0.0 on testnet?"
        assert f"+++ b/deployments/{NAME}/overlays/testnet/kustomization.yaml" in browser.find_element(By.ID, "diff").text
        assert sorted(remote_branches(server.repo)) == ["main"]
        shot("deploy-preview")
        confirm = browser.find_element(By.CSS_SELECTOR, "#confirm-form button[value=deploy]")
        confirm.send_keys(Keys.ENTER)  # keyboard-operable
        wait.until(EC.presence_of_element_located((By.ID, "review-branch")))
        assert browser.find_element(By.ID, "review-branch").text == f"deploy/{NAME}/testnet/1.0.0"
        assert f"deploy/{NAME}/testnet/1.0.0" in remote_branches(server.repo)
        shot("deployed")
        merge_into_main(server.repo, f"deploy/{NAME}/testnet/1.0.0")
        browser.find_element(By.LINK_TEXT, "The deployment's page").click()
        wait.until(EC.presence_of_element_located((By.ID, "change")))
        page = browser.current_url

        upload(build(make_bundle(tmp_path, version="1.1.0", weight="v2")))  # a second version, deployed and merged
        wait.until(EC.url_contains(f"/bundles/{NAME}/1.1.0/deploy"))
        deploy_from_form()
        merge_into_main(server.repo, f"deploy/{NAME}/testnet/1.1.0")

        browser.get(page)
        shot("deployment")
        browser.find_element(By.LINK_TEXT, "Promote…").click()
        Select(browser.find_element(By.ID, "network")).select_by_value("mainnet")
        browser.find_element(By.CSS_SELECTOR, "#action-form button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.ID, "diff")))
        assert h1() == f"Promote {NAME} 1.1.0 from testnet to mainnet?"
        shot("promote-confirm")
        browser.find_element(By.CSS_SELECTOR, "#confirm-form button[value=confirm]").click()
        wait.until(EC.presence_of_element_located((By.ID, "review-branch")))
        assert browser.find_element(By.ID, "review-branch").text == f"promote/{NAME}/mainnet/1.1.0"
        shot("promoted")

        browser.get(page)
        browser.find_element(By.LINK_TEXT, "Roll back…").click()
        Select(browser.find_element(By.ID, "version")).select_by_value("1.0.0")
        browser.find_element(By.CSS_SELECTOR, "#action-form button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.ID, "diff")))
        assert h1() == f"Roll back {NAME} on testnet to 1.0.0?"
        shot("rollback-confirm")
        browser.find_element(By.CSS_SELECTOR, "#confirm-form button[value=confirm]").click()
        wait.until(EC.presence_of_element_located((By.ID, "review-branch")))
        assert browser.find_element(By.ID, "review-branch").text == f"rollback/{NAME}/testnet/1.0.0"
        shot("rolled-back")
        assert f"rollback/{NAME}/testnet/1.0.0" in remote_branches(server.repo)
    finally:
        browser.quit()
        keep_artifacts(*[p for p in shots if p.exists()])
    assert len(shots) == 11 and all(p.stat().st_size > 10_000 for p in shots)


def test_the_deploy_form_maps_the_secrets_model_yaml_declares_with_the_apis_rules(console, tmp_path):
    from allora_gitops.api.auth import open_accounts

    server, alice, _ = console
    web = signed_in(server, alice)
    bundle = make_bundle(tmp_path)
    text = (bundle / "model.yaml").read_text()
    (bundle / "model.yaml").write_text(text.replace('  pip_requirements: "requirements.txt"\n',
                                                    '  pip_requirements: "requirements.txt"\n  secrets: [MARKET_API_KEY]\n'))
    assert upload_page(web, build(bundle), page_csrf(web)).status_code == 303
    deploy = f"/bundles/{NAME}/1.0.0/deploy"
    form = web.get(deploy).text
    assert '<label for="secret-MARKET_API_KEY">MARKET_API_KEY</label>' in form and 'name="secret.MARKET_API_KEY"' in form
    base = {"csrf": csrf_of(form), "network": "testnet", "wallet": WALLET, "step": "preview"}
    pasted = "sk_live_51HfQ2bCkT9xYz0pasted"
    for mapped in ("", "market-data/api-key", pasted):
        body = {"bundle": {"name": NAME, "version": "1.0.0"}, "network": "testnet", "wallet": WALLET, **({"secrets": {"MARKET_API_KEY": mapped}} if mapped else {})}
        from_api = httpx.post(f"{server.url}/api/deployments", json=body, headers=server.headers(alice))
        shown = web.post(deploy, data={**base, "secret.MARKET_API_KEY": mapped})
        assert shown.status_code == from_api.status_code and shown.status_code in (403, 422), shown.text
        assert detail_of(shown.text) == from_api.json()["detail"]
        assert pasted not in shown.text  # a value pasted where the reference belongs never comes back
    accounts, records = open_accounts(server.database_url)
    with records:
        accounts.assign_secret("alice", "market-data")
    preview = web.post(deploy, data={**base, "secret.MARKET_API_KEY": "market-data/api-key"})
    assert preview.status_code == 200, preview.text
    assert "market-data" in diff_of(preview.text) and 'name="secret.MARKET_API_KEY" value="market-data/api-key"' in preview.text
    made = web.post(deploy, data={**base, "secret.MARKET_API_KEY": "market-data/api-key", "step": "deploy"})
    assert made.status_code == 201, made.text


def test_a_key_or_mnemonic_pasted_into_any_deploy_or_promote_field_never_comes_back_in_the_page(console, tmp_path):
    """The refused form keeps what was typed, except a value shaped like a wallet key, a mnemonic or an API token
    (``redact.echoable``): in whichever field it was pasted, the page neither fills it back in nor quotes it."""
    from tests.test_console_admin import MNEMONIC, PRIVATE_KEY

    server, alice, _ = console
    web = signed_in(server, alice)
    deployment_id = deployed(server, web, tmp_path, "1.0.0")
    csrf = page_csrf(web)
    for value in (MNEMONIC, PRIVATE_KEY, alice):
        for field in ("topic_id", "polling_interval", "cpu", "cpu_limit", "memory", "wallet"):
            data = {"csrf": csrf, "network": "testnet", "wallet": WALLET, "step": "preview", field: value}
            shown = web.post(f"/bundles/{NAME}/1.0.0/deploy", data=data)
            assert shown.status_code in (403, 422) and 'role="alert"' in shown.text, (field, shown.text)
            assert value not in html.unescape(shown.text) and value.split()[0] not in shown.text, field
        for field in ("topic_id", "wallet"):
            data = {"csrf": csrf, "network": "mainnet", "wallet": WALLET, field: value}
            shown = web.post(f"/deployments/{deployment_id}/promote", data=data)
            assert shown.status_code in (403, 422) and value not in html.unescape(shown.text), (field, shown.text)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_the_upload_shows_its_progress_then_lands_on_the_deploy_form_or_the_problems(console, tmp_path):
    """Issue 24's "multipart with progress": with scripts on, the upload goes by XMLHttpRequest, whose upload
    progress events fill the page's <progress> bar (observed here on the page's own request), and the answer is
    the one a plain form post gives: the deploy form, or the problems on the upload page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    from tests.test_logs import chromium

    server, alice, _ = console
    browser = chromium(tmp_path)
    wait = WebDriverWait(browser, 120)
    watch = """window.seen = [];
      const open = XMLHttpRequest.prototype.open;
      XMLHttpRequest.prototype.open = function () {
        const bar = document.getElementById('upload-progress');  // read once the page's own listener has run
        this.upload.addEventListener('progress', () => setTimeout(() => window.seen.push(bar.hidden ? -1 : bar.value), 0));
        return open.apply(this, arguments);
      };"""
    try:
        browser.get(f"{server.url}/upload")
        browser.find_element(By.ID, "token").send_keys(alice, Keys.ENTER)
        wait.until(EC.presence_of_element_located((By.ID, "upload-form")))
        assert not browser.find_element(By.ID, "upload-progress").is_displayed()  # nothing to show before an upload
        browser.execute_script(watch)
        browser.find_element(By.ID, "bundle").send_keys(str(broken_archive(tmp_path)))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
        wait.until(EC.presence_of_element_located((By.ID, "problems")))
        seen = browser.execute_script("return window.seen")
        assert seen and seen[-1] == 100, seen  # the bar reached 100 % before the answer replaced the page
        assert browser.current_url == f"{server.url}/upload" and BAD_FEE_TIER in browser.find_element(By.ID, "problems").text
        browser.find_element(By.ID, "bundle").send_keys(str(build(make_bundle(tmp_path / "good"))))
        browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()  # the replaced page's form is live again
        wait.until(EC.url_contains(f"/bundles/{NAME}/1.0.0/deploy?uploaded=1"))
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Deploy {NAME} 1.0.0"
    finally:
        browser.quit()
