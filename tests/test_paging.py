"""Views that page (issue 25 item 2): deployments by (name, network) a page at a time through an opaque cursor,
filters and the caller's visibility in SQL — the records API against real PostgreSQL, and the deployments page
and GET /api/deployments over HTTP against the real server."""

from __future__ import annotations

import re

import httpx
import pytest

from allora_gitops.api.auth import Accounts
from allora_gitops.db.paging import DeploymentFilter, decode_cursor, encode_cursor
from allora_gitops.errors import UsageError
from benchmarks.bench_results import new_deployment
from tests.fixtures.platform import start_owned_platform, stop_platform
from tests.test_web import sign_in


def names(page) -> list[str]:
    return [d.name for d in page]


def every_page(records, f: DeploymentFilter, limit: int, between=lambda _i: None) -> list[str]:
    seen, after, i = [], None, 0
    while True:
        page, after = records.page_deployments(f, after=after, limit=limit)
        assert len(page) <= limit
        seen += names(page)
        if after is None:
            return seen
        between(i)
        i += 1


def test_paging_is_complete_and_stable_while_deployments_are_added_between_pages(records):
    for i in range(0, 40, 2):  # model-0000, model-0002, …, model-0038
        new_deployment(records, i)
    added = []

    def add(i: int) -> None:  # one before everything shown so far, one in the gap ahead of the cursor
        for n in (1 + 2 * i, 39 - 2 * i):
            if n not in added and 0 < n < 40:
                new_deployment(records, n)
                added.append(n)

    seen = every_page(records, DeploymentFilter(), 7, between=add)
    assert len(seen) == len(set(seen)), "a deployment appeared twice"
    originals = {f"model-{i:04d}" for i in range(0, 40, 2)}
    assert originals <= set(seen), "a deployment present throughout was skipped"
    assert seen == sorted(seen)
    # rows added ahead of the cursor are on the later pages; rows added behind it wait for the next reading
    assert set(seen) - originals <= {f"model-{n:04d}" for n in added}
    assert every_page(records, DeploymentFilter(), 7) == sorted(originals | {f"model-{n:04d}" for n in added})


def test_filters_by_owner_network_state_and_name_prefix_in_sql(records):
    ids = {i: new_deployment(records, i) for i in range(6)}
    accounts = Accounts(records.connection)
    alice = accounts.authenticate(accounts.create_token("alice")[0])
    for i in (0, 1, 2):
        accounts.claim_name(alice, f"model-{i:04d}")
    records.set_owner("model-0000", "alice")
    records.set_owner("model-0001", "alice")
    records.set_release_status(ids[1], "committed", commit_sha="a" * 40)  # waits for review
    records.set_release_status(ids[2], "committed", commit_sha="b" * 40)
    records.set_release_status(ids[2], "merged")  # runs
    records.set_release_status(ids[3], "committed", commit_sha="c" * 40)
    records.set_release_status(ids[3], "merged")
    records.set_release_status(ids[3], "retired")  # neither

    def shown(**kw) -> list[str]:
        return names(records.page_deployments(DeploymentFilter(**kw), limit=50)[0])

    assert shown() == ["model-0000", "model-0001", "model-0002", "model-0004", "model-0005"]  # retired left out
    assert shown(owner="alice") == ["model-0000", "model-0001"]
    assert shown(state="live") == ["model-0002"]
    assert shown(state="waiting") == ["model-0000", "model-0001", "model-0004", "model-0005"]  # pending counts as waiting
    assert shown(state="retired") == ["model-0003"]
    assert shown(include_retired=True) == [f"model-{i:04d}" for i in range(6)]
    assert shown(network="mainnet") == []
    assert shown(network="testnet", name_prefix="model-000") == shown()
    assert shown(name_prefix="model-0001") == ["model-0001"]
    assert shown(name_prefix="%") == [] and shown(name_prefix="_") == []  # a prefix, never a LIKE pattern
    # visibility: alice's names only (bundle_owners, as Accounts.may_see); a user who owns nothing sees nothing
    assert shown(visible_to=alice.user_id) == ["model-0000", "model-0001", "model-0002"]
    mallory = accounts.authenticate(accounts.create_token("mallory")[0])
    assert shown(visible_to=mallory.user_id) == []
    assert shown(visible_to=mallory.user_id, owner="alice") == []
    # the state filter agrees with what the entries say (inventory.entry_of, from live_release_in)
    from allora_gitops.gitops.inventory import entry_of

    for d in records.page_deployments(DeploymentFilter(include_retired=True), limit=50)[0]:
        e = entry_of(d, records.list_releases(d.id))
        state = "live" if e["live"] else "waiting" if e["pending"] else "retired"
        assert d.name in shown(state=state), (d.name, state)


@pytest.mark.parametrize("cursor", ["", "not base64!", "bm90IGpzb24", encode_cursor("x", ["a", "b"]), encode_cursor("d", ["a"]),
                                    "W1siZCIsMV1d", "A" * 2000])  # fmt: skip
def test_a_bad_cursor_is_a_usage_error_that_says_what_to_do(records, cursor):
    with pytest.raises(UsageError, match="invalid cursor: it is not a cursor this list gave out"):
        records.page_deployments(DeploymentFilter(), after=cursor)


def test_a_release_cursor_with_a_bad_time_or_id_is_a_usage_error(records):
    d = records.get_deployment(new_deployment(records, 1))
    for cursor in (encode_cursor("r", ["yesterday", d.id]), encode_cursor("r", [d.created_at.isoformat(), "x"])):
        with pytest.raises(UsageError, match="invalid cursor"):
            records.page_releases([d.deployment_id], after=cursor)
    assert decode_cursor(encode_cursor("d", ["a", "b"]), "d", 2) == ["a", "b"]


@pytest.fixture
def paged_site(tmp_path, database_url, records):
    for i in range(12):
        new_deployment(records, i)
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": "model-0000", "admin": "model-0001"})
    accounts = Accounts(records.connection)
    alice = accounts.authenticate(tokens["alice"])
    for i in range(2, 7):
        accounts.claim_name(alice, f"model-{i:04d}")
    records.connection.execute("UPDATE platform_users SET is_admin = true WHERE name = 'admin'")
    try:
        yield server, tokens
    finally:
        stop_platform(server)


def test_the_deployments_page_pages_filters_and_hides_other_users(paged_site):
    server, tokens = paged_site
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sign_in(client, tokens["alice"])
        seen, path = [], "/?limit=4"
        while path:
            page = client.get(path)
            assert page.status_code == 200
            seen += re.findall(r'<a href="/deployments/[^"]+">(model-\d+)</a>', page.text)
            found = re.search(r'<a rel="next" href="([^"]+)"', page.text)
            path = found.group(1).replace("&amp;", "&") if found else None
        assert seen == [f"model-{i:04d}" for i in (0, 2, 3, 4, 5, 6)]  # alice's six, each once; never the admin's model-0001 nor model-0007…
        only = client.get("/?prefix=model-0003")
        assert re.findall(r">(model-\d+)</a>", only.text) == ["model-0003"]
        bad = client.get("/?after=garbage")
        assert bad.status_code == 400 and "invalid cursor" in bad.text
        assert client.get("/?limit=abc").status_code == 400
        assert client.get("/?state=gone").status_code == 400


def test_the_api_pages_through_a_link_header_and_refuses_a_bad_cursor_with_400(paged_site):
    server, tokens = paged_site
    seen, url = [], f"{server.url}/api/deployments?limit=5"
    while url:
        r = httpx.get(url, headers=server.headers(tokens["admin"]), timeout=30)
        assert r.status_code == 200, r.text
        seen += [e["name"] for e in r.json()]
        link = r.headers.get("link")
        url = server.url + re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
    assert seen == [f"model-{i:04d}" for i in range(12)]  # the admin sees every one, once
    alice = httpx.get(f"{server.url}/api/deployments", params={"owner": "platform"}, headers=server.headers(tokens["alice"]), timeout=30)
    assert {e["name"] for e in alice.json()} == {f"model-{i:04d}" for i in (0, 2, 3, 4, 5, 6)}
    bad = httpx.get(f"{server.url}/api/deployments?after=garbage", headers=server.headers(tokens["alice"]), timeout=30)
    assert bad.status_code == 400 and "invalid cursor" in bad.json()["detail"]
    assert httpx.get(f"{server.url}/api/deployments?limit=0", headers=server.headers(tokens["alice"]), timeout=30).status_code == 422


def _more(err: str):
    found = re.search(r"more: run again with --after (\S+)", err)
    return found.group(1) if found else None


def test_list_and_history_page_with_limit_and_after(cli, records, database_url):
    import json

    for i in range(5):
        new_deployment(records, i)
    seen, after = [], None
    while True:
        r = cli("gitops", "list", "--database-url", database_url, "--limit", "2", "--json", *(["--after", after] if after else []))
        assert r.code == 0, r.err
        seen += [e["name"] for e in json.loads(r.out)]
        after = _more(r.err)
        if after is None:
            break
    assert seen == [f"model-{i:04d}" for i in range(5)]
    r = cli("gitops", "list", "--database-url", database_url, "--prefix", "model-0003")
    assert r.code == 0 and [line.split()[0] for line in r.out.splitlines()[1:]] == ["model-0003"]
    bad = cli("gitops", "list", "--database-url", database_url, "--after", "garbage")
    assert (bad.code, bad.out) == (2, "") and "invalid cursor" in bad.err and "Traceback" not in bad.err
    assert cli("gitops", "list", "--database-url", database_url, "--limit", "0").code == 2
    assert cli("gitops", "list", "--database-url", database_url, "--state", "asleep").code == 2

    d = records.get_deployment(new_deployment(records, 9))  # three releases of model-0009, then page through them
    for status in ("committed", "merged"):
        records.set_release_status(d.id, status, commit_sha="d" * 40)
    bundle = records.register_bundle(name="model-0009", version="2.0.0", sha256="e" * 64, size=1, archive_url=f"s3://b/{'e' * 64}.tar.gz",
                                      python_version="3.11", manifest={"name": "model-0009", "version": "2.0.0"})  # fmt: skip
    records.create_release(bundle_id=bundle.id, network="testnet", topic_id=69, wallet_secret_name="w", repo_url="file:///r", repo_branch="b2")
    everything = json.loads(cli("gitops", "history", "model-0009", "--database-url", database_url, "--json").out)
    paged, after = [], None
    while True:
        r = cli("gitops", "history", "model-0009", "--database-url", database_url, "--json", "--limit", "1", *(["--after", after] if after else []))
        assert r.code == 0, r.err
        paged += json.loads(r.out)
        after = _more(r.err)
        if after is None:
            break
    assert [p["release_id"] for p in paged] == [e["release_id"] for e in everything] and len(paged) == 2
    bad = cli("gitops", "history", "model-0009", "--database-url", database_url, "--after", encode_cursor("r", ["x", "y"]))
    assert bad.code == 2 and "invalid cursor" in bad.err
