"""The tokens page and the admin pages (api/console_admin.py) over HTTP against the real server (uvicorn on
loopback, real PostgreSQL), and once in the real headless Chromium: CSRF on every form, missing, wrong, expired
and other-user credentials, a non-admin on the admin pages, a token shown once."""

from __future__ import annotations

import contextlib
import html
import re
import shutil
from typing import Iterator

import httpx
import pytest

from allora_gitops.api.auth import Accounts
from tests.fixtures.platform import start_owned_platform, stop_platform
from tests.test_logs import chromium, keep_artifacts
from tests.test_web import csrf_of, sign_in

NEW_TOKEN = re.compile(r'id="new-token" class="secret" value="(agp_[0-9a-f]{8}_[A-Za-z0-9_-]{43})"')


@pytest.fixture
def site(tmp_path, database_url, records):
    """The server; alice and bob are ordinary users, root an admin. Yields (server, {user: token})."""
    server, tokens = start_owned_platform(tmp_path, database_url, records, {"alice": "linear-forecaster", "bob": "mean-reverter"})
    tokens["root"] = server.token("root", admin=True)
    try:
        yield server, tokens
    finally:
        stop_platform(server)


@contextlib.contextmanager
def signed_in(server, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert sign_in(client, token).status_code == 303
        yield client


def prefix_of(token: str) -> str:
    return token[: len("agp_") + 8]


def admin_forms(user: str, token_prefix: str) -> dict[str, dict]:
    """Every admin form's action and a valid body (without its csrf)."""
    return {
        "/admin/users": {"user": "carol", "days": "30"},
        f"/admin/users/{user}/wallets": {"secret": "wallet-x"},
        f"/admin/users/{user}/wallets/unassign": {"secret": "wallet-x"},
        f"/admin/users/{user}/limits": {"max_live_deployments": "3"},
        f"/admin/users/{user}/tokens/{token_prefix}/revoke": {},
        f"/admin/users/{user}/tokens/revoke-all": {},
        f"/admin/users/{user}/admin": {"admin": "1"},
    }


def test_a_token_created_on_the_page_is_shown_once_works_and_is_listed_by_prefix_only(site, records):
    from allora_gitops.api.console_admin import DEFAULT_TOKEN_DAYS
    from allora_gitops.cli.serve import DEFAULT_TOKEN_EXPIRY

    assert DEFAULT_TOKEN_EXPIRY == f"{DEFAULT_TOKEN_DAYS}d"  # the page's default is token create's
    server, tokens = site
    with signed_in(server, tokens["alice"]) as client:
        page = client.get("/tokens")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert 'href="/tokens">Tokens</a>' in page.text and "/admin/users" not in page.text  # no admin link for alice
        assert '<label for="days">' in page.text and 'value="90"' in page.text  # token create's default, 90 days
        made = client.post("/tokens", data={"days": "30", "csrf": csrf_of(page.text)})
        assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
        secret = NEW_TOKEN.search(made.text).group(1)
        info = [t for t in Accounts(records.connection).list_tokens("alice") if t.prefix == prefix_of(secret)][0]
        assert 29.9 < (info.expires_at - info.created_at).total_seconds() / 86400 < 30.1
        assert httpx.get(f"{server.url}/api/bundles", headers=server.headers(secret), timeout=10).status_code == 200
        listed = client.get("/tokens")  # the list: prefixes, never the token again
        assert prefix_of(secret) in listed.text and secret not in listed.text
        assert f"{prefix_of(tokens['alice'])}</code> <strong>(this session)</strong>" in listed.text
        assert client.get("/tokens").text.count(secret) == 0
        for bad, message in (("0", "--expires '0d' is in the past"), ("soon", "give a whole number of days"),
                             ("99999999", "is too far ahead")):  # fmt: skip
            refused = client.post("/tokens", data={"days": bad, "csrf": csrf_of(page.text)})
            assert refused.status_code == 422 and message in html.unescape(refused.text) and NEW_TOKEN.search(refused.text) is None
        assert len(Accounts(records.connection).list_tokens("alice")) == 2  # the refused ones made nothing
    assert secret not in server.log.read_text()  # nor in the server's log


def test_revoking_another_token_keeps_the_session_and_revoking_the_sessions_own_signs_out(site, records):
    server, tokens = site
    spare = server.token("alice")
    with signed_in(server, tokens["alice"]) as client:
        page = client.get("/tokens")
        out = client.post(f"/tokens/{prefix_of(spare)}/revoke", data={"csrf": csrf_of(page.text)})
        assert (out.status_code, out.headers["location"]) == (303, f"/tokens?revoked={prefix_of(spare)}")
        assert httpx.get(f"{server.url}/api/bundles", headers=server.headers(spare), timeout=10).status_code == 401
        page = client.get(out.headers["location"])
        assert page.status_code == 200 and "is revoked" in page.text
        old = client.cookies["allora_session"]
        gone = client.post(f"/tokens/{prefix_of(tokens['alice'])}/revoke", data={"csrf": csrf_of(page.text)})
        assert gone.status_code == 200 and "<h1>Signed out</h1>" in gone.text and 'action="/logout"' not in gone.text
        assert 'allora_session=""' in gone.headers["set-cookie"]
    for path in ("/", "/tokens"):  # the old cookie, kept: no session any more
        assert httpx.get(f"{server.url}{path}", cookies={"allora_session": old}, timeout=10).status_code == 303


def test_every_form_refuses_a_missing_or_forged_csrf_token_and_changes_nothing(site, records):
    server, tokens = site
    accounts = Accounts(records.connection)
    before = [(t.prefix, t.revoked_at) for t in accounts.list_tokens()]
    with signed_in(server, tokens["root"]) as root, signed_in(server, tokens["alice"]) as alice:
        other_csrf = csrf_of(alice.get("/tokens").text)  # a real token, of another session
        forms = {"/tokens": {"days": "30"}, f"/tokens/{prefix_of(tokens['root'])}/revoke": {},
                 **admin_forms("alice", prefix_of(tokens["alice"]))}  # fmt: skip
        for action, body in forms.items():
            for csrf in (None, "", "forged", other_csrf):
                data = body if csrf is None else {**body, "csrf": csrf}
                answer = root.post(action, data=data)
                assert answer.status_code == 403 and "Form expired" in answer.text, (action, csrf)
    assert [(t.prefix, t.revoked_at) for t in accounts.list_tokens()] == before
    assert accounts.wallets_of("alice") == [] and "carol" not in {u.user for u in accounts.list_tokens()}
    assert records.connection.execute("SELECT max_live_deployments FROM platform_users WHERE name = 'alice'").fetchone()[0] is None
    assert not accounts.authenticate(tokens["alice"]).is_admin


def test_missing_wrong_and_expired_credentials_reach_no_page_and_no_form(site, records):
    server, tokens = site
    with signed_in(server, tokens["alice"]) as client:
        csrf = csrf_of(client.get("/tokens").text)
        valid = client.cookies["allora_session"]
    wrong = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    records.connection.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE prefix = %s", (prefix_of(tokens["alice"]),))
    # expired: the signed-in session of a token that has since expired
    for cookies in ({}, {"allora_session": wrong}, {"allora_session": "agp_00000000.9999999999.x.y"}, {"allora_session": valid}):
        for path in ("/tokens", "/admin/users", "/admin/users/alice"):
            answer = httpx.get(f"{server.url}{path}", cookies=cookies, timeout=10)
            assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=" + path.replace("/", "%2F"))
        made = httpx.post(f"{server.url}/tokens", data={"days": "30", "csrf": csrf}, cookies=cookies, timeout=10)
        assert (made.status_code, made.headers["location"]) == (303, "/login")
        revoke = httpx.post(f"{server.url}/tokens/{prefix_of(tokens['bob'])}/revoke", data={"csrf": csrf}, cookies=cookies, timeout=10)
        assert revoke.status_code == 303
    assert len(Accounts(records.connection).list_tokens("alice")) == 1
    assert all(t.revoked_at is None for t in Accounts(records.connection).list_tokens("bob"))


def test_another_users_token_is_a_404_and_stays_live(site, records):
    server, tokens = site
    with signed_in(server, tokens["bob"]) as bob:
        csrf = csrf_of(bob.get("/tokens").text)
        for prefix in (prefix_of(tokens["alice"]), prefix_of(tokens["root"]), "agp_00000000"):
            answer = bob.post(f"/tokens/{prefix}/revoke", data={"csrf": csrf})
            assert answer.status_code == 404 and "There is no such token among yours." in answer.text
        listed = bob.get("/tokens").text
        assert prefix_of(tokens["alice"]) not in listed and prefix_of(tokens["bob"]) in listed
    assert all(Accounts(records.connection).authenticate(tokens[u]) is not None for u in ("alice", "root"))


def test_a_non_admin_gets_the_404_of_a_missing_page_on_every_admin_page_and_form(site, records):
    server, tokens = site
    with signed_in(server, tokens["alice"]) as alice:
        csrf = csrf_of(alice.get("/tokens").text)
        for path in ("/admin", "/admin/users", "/admin/users/bob", "/admin/users/alice"):
            answer = alice.get(path)
            assert answer.status_code == 404 and "There is no such page." in answer.text and "bob" not in answer.text
        for action, body in admin_forms("bob", prefix_of(tokens["bob"])).items():
            assert alice.post(action, data={**body, "csrf": csrf}).status_code == 404, action
    accounts = Accounts(records.connection)
    assert accounts.wallets_of("bob") == [] and accounts.authenticate(tokens["bob"]) is not None
    assert not accounts.authenticate(tokens["bob"]).is_admin and not accounts.authenticate(tokens["alice"]).is_admin
    assert "carol" not in {t.user for t in accounts.list_tokens()}


def test_an_admin_creates_a_users_token_assigns_and_unassigns_a_wallet_and_sets_limits(site, records):
    server, tokens = site
    accounts = Accounts(records.connection)
    with signed_in(server, tokens["root"]) as root:
        users = root.get("/admin/users")
        assert users.status_code == 200 and 'href="/admin/users">Admin</a>' in users.text
        assert all(f'href="/admin/users/{u}">{u}</a>' in users.text for u in ("alice", "bob", "root"))
        csrf = csrf_of(users.text)
        refused = root.post("/admin/users", data={"user": "Carol!", "days": "30", "csrf": csrf})
        assert refused.status_code == 422 and "user name 'Carol!': lower-case letters" in html.unescape(refused.text)
        made = root.post("/admin/users", data={"user": "carol", "days": "never", "csrf": csrf})
        assert made.status_code == 201
        carol = NEW_TOKEN.search(made.text).group(1)
        assert accounts.authenticate(carol).name == "carol" and accounts.list_tokens("carol")[0].expires_at is None

        # wallets: the CLI's refusals, and a refused assignment creates nothing
        for bad, message in (("Bad Name", "wallet Secret name: lower-case letters"),
                             ("0x" + "ab" * 32, "cannot assign the wallet")):  # fmt: skip
            answer = root.post("/admin/users/carol/wallets", data={"secret": bad, "csrf": csrf})
            assert answer.status_code == 422 and message in html.unescape(answer.text) and bad not in answer.text.replace(f'value="{bad}"', "")
        assert accounts.wallets_of("carol") == []
        assert root.post("/admin/users/nobody/wallets", data={"secret": "wallet-a", "csrf": csrf}).status_code == 404
        assert "nobody" not in {t.user for t in accounts.list_tokens()}
        ok = root.post("/admin/users/carol/wallets", data={"secret": "wallet-a", "csrf": csrf})
        assert (ok.status_code, ok.headers["location"]) == (303, "/admin/users/carol?done=assigned")
        assert accounts.wallets_of("carol") == ["wallet-a"] and "Wallet assigned." in root.get(ok.headers["location"]).text
        off = root.post("/admin/users/carol/wallets/unassign", data={"secret": "wallet-a", "csrf": csrf})
        assert off.headers["location"].endswith("done=unassigned") and accounts.wallets_of("carol") == []

        # limits: only what is given changes; reset is its own, and refuses values beside it
        assert root.post("/admin/users/carol/limits", data={"max_live_deployments": "3", "max_upload_mb": "", "csrf": csrf}).status_code == 303
        assert accounts.set_limits("carol") == (3, None)
        assert root.post("/admin/users/carol/limits", data={"max_upload_mb": "20", "csrf": csrf}).status_code == 303
        assert accounts.set_limits("carol") == (3, 20 << 20)
        for body, message in (({"max_upload_mb": "0"}, "Invalid value for '--max-upload-mb': Input should be greater than or equal to 1"),
                              ({"max_live_deployments": "-1"}, "'--max-live-deployments': Input should be greater than or equal to 0"),
                              ({"reset": "1", "max_live_deployments": "2"}, "--reset returns both limits")):  # fmt: skip
            answer = root.post("/admin/users/carol/limits", data={**body, "csrf": csrf})
            assert answer.status_code == 422 and message in html.unescape(answer.text), answer.text
        assert accounts.set_limits("carol") == (3, 20 << 20)
        page = root.get("/admin/users/carol").text
        assert '<strong id="limit-live">3</strong>' in page and '<strong id="limit-upload">20 MB</strong>' in page
        assert root.post("/admin/users/carol/limits", data={"reset": "1", "csrf": csrf}).headers["location"].endswith("done=reset")
        assert accounts.set_limits("carol") == (None, None)

        # the admin flag, as user-admin [--revoke]; a token of another user is not carol's
        assert root.post("/admin/users/carol/admin", data={"admin": "1", "csrf": csrf}).headers["location"].endswith("done=admin")
        assert accounts.authenticate(carol).is_admin
        assert root.post("/admin/users/carol/admin", data={"admin": "0", "csrf": csrf}).headers["location"].endswith("done=not-admin")
        assert not accounts.authenticate(carol).is_admin
        assert root.post(f"/admin/users/carol/tokens/{prefix_of(tokens['bob'])}/revoke", data={"csrf": csrf}).status_code == 404
        assert accounts.authenticate(tokens["bob"]) is not None

        # disable: every token of carol revoked
        gone = root.post("/admin/users/carol/tokens/revoke-all", data={"csrf": csrf})
        assert gone.headers["location"].endswith("done=revoked-all") and accounts.authenticate(carol) is None
        assert root.get("/admin/users/nobody").status_code == 404
    assert carol not in server.log.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="needs Debian chromium-driver (installed by .ci/setup)")
def test_in_chromium_create_a_token_see_it_once_revoke_the_sessions_own_and_an_admin_assigns_a_wallet(site, tmp_path, records):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    server, tokens = site
    shots = []

    def shot(name: str) -> None:
        shots.append(tmp_path / f"{name}.png")
        browser.save_screenshot(str(shots[-1]))

    def sign_in_as(token: str, target: str) -> None:
        browser.get(f"{server.url}{target}")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        WebDriverWait(browser, 10).until(EC.url_to_be(f"{server.url}{target}"), message=browser.page_source)

    browser = chromium(tmp_path)
    try:
        sign_in_as(tokens["alice"], "/tokens")
        shot("tokens")
        order = []  # the keyboard's path through the page, and a focus that shows
        for _ in range(9):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            focused = browser.switch_to.active_element
            order.append(focused.get_attribute("id") or focused.text)
            assert focused.value_of_css_property("outline-width") == "3px", order[-1]
        assert order == ["Skip to the page", "allora-gitops", "Deployments", "Upload a bundle", "Tokens", "Sign out", "days", "Create token", "Revoke (signs you out)"]
        shot("tokens-focus")
        browser.get(f"{server.url}/tokens")  # the first Tab and Enter skip the header: the next Tab is in the page
        ActionChains(browser).send_keys(Keys.TAB).perform()
        assert browser.switch_to.active_element.text == "Skip to the page" and browser.switch_to.active_element.is_displayed()
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        ActionChains(browser).send_keys(Keys.TAB).perform()
        assert browser.switch_to.active_element.get_attribute("id") == "days"
        days = browser.find_element(By.ID, "days")
        days.clear()
        days.send_keys("7")
        browser.find_element(By.CSS_SELECTOR, "form[action='/tokens'] button").click()
        WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "new-token")))
        secret = browser.find_element(By.ID, "new-token").get_attribute("value")
        assert re.fullmatch(r"agp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", secret)
        shot("tokens-created")
        browser.get(f"{server.url}/tokens")
        assert secret not in browser.page_source and prefix_of(secret) in browser.page_source
        row = browser.find_element(By.ID, f"token-{prefix_of(tokens['alice'])}")
        row.find_element(By.TAG_NAME, "button").click()  # the session's own token: signed out
        WebDriverWait(browser, 10).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Signed out"))
        assert "Sign out" not in browser.find_element(By.TAG_NAME, "header").text
        shot("tokens-signed-out")
        browser.get(f"{server.url}/tokens")
        assert browser.current_url.startswith(f"{server.url}/login?next=")

        sign_in_as(tokens["root"], "/admin/users")
        shot("admin-users")
        browser.find_element(By.LINK_TEXT, "alice").click()
        WebDriverWait(browser, 10).until(EC.url_to_be(f"{server.url}/admin/users/alice"))
        browser.find_element(By.ID, "secret").send_keys("wallet-alice")
        browser.find_element(By.CSS_SELECTOR, "form[action='/admin/users/alice/wallets'] button").click()
        WebDriverWait(browser, 10).until(EC.url_contains("done=assigned"))
        assert browser.find_element(By.CSS_SELECTOR, "#wallets code").text == "wallet-alice"
        shot("admin-user")
    finally:
        browser.quit()
    assert Accounts(records.connection).wallets_of("alice") == ["wallet-alice"]
    assert all(p.stat().st_size > 10_000 for p in shots)
    keep_artifacts(*shots)


def test_the_forms_give_the_clis_messages_for_the_same_bad_input(site, records, cli, database_url):
    server, tokens = site
    url = ("--database-url", database_url)
    cases = [  # (the CLI's arguments, the form's action and body)
        (("token", "create", "--user", "alice", "--expires", "0d"), "/tokens", {"days": "0"}),
        (("token", "create", "--user", "Carol!", "--expires", "30d"), "/admin/users", {"user": "Carol!", "days": "30"}),
        (("token", "create", "--user", "carol", "--expires", "99999999d"), "/admin/users", {"user": "carol", "days": "99999999"}),
        (("wallet", "assign", "Not_A_Secret_Name", "--user", "alice"), "/admin/users/alice/wallets", {"secret": "Not_A_Secret_Name"}),
        (("wallet", "assign", "4f" * 32, "--user", "alice"), "/admin/users/alice/wallets", {"secret": "4f" * 32}),
        (("user-limits", "alice", "--reset", "--max-upload-mb", "2"), "/admin/users/alice/limits", {"reset": "1", "max_upload_mb": "2"}),
        (("user-limits", "alice", "--max-upload-mb", "0"), "/admin/users/alice/limits", {"max_upload_mb": "0"}),
        (("user-limits", "alice", "--max-live-deployments", "-1"), "/admin/users/alice/limits", {"max_live_deployments": "-1"}),
        (("user-limits", "alice", "--max-live-deployments", "abc"), "/admin/users/alice/limits", {"max_live_deployments": "abc"}),
        (("user-limits", "nobody", "--max-upload-mb", "3"), "/admin/users/nobody/limits", {"max_upload_mb": "3"}),
    ]  # fmt: skip
    with signed_in(server, tokens["root"]) as root:
        csrf = csrf_of(root.get("/tokens").text)
        for args, action, body in cases:
            result = cli("gitops", *args, *url)
            assert result.code == 2 or result.code == 1, result
            said = [line.strip(" │").removeprefix("error: ").removeprefix("Error: ").strip() for line in result.err.splitlines()]
            message = next(line for line in said if line and not line.startswith(("Usage", "Try", "╭", "╰")))
            page = root.post(action, data={**body, "csrf": csrf})
            assert page.status_code == (404 if "nobody" in action else 422) and message in html.unescape(page.text), (args, message)
    accounts = Accounts(records.connection)
    assert accounts.wallets_of("alice") == [] and "carol" not in {t.user for t in accounts.list_tokens()}


MNEMONIC = "abandon ability able about above absent absorb abstract absurd abuse access accident"
PRIVATE_KEY = "0x" + "5c" * 32


def test_a_key_mnemonic_or_token_pasted_into_any_field_never_comes_back_in_the_page(site, cli, database_url):
    """A refused form puts back what was typed, and its error quotes it: neither may repeat a wallet key, a
    mnemonic or an API token pasted into the wrong field (the days, a user name, a limit, a wallet name)."""
    server, tokens = site
    pasted = (MNEMONIC, PRIVATE_KEY, tokens["bob"])
    with signed_in(server, tokens["root"]) as root:
        csrf = csrf_of(root.get("/tokens").text)
        for value in pasted:
            for action, body in [("/tokens", {"days": value}), ("/admin/users", {"user": value, "days": "30"}),
                                 ("/admin/users", {"user": "carol", "days": value}), ("/admin/users/alice/wallets", {"secret": value}),
                                 ("/admin/users/alice/limits", {"max_upload_mb": value}),
                                 ("/admin/users/alice/limits", {"max_live_deployments": value})]:  # fmt: skip
                page = root.post(action, data={**body, "csrf": csrf})
                assert page.status_code == 422, (action, body, page.text)
                assert value not in html.unescape(page.text) and value.split()[0] not in page.text, (action, body)
                assert re.search(r'role="alert"', page.text), (action, body)  # still told what is wrong
    for args in (("token", "create", "--user", MNEMONIC), ("token", "create", "--user", "carol", "--expires", PRIVATE_KEY),
                 ("token", "revoke", "agp_deadbeef_" + "A" * 43)):  # fmt: skip  (a whole token, not a live one)
        result = cli("gitops", *args, "--database-url", database_url)
        said = result.out + result.err
        assert result.code == 2 and args[-1] not in said and args[-1].split()[0] not in said, (args, said)
        assert "looks like a secret, not shown" in said or "no token with prefix 'agp_deadbeef'" in said, (args, said)
