"""Database and store URLs are printed without their credentials, whatever shape the URL (or the library's complaint) takes."""

from __future__ import annotations

import pytest

from allora_gitops.redact import display_url, redact_message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://allora:hunter2@db:5432/records", "postgresql://allora:***@db:5432/records"),
        ("postgresql://allora@db/records", "postgresql://allora@db/records"),
        ("postgresql://db/records", "postgresql://db/records"),
        # an unencoded '@' in the password: the userinfo ends at the last '@'
        ("postgresql://allora:p@ssw0rd@db/records", "postgresql://allora:***@db/records"),
        ("postgresql://allora@db/records?password=s3cret&sslmode=require", "postgresql://allora@db/records?password=***&sslmode=require"),
        ("host=db user=allora password='a b c'", "host=db user=allora password=***"),
        ("host=db password=s3cret dbname=records", "host=db password=*** dbname=records"),
        ("https://key:secret@s3.example.com", "https://key:***@s3.example.com"),
        # a user-only userinfo outside databases is a token (https://TOKEN@github.com/…): masked whole
        ("https://ghp_0123456789abcdef@git.example.com/o/r.git", "https://***@git.example.com/o/r.git"),
        ("git+https://glpat-xyz@gitlab.example.com/o/r.git", "git+https://***@gitlab.example.com/o/r.git"),
        # libpq's sslpassword (the client key's passphrase), and other secret-named parameters
        ("postgresql://allora@db/records?sslpassword=k3y&sslmode=verify-full", "postgresql://allora@db/records?sslpassword=***&sslmode=verify-full"),
        ("host=db sslpassword='p w' user=allora", "host=db sslpassword=*** user=allora"),
        ("s3://bucket/x?token=abc&region=eu", "s3://bucket/x?token=***&region=eu"),
        # neither a URL nor key=value: it could be a pasted password, so none of it is shown
        ("hunter2hunter2", "(not a URL)"),
    ],
)
def test_display_url_hides_the_password(url, shown):
    assert display_url(url) == shown


@pytest.mark.parametrize(
    ("url", "libpq_says", "expected"),
    [
        (
            "postgresql://u:abc%zzsecretpw@h/db",
            'invalid percent-encoded token: "abc%zzsecretpw"',
            'invalid percent-encoded token: "***"',
        ),
        (
            "postgresql://u:SECRETPW@[::1/db",
            'end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://u:SECRETPW@[::1/db"',
            'end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://u:***@[::1/db"',
        ),
        (
            "postgresql://u:p@ssSECRET@h/db",
            "failed to resolve host 'ssSECRET@h': [Errno -2] Name or service not known",
            "failed to resolve host '***': [Errno -2] Name or service not known",
        ),
        ("hunter2SECRET", 'missing "=" after "hunter2SECRET" in connection info string', 'missing "=" after "(not a URL)" in connection info string'),
        ("postgresql://u:pw@h/db?sslmode=bogus", 'invalid sslmode value: "bogus"', 'invalid sslmode value: "bogus"'),
    ],
)
def test_library_messages_lose_every_piece_of_the_password(url, libpq_says, expected):
    assert redact_message(libpq_says, url) == expected


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://u:abc%zzsecretpw@127.0.0.1:1/db", "secretpw"),
        ("postgresql://u:SECRETPW@[::1/db", "SECRETPW"),
        ("hunter2SECRET", "hunter2SECRET"),
        ("host=127.0.0.1 port=1 password='a bSECRET'", "bSECRET"),
    ],
)
def test_db_commands_never_print_a_password_libpq_quotes(cli, url, secret):
    result = cli("gitops", "db", "status", "--database-url", url)
    assert result.code == 1
    assert len(result.lines) == 1 and result.lines[0].startswith("error: cannot connect to the database ")
    assert secret not in result.err + result.out
