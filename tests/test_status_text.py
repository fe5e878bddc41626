"""``allora-gitops status`` as text: what a model reported is printed on one line, and a bad setting stops it before
any output (review of issue 16)."""

from __future__ import annotations

from datetime import datetime, timezone

from allora_gitops.db.results import ResultRow, record_results
from tests.test_results import NAME, deployment  # noqa: F401  (the fixture)


def test_a_reported_message_cannot_break_the_status_lines(cli, database_url, deployment, records):  # noqa: F811
    now = datetime.now(timezone.utc)
    message = "no data\nfake line: 100% success \x1b[2J"
    record_results(records.connection, deployment.id, [
        ResultRow(kind="prediction", nonce=1, status="error", observed_at=now, reason="exception", error_type="ValueError",
                  error_message=message, error_where="src/model.py:3\x1b[31m", latency_ms=5.0),
    ])  # fmt: skip
    status = cli("gitops", "status", NAME, "--database-url", database_url, "--last", "1")
    assert status.code == 0, status.err
    assert "\x1b" not in status.out and "fake line" not in status.out.replace("\\nfake line", "")
    [error] = [line for line in status.out.splitlines() if line.startswith("    prediction error ValueError")]
    assert error.endswith(r": no data\nfake line: 100% success \x1b[2J at src/model.py:3\x1b[31m")
    [recent] = [line for line in status.out.splitlines() if " nonce 1 prediction error" in line]
    assert recent.endswith(r"ValueError: no data\nfake line: 100% success \x1b[2J")


def test_a_malformed_explorer_template_stops_status_before_it_prints(cli, database_url, deployment, records, monkeypatch):  # noqa: F811
    record_results(records.connection, deployment.id, [
        ResultRow(kind="submission", nonce=1, status="success", observed_at=datetime.now(timezone.utc), value="1.5", tx_hash="AB" * 32),
    ])  # fmt: skip
    monkeypatch.setenv("ALLORA_EXPLORER_TX_URL_TESTNET", "https://explorer.example/tx")  # no {tx_hash}
    status = cli("gitops", "status", NAME, "--database-url", database_url)
    assert status.code == 2
    assert status.out == ""
    assert status.err.startswith("error: $ALLORA_EXPLORER_TX_URL_TESTNET must be an http(s) URL with one {tx_hash} placeholder")


def test_without_the_repository_a_merged_deployment_is_still_shown_from_its_record(cli, database_url, deployment, records):  # noqa: F811
    records.set_deployment_status(deployment.id, "committed", commit_sha="c" * 40)
    records.set_deployment_status(deployment.id, "merged")
    status = cli("gitops", "status", NAME, "--database-url", database_url)
    assert status.code == 0, status.err
    lines = status.out.splitlines()
    assert lines[0] == f"{NAME} on testnet"  # not "waiting for review": the records say it is on the base branch
    assert "  status: merged" in lines and "  resources: metrics not configured (no Prometheus URL)" in lines
    listed = cli("gitops", "list", "--database-url", database_url)
    assert listed.code == 0 and [line.split()[:5] for line in listed.out.splitlines()[1:]] == [
        [NAME, "testnet", deployment.version, deployment.bundle_sha256[:12], "merged"]
    ]
