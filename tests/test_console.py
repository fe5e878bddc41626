"""The deploy pages (api/console.py) over HTTP against the real server (uvicorn, PostgreSQL, a bare GitOps
remote, a file store): the upload and deploy forms run the API's pipeline and answer the API's problems for the
same input, every form refuses a missing or forged CSRF token, another user's bundle, deployment or release is a
404 on every page; and, marked slow, the whole flow in headless Chromium with a screenshot of each page."""

from __future__ import annotations

import html
import os
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
