"""The health endpoints answer probes without a token and say which release runs only to a token holder."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from allora_gitops import __version__
from tests.fixtures.platform import platform_server  # noqa: F401  (fixture)


def test_health_shows_the_version_only_with_a_valid_token(platform_server):
    platform = platform_server
    good = platform.token("frank")
    expired = platform.token("frank", expires_at=datetime.now(timezone.utc) + timedelta(seconds=1))
    import time

    time.sleep(1.2)
    for path in ("/healthz", "/api/health"):
        for headers in ({}, {"Authorization": "Bearer agp_00000000_wrong"}, platform.headers(expired), {"Authorization": "Basic Zm9vOmJhcg=="}):
            r = httpx.get(f"{platform.url}{path}", headers=headers)
            ready = {"database": "ok"} if path == "/api/health" else {}  # readiness says how the database is, never where
            assert (r.status_code, r.json()) == (200, {"status": "ok", **ready}), (path, headers)
            assert __version__ not in r.text
        r = httpx.get(f"{platform.url}{path}", headers=platform.headers(good))
        ready = {"database": "ok"} if path == "/api/health" else {}
        assert (r.status_code, r.json()) == (200, {"status": "ok", **ready, "version": __version__})
    # nor does the public API description carry the build's version
    assert httpx.get(f"{platform.url}/api/openapi.json").json()["info"]["version"] == "1"


def test_a_database_outage_is_a_503_that_does_not_say_where_the_database_lives(tmp_path, database_url, gitops_home):
    """Through a real PgBouncer that then stops: readiness and every route answer 503 without host, port or name."""
    from tests.fixtures.pgbouncer import start_pgbouncer
    from tests.fixtures.platform import start_platform, stop_platform

    bouncer = start_pgbouncer(database_url)
    pooled = bouncer.url(database_url)
    platform = start_platform(tmp_path, database_url=pooled, repo=tmp_path / "repo", store_url=(tmp_path / "store").as_uri(),
                              env={"ALLORA_GITOPS_HOME": str(gitops_home)})  # fmt: skip
    try:
        assert httpx.get(f"{platform.url}/api/health").status_code == 200
        bouncer.stop()
        for path in ("/api/health", "/api/bundles"):
            r = httpx.get(f"{platform.url}{path}", headers={"Authorization": "Bearer agp_00000000_x"}, timeout=30)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["detail"] == "the records database is unavailable; try again shortly"
            assert r.headers["retry-after"] == "5"
            assert str(bouncer.port) not in r.text and "127.0.0.1" not in r.text and "dbname" not in r.text
        assert f"port={bouncer.port}" in platform.log.read_text()  # the operator's log says where
    finally:
        stop_platform(platform)
        bouncer.stop()
