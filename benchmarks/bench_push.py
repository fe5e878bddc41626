#!/usr/bin/env python3
"""`allora-bundle push --deploy` of a 146 MB archive through the platform API vs `allora-gitops publish` of it.

Target (issue 14): push ≤ 1.3× publish, on the same machine, the same embedded PostgreSQL, the same
file store and the same bare repository. Both start from a built archive (not timed) of a new version each
run, so every run uploads, inspects, stores, records, renders, commits and pushes. The server's peak RSS is
sampled during the pushes.

    python benchmarks/bench_push.py [--runs 3] [--weights-mb 150]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_archives(work: Path, weights_mb: int, versions: list[str], name: str) -> list[Path]:
    from allora_gitops.bundle.archive import build_archive

    src = work / f"src-{name}"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_bundle.py"), str(src), "--weights-mb", str(weights_mb)],
                   check=True, capture_output=True)  # the benchmark bundle: 146 MB archive with the defaults
    text = (src / "model.yaml").read_text()
    out = []
    for v in versions:
        t = re.sub(r"^version: .*$", f'version: "{v}"', text, flags=re.M)
        (src / "model.yaml").write_text(re.sub(r"^name: .*$", f'name: "{name}"', t, flags=re.M))
        out.append(build_archive(src, work / "dist").path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--weights-mb", type=int, default=150)
    args = ap.parse_args()

    import httpx
    import psutil

    work = Path(tempfile.mkdtemp(prefix="bench-push-"))
    import atexit

    atexit.register(shutil.rmtree, work, True)  # registered first, so it runs after the embedded server's own exit hook
    os.chmod(work, 0o755)  # the embedded PostgreSQL runs as its own user when we are root
    env = {**os.environ, "ALLORA_GITOPS_HOME": str(work / "state"), "PYTHONPATH": str(ROOT),
           "ALLORA_STORE_URL": (work / "objects").as_uri()}  # fmt: skip
    env.pop("ALLORA_DATABASE_URL", None)
    os.environ.update({"ALLORA_GITOPS_HOME": env["ALLORA_GITOPS_HOME"]})
    server = None
    try:
        from allora_gitops.api.auth import open_accounts
        from allora_gitops.db.embedded import embedded_database_url
        from allora_gitops.gitops.scaffold import RepoSettings, init_repo

        from allora_gitops.db.migrate import MigrationRunner

        env["ALLORA_DATABASE_URL"] = db = embedded_database_url()
        MigrationRunner(db).upgrade()
        repo = work / "deployments.git"
        init_repo(repo, RepoSettings(repo_url="https://git.example.com/p/d.git"), bare=True)
        versions = [f"1.0.{i}" for i in range(args.runs)]
        pushed = make_archives(work, args.weights_mb, versions, "bench-push")
        published = make_archives(work, args.weights_mb, versions, "bench-publish")
        print(f"archive: {pushed[0].stat().st_size / (1 << 20):.0f} MB")
        accounts, conn = open_accounts(db)
        with conn:
            token, _ = accounts.create_token("bench")
            accounts.assign_wallet("bench", "bench-wallet")

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "allora_gitops.cli.gitops", "serve", "--port", str(port), "--repo", str(repo)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        peak = [0]
        stop = threading.Event()

        def sample():
            proc = psutil.Process(server.pid)
            while not stop.wait(0.02):
                peak[0] = max(peak[0], proc.memory_info().rss)

        threading.Thread(target=sample, daemon=True).start()
        push_env = {**env, "ALLORA_PLATFORM_TOKEN": token}
        push_times, publish_times = [], []
        for a, b in zip(pushed, published):  # alternate, so drift on a shared machine hits both alike
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "allora_gitops.cli.bundle", "push", str(a), "--deploy", "--wallet", "bench-wallet",
                            "--platform", url], env=push_env, check=True, capture_output=True)  # fmt: skip
            push_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "allora_gitops.cli.gitops", "publish", str(b), "--repo", str(repo), "--network", "testnet",
                            "--wallet-secret", "bench-wallet"], env=env, check=True, capture_output=True)  # fmt: skip
            publish_times.append(time.perf_counter() - t)
        stop.set()
        p, q = statistics.median(push_times), statistics.median(publish_times)
        print(f"allora-bundle push --deploy: median {p:.2f} s  {[round(x, 2) for x in push_times]}")
        print(f"allora-gitops publish:       median {q:.2f} s  {[round(x, 2) for x in publish_times]}")
        print(f"ratio push/publish: {p / q:.2f}x (target <= 1.3x)")
        print(f"server peak RSS during the pushes: {peak[0] >> 20} MB")
        return 0 if p / q <= 1.3 else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
