"""The deployments page's batched query: ``deployment_overviews`` gives, for many deployments in one statement,
exactly the numbers ``deployment_result_summary`` gives one by one; and the page reads it once, whatever
the number of deployments (real PostgreSQL, the real app)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from allora_gitops.api.auth import Accounts
from allora_gitops.db import results as results_db
from allora_gitops.db.results import ResultRow, deployment_overviews, deployment_result_summary, record_results
from tests.test_db_records import bundle_args, deployment_args

TX = "CD" * 32


def new_deployment(records, i: int):
    name, sha = f"model-{i:02d}", f"{i:064x}"
    bundle = records.register_bundle(**bundle_args(name=name, sha256=sha, archive_url=f"s3://b/{sha}.tar.gz", manifest={"name": name}))
    return records.create_deployment(**deployment_args(bundle.id))


def mixed_rows(now: datetime, seed: int) -> list[ResultRow]:
    """Predictions and submissions over 3 days (so some fall outside 24 h), successes, errors and timeouts,
    some without a latency; the newest success of each kind is not the newest result."""
    rows = []
    for i in range(60):
        at = now - timedelta(hours=i * 1.3 + seed)
        kind = "prediction" if i % 2 else "submission"
        status = ("success", "success", "error", "timeout")[(i + seed) % 4] if i > 1 else "error"
        latency = None if i % 7 == 3 else 10.0 + (i * 37 + seed * 11) % 500
        if status == "success":
            rows.append(ResultRow(kind, 100 + i, status, at, value=f"{i}.25", tx_hash=TX if kind == "submission" else None, latency_ms=latency))
        else:
            rows.append(ResultRow(kind, 100 + i, status, at, reason="timeout" if status == "timeout" else "exception",
                                  error_type="ValueError", error_message=f"failed {i}", latency_ms=latency))  # fmt: skip
    return rows


@pytest.fixture
def deployments(records):
    """Three deployments with different results, one with results only older than 24 h, one with none."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    made = [new_deployment(records, i) for i in range(5)]
    for seed, d in enumerate(made[:3]):
        record_results(records.connection, d.id, mixed_rows(now, seed))
    old = [ResultRow("submission", 1, "success", now - timedelta(days=2), value="1", latency_ms=5.0),
           ResultRow("prediction", 1, "error", now - timedelta(days=3), error_message="x")]  # fmt: skip
    record_results(records.connection, made[3].id, old)
    return made, now


def test_the_batched_overview_gives_the_summarys_numbers_for_every_deployment(records, deployments):
    made, now = deployments
    ids = [d.id for d in made]
    overviews = deployment_overviews(records.connection, ids, now=now)
    assert sorted(overviews) == sorted(ids)  # keyed by DeploymentRecord.id
    for d in made:
        summary = deployment_result_summary(records.connection, d.id, recent=0, now=now)
        o = overviews[d.id]
        assert (o.deployment_id, o.as_of, o.last_result_at, o.last_success_at) == (
            str(d.id), now, summary.last_result_at, summary.last_success_at)
        for kind in ("prediction", "submission"):
            assert o.window(kind) == summary.window("24h", kind)
    busy = overviews[made[0].id]
    assert busy.window("submission").total > 0 and busy.window("submission").latency_ms["p95"] is not None
    assert busy.last_success_at["submission"] < busy.last_result_at  # the two newest results are errors
    quiet = overviews[made[3].id]  # results, but none in the last 24 h
    assert quiet.day == {} and quiet.last_result_at == now - timedelta(days=2)
    assert quiet.last_success_at == {"prediction": None, "submission": now - timedelta(days=2)}
    empty = overviews[made[4].id]
    assert (empty.last_result_at, empty.last_success_at, empty.day) == (None, {"prediction": None, "submission": None}, {})


def test_the_overview_counts_only_what_is_not_after_now(records, deployments):
    made, now = deployments
    earlier = now - timedelta(hours=12)
    o = deployment_overviews(records.connection, [made[0].id], now=earlier)[made[0].id]
    summary = deployment_result_summary(records.connection, made[0].id, recent=0, now=earlier)
    assert o.last_result_at == summary.last_result_at <= earlier
    assert o.window("submission") == summary.window("24h", "submission")
    assert deployment_overviews(records.connection, []) == {}
    only = deployment_overviews(records.connection, [made[0].id], kinds=["submission"], now=earlier)[made[0].id]
    assert list(only.day) == ["submission"] and only.window("submission") == summary.window("24h", "submission")
    assert only.last_success_at["prediction"] is not None  # the newest successes are there for every kind


def test_the_deployments_page_reads_every_row_with_one_overview_query(records, deployments, database_url, tmp_path, monkeypatch):
    from allora_gitops.api.app import create_app
    from allora_gitops.api.settings import ApiSettings
    from allora_gitops.api.auth import token_prefix
    from allora_gitops.api.web import SESSION_COOKIE, start_session

    made, now = deployments
    accounts = Accounts(records.connection)
    admin_token, _ = accounts.create_token("root", admin=True)  # an admin sees every deployment
    calls = []
    real = results_db.deployment_overviews
    monkeypatch.setattr(results_db, "deployment_overviews", lambda conn, ids, **kw: calls.append(list(ids)) or real(conn, ids, **kw))
    monkeypatch.setattr(results_db, "deployment_result_summary", lambda *a, **kw: pytest.fail("the page read one deployment at a time"))
    key, _ = accounts.live_token(token_prefix(admin_token))
    app = create_app(ApiSettings(repo=str(tmp_path), database_url=database_url))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.cookies.set(SESSION_COOKIE, start_session(records.connection, token_prefix(admin_token), key))
        page = client.get("/")
    assert page.status_code == 200
    assert len(calls) == 1 and sorted(calls[0]) == sorted(d.id for d in made)
    busy = deployment_overviews(records.connection, [made[0].id])[made[0].id]
    expected, last = busy.window("submission"), busy.last_success_at["submission"]
    assert (f'<td><time datetime="{last.isoformat()}">{last:%Y-%m-%d %H:%M:%S} UTC</time></td>'
            f'<td class="num">{expected.success_rate * 100:.1f} %</td><td class="num">{expected.latency_ms["p95"]:.0f} ms</td>') in page.text
    assert '<td>never</td><td class="num">–</td><td class="num">–</td>' in page.text  # made[4]: no results
    for d in made:
        assert f'href="/deployments/{d.deployment_id}">{d.name}</a>' in page.text
    assert page.text.count('<td class="lifecycle"><strong>') == len(made)  # the stage, from the same overview rows


def test_times_are_shown_in_utc_whatever_the_zone_they_come_in():
    from allora_gitops.api.web import when

    local = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert when(local) == '<time datetime="2026-01-02T03:04:05-05:00">2026-01-02 08:04:05 UTC</time>'
    assert when(None) == "never"
