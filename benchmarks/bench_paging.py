"""Views that page at volume (issue 25 item 2): 10,000 deployments, their results, and the pages, API and CLI
that read them a page at a time.

Set-up (not timed): an embedded PostgreSQL (fsync off, as the tests do); 10,000 deployments (bundle, owner,
deployment and release rows generated in SQL: nine in ten live with a settled live release, the rest waiting
for review) whose names user `big` owns, 10 more that `small` owns; PER results per deployment (submissions and
predictions, one in ten an error, spread over the last 10 days) in one INSERT … SELECT; VACUUM ANALYZE. The
real server (`allora-gitops serve`, uvicorn) runs on a free loopback port; each user signs in through the form.

Timed, REQUESTS sequential GETs each on one keep-alive connection (client-measured to the last byte):
  - `/` first page and a middle page (`?after=` the cursor half-way through, followed from the first page)
    for `big` (10,000 visible), target p95 ≤ 150 ms; `/` for `small` (10 of 10,010, visibility in SQL);
  - `GET /api/deployments` first page (100 entries) and a middle page;
  - `/deployments/{id}` of random deployments, target p95 ≤ 100 ms;
  - `allora-gitops status NAME` in-process (no interpreter start), target ≤ 200 ms;
and against the new page, in the same run and on the same database, the data of `/` gathered as the page
did before paging (every release in one statement, every deployment, owners filtered in Python, overviews and
lifecycles of all 10,000), measured in this process (queries and Python, no HTTP, no template: the old page
also rendered 10,000 rows).

    python benchmarks/bench_paging.py [--deployments 10000] [--per-deployment 100] [--requests 60]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(conn, big: int, small: int, per: int) -> None:
    """Bundles model-00000…, owners, deployments, one release each (and a second, waiting, for one in ten)."""
    total = big + small
    conn.execute("INSERT INTO platform_users (name) VALUES ('big'), ('small') ON CONFLICT (name) DO NOTHING")
    conn.execute(
        """INSERT INTO model_bundles (name, version, sha256, size_bytes, archive_url, python_version, manifest)
           SELECT 'model-' || lpad(i::text, 5, '0'), '1.0.0', lpad(to_hex(i), 64, '0'), 1,
                  's3://b/' || lpad(to_hex(i), 64, '0') || '.tar.gz', '3.11', '{}'::jsonb
           FROM generate_series(0, %s - 1) i""",
        (total,),
    )
    conn.execute(
        """INSERT INTO bundle_owners (name, user_id)
           SELECT b.name, u.id FROM model_bundles b JOIN platform_users u
             ON u.name = CASE WHEN substr(b.name, 7)::int < %s THEN 'big' ELSE 'small' END""",
        (big,),
    )
    conn.execute(
        """INSERT INTO deployments (name, network, owner, created_at)
           SELECT b.name, 'testnet', u.name, now() - interval '30 days' FROM model_bundles b
           JOIN bundle_owners o ON o.name = b.name JOIN platform_users u ON u.id = o.user_id"""
    )
    conn.execute(
        """INSERT INTO releases (bundle_id, network, topic_id, fee_tier, wallet_secret_kind, wallet_secret_name, repo_url,
                                 repo_branch, status, commit_sha, deployment_id, action, created_by, created_at)
           SELECT b.id, 'testnet', 69, 'STANDARD', 'Secret', 'w', 'file:///r', 'deploy/' || b.name, 'merged',
                  md5(b.name) || '00000000', d.id, 'publish', d.owner, now() - interval '20 days'
           FROM model_bundles b JOIN deployments d ON d.name = b.name"""
    )
    conn.execute(
        """INSERT INTO releases (bundle_id, network, topic_id, fee_tier, wallet_secret_kind, wallet_secret_name, repo_url,
                                 repo_branch, status, commit_sha, deployment_id, action, created_by, created_at)
           SELECT b.id, 'testnet', 70, 'STANDARD', 'Secret', 'w', 'file:///r', 'topic/' || b.name, 'committed',
                  md5(b.name || 'x') || '00000000', d.id, 'publish', d.owner, now() - interval '1 day'
           FROM model_bundles b JOIN deployments d ON d.name = b.name WHERE substr(b.name, 7)::int % 10 = 3"""
    )
    conn.execute(
        """UPDATE deployments d SET live_release_id = r.id FROM releases r
           WHERE r.deployment_id = d.id AND r.status = 'merged'"""
    )
    conn.execute(
        """INSERT INTO submission_results (deployment_id, kind, nonce, status, created_at, prediction, tx_hash, reason,
                                           error_type, error_message, latency_ms)
           SELECT d.live_release_id, CASE WHEN n %% 2 = 0 THEN 'submission' ELSE 'prediction' END, n,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'error' ELSE 'success' END,
                  now() - (n * (interval '10 days' / %s)),
                  CASE WHEN n %% 10 IN (0, 5) THEN NULL ELSE (random() * 1000)::text END,
                  CASE WHEN n %% 2 = 0 AND n %% 10 <> 0 THEN upper(md5(n::text) || md5(d.id::text)) END,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'exception' END, CASE WHEN n %% 10 IN (0, 5) THEN 'ValueError' END,
                  CASE WHEN n %% 10 IN (0, 5) THEN 'no data for window ' || n END, random() * 900
           FROM deployments d, generate_series(1, %s) AS n""",
        (per, per),
    )
    conn.execute("VACUUM ANALYZE")


def previous_page_data(records, accounts, principal):
    """What `/` gathered before paging (the code of the page as it was): every release and every deployment,
    owners filtered in Python, then overviews and lifecycles of everything shown."""
    from allora_gitops.db.results import deployment_overviews
    from allora_gitops.gitops.inventory import live_release_in
    from allora_gitops.lifecycle import deployments_lifecycles

    names = accounts.owned_names(principal)
    shown, pending = [], {}
    by_deployment: dict[str, list] = {}
    for r in reversed(records.list_deployments()):
        by_deployment.setdefault(r.deployment_id, []).append(r)
    for target in records.list_deployment_entities():
        if names is not None and target.name not in names:
            continue
        releases = sorted(by_deployment.get(target.id, []), key=lambda r: (r.created_at, r.id))
        if not releases:
            continue
        live = live_release_in(target, releases)
        waiting = [r for r in releases if r.status in ("pending", "committed")]
        if live is None and not waiting:
            continue
        shown.append(live or releases[-1])
        pending[shown[-1].id] = waiting
    overviews = deployment_overviews(records.connection, [d.id for d in shown], kinds=["submission"])
    deployments_lifecycles(records.connection, shown, overviews=overviews)
    return shown


def paged_page_data(records, principal, after=None):
    """What `/` gathers now (api/web.py deployments_page, without the template)."""
    from allora_gitops.db.paging import DeploymentFilter
    from allora_gitops.db.results import deployment_overviews
    from allora_gitops.gitops.inventory import live_release_in
    from allora_gitops.lifecycle import deployments_lifecycles

    page, _ = records.page_deployments(DeploymentFilter(visible_to=principal.user_id), after=after, limit=50)
    releases_of = records.releases_of([t.id for t in page])
    shown = [live_release_in(t, releases_of[t.id]) or releases_of[t.id][-1] for t in page if releases_of[t.id]]
    overviews = deployment_overviews(records.connection, [d.id for d in shown], kinds=["submission"])
    deployments_lifecycles(records.connection, shown, overviews=overviews)
    return shown


def p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20, method="inclusive")[18]


def timed(client, paths: list[str], expect: str | None = None) -> list[float]:
    client.get(paths[0])  # warm
    out = []
    for path in paths:
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        if expect is not None:
            assert expect in r.text, path
    return out


def report(what: str, ms: list[float], target: float | None) -> None:
    verdict = "" if target is None else f" (target p95 ≤ {target:.0f} ms) [{'ok' if p95(ms) <= target else 'MISSED'}]"
    print(f"  {what}: p50 {statistics.median(ms):.1f} ms, p95 {p95(ms):.1f} ms over {len(ms)}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--per-deployment", type=int, default=100)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()

    import httpx

    from allora_gitops.api.auth import Accounts
    from benchmarks.bench_pages import signed_in
    from benchmarks.bench_results import bench_database
    from tests.fixtures.platform import start_platform, stop_platform

    platform = None
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with bench_database("paging") as (records, work):
        try:
            t = time.perf_counter()
            fill(records.connection, args.deployments, 10, args.per_deployment)
            results = records.connection.execute("SELECT count(*) FROM submission_results").fetchone()[0]
            print(f"filled {args.deployments + 10:,} deployments and {results:,} results in {time.perf_counter() - t:.1f} s (not timed)")
            accounts = Accounts(records.connection)
            tokens = {user: accounts.create_token(user)[0] for user in ("big", "small")}
            big = accounts.authenticate(tokens["big"])

            # the data of `/`: the whole list as before against one page, in-process
            before, after_ = [], []
            for _ in range(3):
                t = time.perf_counter()
                n_before = len(previous_page_data(records, accounts, big))
                before.append((time.perf_counter() - t) * 1000)
            for _ in range(20):
                t = time.perf_counter()
                n_after = len(paged_page_data(records, big))
                after_.append((time.perf_counter() - t) * 1000)
            b, a = statistics.median(before), statistics.median(after_)
            print(f"data of / for big: every deployment as before ({n_before:,} rows) {b:.0f} ms; one page ({n_after} rows) {a:.1f} ms"
                  f" → {b / a:.0f}× less time (median of 3 and 20)")  # fmt: skip

            platform = start_platform(work, database_url=records.database_url, repo=work / "repo", store_url=(work / "store").as_uri(),
                                      env={"ALLORA_GITOPS_HOME": str(work / "state")})  # fmt: skip
            url = platform.url
            rng = random.Random(25)
            ids = [r[0] for r in records.connection.execute("SELECT id::text FROM deployments WHERE owner = 'big'").fetchall()]
            with closing(signed_in(url, tokens["big"])) as client:
                path, pages = "/", 0
                while pages < args.deployments // 50 // 2:  # follow the links to the middle
                    path = re.search(r'<a rel="next" href="([^"]+)"', client.get(path).text).group(1).replace("&amp;", "&")
                    pages += 1
                middle = path
                first_ms = timed(client, ["/"] * args.requests, expect="model-00049")
                middle_ms = timed(client, [middle] * args.requests, expect='rel="next"')
                detail_ms = timed(client, [f"/deployments/{rng.choice(ids)}" for _ in range(args.requests)], expect="Recent results")
            with closing(signed_in(url, tokens["small"])) as client:
                small_ms = timed(client, ["/"] * args.requests, expect=f"model-{args.deployments + 9:05d}")
            api = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {tokens['big']}"})
            with closing(api):
                link = api.get("/api/deployments").headers["link"]
                for _ in range(args.deployments // 100 // 2 - 1):
                    link = api.get(re.match(r"<([^>]+)>", link).group(1)).headers["link"]
                api_middle = re.match(r"<([^>]+)>", link).group(1)
                api_first_ms = timed(api, ["/api/deployments"] * (args.requests // 2))
                api_middle_ms = timed(api, [api_middle] * (args.requests // 2))

            status_ms = bench_status(records.database_url, rng, args.requests // 4, args.deployments)
            print(f"{args.deployments + 10:,} deployments, {results:,} results; client-measured on loopback:")
            report(f"GET / first page (big: {args.deployments:,} visible)", first_ms, 150)
            report(f"GET {middle[:40]}… middle page", middle_ms, 150)
            report("GET / (small: 10 of all, visibility in SQL)", small_ms, 150)
            report("GET /api/deployments first page (100)", api_first_ms, 150)
            report("GET /api/deployments middle page", api_middle_ms, 150)
            report("GET /deployments/{id} (random)", detail_ms, 100)
            report("allora-gitops status NAME (in-process)", status_ms, 200)
            print(f"load average at end {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min) on {os.cpu_count()} cores")
        finally:
            if platform is not None:
                stop_platform(platform)


def bench_status(database_url: str, rng, count: int, deployments: int) -> list[float]:
    """``allora-gitops status model-NNNNN --database-url …`` through the CLI's own entry (run_app), output discarded."""
    import contextlib
    import io

    from allora_gitops.cli import gitops
    from allora_gitops.cli.app import run_app

    out = []
    for i in range(count + 1):
        args = ["status", f"model-{rng.randrange(deployments):05d}", "--database-url", database_url]
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            code = run_app(gitops.app, args)
        assert code == 0 and "lifecycle:" in buf.getvalue(), buf.getvalue()[:300]
        if i:  # the first imports the command's modules
            out.append((time.perf_counter() - t) * 1000)
    return out


if __name__ == "__main__":
    main()
