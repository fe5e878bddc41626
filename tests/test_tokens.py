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
