"""Admin commands change only what they are told: ``user-limits`` partial updates and ``--reset``, a refused
``wallet assign`` that leaves the users table as it was. Real PostgreSQL, the CLI in-process."""

from __future__ import annotations

import pytest


def _users(database_url: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        # `platform`, the reserved owner of CLI-published names, exists in every database (migration 0008)
        return conn.execute(
            "SELECT name, is_admin, max_live_deployments, max_upload_bytes FROM platform_users WHERE name <> 'platform' ORDER BY name"
        ).fetchall()


@pytest.fixture
def bob(database_url):
    from allora_gitops.api.auth import open_accounts

    accounts, records = open_accounts(database_url)
    with records:
        accounts.create_token("bob")
    return database_url


def test_user_limits_change_only_the_options_given_and_reset_is_explicit(cli, bob):
    url = bob
    result = cli("gitops", "user-limits", "bob", "--max-live-deployments", "0", "--database-url", url)
    assert (result.code, result.out) == (0, "bob: live deployments 0, upload server setting\n")
    result = cli("gitops", "user-limits", "bob", "--max-upload-mb", "1", "--database-url", url)
    assert (result.code, result.out) == (0, "bob: live deployments 0, upload 1 MB\n")  # the live limit stays
    assert _users(url) == [("bob", False, 0, 1 << 20)]
    # no option: shows, changes nothing
    result = cli("gitops", "user-limits", "bob", "--database-url", url)
    assert (result.code, result.out) == (0, "bob: live deployments 0, upload 1 MB\n")
    assert _users(url) == [("bob", False, 0, 1 << 20)]
    # --reset with another option is ambiguous: refused, nothing changed
    result = cli("gitops", "user-limits", "bob", "--reset", "--max-upload-mb", "2", "--database-url", url)
    assert result.code == 2
    assert result.err == "error: --reset returns both limits to the server's settings: give it alone, then set what differs\n"
    assert _users(url) == [("bob", False, 0, 1 << 20)]
    result = cli("gitops", "user-limits", "bob", "--reset", "--database-url", url)
    assert (result.code, result.out) == (0, "bob: live deployments server setting, upload server setting\n")
    assert _users(url) == [("bob", False, None, None)]
    # an unknown user is not created by setting limits
    result = cli("gitops", "user-limits", "dave", "--max-upload-mb", "3", "--database-url", url)
    assert result.code == 2 and "no user 'dave'" in result.err
    assert [u[0] for u in _users(url)] == ["bob"]


@pytest.mark.parametrize(
    "secret, message",
    [
        ("Not_A_Secret_Name", "wallet Secret name: lower-case letters, digits, '-' and '.' (at most 253), starting and ending alphanumeric"),
        ("a" * 254, "wallet Secret name: lower-case letters, digits, '-' and '.' (at most 253), starting and ending alphanumeric"),
        # well-formed, but a 64-hex-digit key pasted where the Secret's name belongs: the database's half of the check
        ("4f" * 32, "looks like a wallet key"),
    ],
)
def test_a_refused_wallet_assign_creates_no_user(cli, bob, secret, message):
    before = _users(bob)
    result = cli("gitops", "wallet", "assign", secret, "--user", "dave", "--database-url", bob)
    assert result.code != 0
    assert message in result.err
    assert secret not in result.err + result.out  # never echoed: it may be a pasted key
    assert "wallet_assignments" not in result.err and "platform_users" not in result.err
    assert _users(bob) == before
    # the same for an existing user: no assignment
    result = cli("gitops", "wallet", "assign", secret, "--user", "bob", "--database-url", bob)
    assert result.code != 0
    assert cli("gitops", "wallet", "list", "--user", "bob", "--database-url", bob).out == "no wallet assigned to bob\n"


def test_a_valid_wallet_assign_creates_the_user_and_the_assignment(cli, bob):
    result = cli("gitops", "wallet", "assign", "dave-wallet", "--user", "dave", "--database-url", bob)
    assert (result.code, result.out) == (0, "dave may use wallet dave-wallet\n")
    assert [u[0] for u in _users(bob)] == ["bob", "dave"]
    assert cli("gitops", "wallet", "list", "--user", "dave", "--database-url", bob).out == "dave-wallet\n"
