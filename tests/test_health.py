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
            assert (r.status_code, r.json()) == (200, {"status": "ok"}), (path, headers)
            assert __version__ not in r.text
        r = httpx.get(f"{platform.url}{path}", headers=platform.headers(good))
        assert (r.status_code, r.json()) == (200, {"status": "ok", "version": __version__})
    # nor does the public API description carry the build's version
    assert httpx.get(f"{platform.url}/api/openapi.json").json()["info"]["version"] == "1"
