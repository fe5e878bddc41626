#!/usr/bin/env python3
"""Upload benchmark: ``S3Store.put_file`` against boto3 ``upload_file`` (default settings), same run, same server.

    python benchmarks/bench_upload.py [--archive PATH] [--rounds N]

Starts a local SeaweedFS (``weed mini``), builds the 146 MB benchmark archive from
``benchmarks/make_bundle.py`` unless ``--archive`` is given, then alternates the two
uploads (a fresh key each time, so nothing is skipped) and prints the median wall times and
their ratio. Finally it uploads the same archive again through ``put_file`` and counts the S3
requests that costs (botocore ``before-call`` events): the target is exactly one HEAD.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from allora_gitops.storage.objects import S3Store, file_sha256  # noqa: E402
from tests.fixtures.s3 import start_s3_server, stop_s3_server  # noqa: E402

MAKE_BUNDLE = Path(__file__).resolve().parent / "make_bundle.py"


def build_archive(work: Path) -> Path:
    src = work / "bundle"
    subprocess.run([sys.executable, str(MAKE_BUNDLE), str(src)], check=True, stdout=subprocess.DEVNULL)
    try:
        from allora_gitops.bundle.archive import build_archive as build  # issue 2, once on main

        return build(src, work / "dist").path
    except ImportError:
        out = work / "bench-model-1.0.0.tar.gz"
        excludes = [f"--exclude={p}" for p in (".git", ".venv", "__pycache__", "dist", ".env")]
        subprocess.run(["tar", "czf", str(out), *excludes, "-C", str(src), "."], check=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        archive = args.archive or build_archive(work)
        size = archive.stat().st_size
        sha256 = file_sha256(archive)
        (work / "weed").mkdir()
        server = start_s3_server(work / "weed")
        try:
            client = server.client()
            bucket = server.new_bucket()
            store = S3Store(bucket, "store", client=server.client())
            ours, theirs = [], []
            for i in range(args.rounds):
                t0 = time.perf_counter()
                client.upload_file(str(archive), bucket, f"boto3/{i}/bundle.tar.gz")
                theirs.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                result = store.put_file(f"round-{i}/bundle.tar.gz", archive, sha256, progress=False)
                ours.append(time.perf_counter() - t0)
                assert result.uploaded
            calls: list[str] = []
            store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
            t0 = time.perf_counter()
            again = store.put_file("round-0/bundle.tar.gz", archive, sha256, progress=False)
            repeat = time.perf_counter() - t0
        finally:
            stop_s3_server(server)

    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"archive: {size / 1e6:.1f} MB ({archive.name})")
    print(f"boto3 upload_file (defaults): median {statistics.median(theirs):.2f} s  runs {', '.join(f'{t:.2f}' for t in theirs)}")
    print(f"S3Store.put_file:             median {statistics.median(ours):.2f} s  runs {', '.join(f'{t:.2f}' for t in ours)}"
          "  (HEAD first, sha256 of the file, HEAD + checksum verification after)")
    print(f"ratio put_file / upload_file: {ratio:.2f}  (target <= 1.20)")
    print(f"repeated put_file: uploaded={again.uploaded}, {len(calls)} request(s): {', '.join(calls)}, {repeat * 1000:.0f} ms")
    sys.exit(0 if ratio <= 1.2 and calls == ["HeadObject"] and not again.uploaded else 1)


if __name__ == "__main__":
    main()
