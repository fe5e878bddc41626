"""``allora-gitops token create``: a token expires in 90 days unless told otherwise; ``--expires never`` is explicit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from allora_gitops.api.auth import Accounts, token_prefix


def test_token_create_defaults_to_90_days_and_never_is_spelled_out(cli, database_url, records):
    before = datetime.now(timezone.utc)
    made = cli("gitops", "token", "create", "--user", "carol", "--database-url", database_url)
    assert made.code == 0, made.err
    token = made.out.strip()
    [info] = [t for t in Accounts(records.connection).list_tokens("carol") if t.prefix == token_prefix(token)]
    assert before + timedelta(days=90) <= info.expires_at <= datetime.now(timezone.utc) + timedelta(days=90)
    assert f"token {info.prefix} for carol, expires {info.expires_at.isoformat()}: shown once, store it now" in made.err
    forever = cli("gitops", "token", "create", "--user", "carol", "--expires", "never", "--database-url", database_url)
    assert forever.code == 0, forever.err
    [info] = [t for t in Accounts(records.connection).list_tokens("carol") if t.prefix == token_prefix(forever.out.strip())]
    assert info.expires_at is None and "expires" not in forever.err
    short = cli("gitops", "token", "create", "--user", "carol", "--expires", "12h", "--database-url", database_url)
    [info] = [t for t in Accounts(records.connection).list_tokens("carol") if t.prefix == token_prefix(short.out.strip())]
    assert info.expires_at <= datetime.now(timezone.utc) + timedelta(hours=12)


def test_token_create_refuses_an_empty_or_unrepresentable_expiry(cli, database_url, records):
    """`--expires ''` (an unset shell variable) is not `never`; a duration or a date past year 9999 in UTC is a usage
    error naming the value, not an internal error."""
    cases = {
        "": "error: --expires '': give a duration (12h, 30d, 2w), an ISO date or 'never'",
        "99999999d": "error: --expires '99999999d' is too far ahead: at most the year 9999, or 'never'",
        "9999999999w": "error: --expires '9999999999w' is too far ahead: at most the year 9999, or 'never'",
        "9999-12-31T23:30:00-01:00": "error: --expires '9999-12-31T23:30:00-01:00' has no UTC time between the years 1 and 9999",
    }
    for value, message in cases.items():
        made = cli("gitops", "token", "create", "--user", "dave", "--expires", value, "--database-url", database_url)
        assert (made.code, made.out, made.err.strip()) == (2, "", message), value
    assert Accounts(records.connection).list_tokens("dave") == []  # nothing half-made
    spelled = cli("gitops", "token", "create", "--user", "dave", "--expires", "Never", "--database-url", database_url)
    assert spelled.code == 0, spelled.err
    [info] = Accounts(records.connection).list_tokens("dave")
    assert info.expires_at is None


def test_token_list_says_expired_for_a_token_past_its_expiry(cli, database_url, records):
    made = cli("gitops", "token", "create", "--user", "erin", "--expires", "12h", "--database-url", database_url)
    prefix = token_prefix(made.out.strip())
    records.connection.execute("UPDATE api_tokens SET expires_at = now() - interval '1 day' WHERE prefix = %s", (prefix,))
    [info] = Accounts(records.connection).list_tokens("erin")
    listed = cli("gitops", "token", "list", "--user", "erin", "--database-url", database_url)
    assert listed.code == 0, listed.err
    assert listed.out == f"{prefix}  erin  expired {info.expires_at:%Y-%m-%d %H:%M}\n"
