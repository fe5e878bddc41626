"""build_archive / inspect_archive / resolve_source: reproducible archives, safe inspection."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from allora_gitops import constants as C
from allora_gitops.bundle.archive import build_archive, inspect_archive
from allora_gitops.bundle.source import resolve_source
from allora_gitops.errors import ArchiveError, BundleError
from tests.conftest import EXAMPLES

EXAMPLE = EXAMPLES / "linear-forecaster"


@pytest.fixture
def bundle(tmp_path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, dest)
    return dest


def members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getmembers()


def test_archive_layout_is_normalised(bundle, tmp_path):
    (bundle / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(bundle / "run.sh", 0o700)
    os.chmod(bundle / "README.md", 0o600)
    built = build_archive(bundle, tmp_path / "out")

    assert built.path == tmp_path / "out" / "linear-forecaster-1.0.0.tar.gz"
    assert built.sha256 == hashlib.sha256(built.path.read_bytes()).hexdigest()
    assert built.size == built.path.stat().st_size
    assert (tmp_path / "out" / "linear-forecaster-1.0.0.tar.gz.sha256").read_text() == (
        f"{built.sha256}  linear-forecaster-1.0.0.tar.gz\n"
    )
    names = [m.name for m in members(built.path)]
    assert names == [
        "README.md",
        "artifacts",
        "artifacts/weights.npy",
        "model.yaml",
        "requirements.txt",
        "run.sh",
        "src",
        "src/linear_forecaster",
        "src/linear_forecaster/__init__.py",
        "src/linear_forecaster/features.py",
        "src/linear_forecaster/runner.py",
        C.ARCHIVE_MANIFEST,
    ]  # train.py is in .allorabundleignore; the manifest comes last
    for m in members(built.path):
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == C.SOURCE_DATE_EPOCH_DEFAULT
        expected = 0o755 if m.isdir() or m.name == "run.sh" else 0o644
        assert m.mode == expected, m.name
    assert built.file_count == 8  # regular files, without the manifest
    raw = built.path.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FCOMMENT/FEXTRA flags
    assert raw[4:8] == b"\0\0\0\0"  # mtime 0


def test_archive_round_trips_with_gzip_and_tar(bundle, tmp_path):
    built = build_archive(bundle, tmp_path / "out")
    assert gzip.decompress(built.path.read_bytes())[:9] == b"README.md"
    with tarfile.open(built.path, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    for rel in ("model.yaml", "artifacts/weights.npy", "src/linear_forecaster/runner.py"):
        assert (tmp_path / "x" / rel).read_bytes() == (bundle / rel).read_bytes()
    doc = json.loads((tmp_path / "x" / C.ARCHIVE_MANIFEST).read_text())
    assert doc["name"] == "linear-forecaster"
    assert doc["files"]["model.yaml"]["sha256"] == hashlib.sha256((bundle / "model.yaml").read_bytes()).hexdigest()


def test_large_file_spans_many_parallel_chunks(bundle, tmp_path):
    # 9 MB of mixed data crosses several 4 MB deflate chunks: the joined stream must still be one valid gzip member
    data = os.urandom(3 << 20) + b"a" * (3 << 20) + os.urandom(3 << 20)
    (bundle / "artifacts" / "big.bin").write_bytes(data)
    built = build_archive(bundle, tmp_path / "out")
    with tarfile.open(built.path, "r:gz") as tar:
        assert tar.extractfile("artifacts/big.bin").read() == data
    assert inspect_archive(built.path).sha256 == built.sha256


def test_builds_are_byte_identical_wherever_the_tree_lives_and_whatever_the_mtimes(bundle, tmp_path):
    other = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(bundle, other)
    past = time.time() - 10 * 86400
    for p in other.rglob("*"):
        os.utime(p, (past, past))
    a = build_archive(bundle, tmp_path / "a")
    b = build_archive(other, tmp_path / "b")
    c = build_archive(bundle, tmp_path / "c")
    assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()
    assert a.sha256 == b.sha256 == c.sha256


def test_source_date_epoch_sets_the_mtime(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    built = build_archive(bundle, tmp_path / "env")
    assert {m.mtime for m in members(built.path)} == {1700000000}
    explicit = build_archive(bundle, tmp_path / "arg", source_date_epoch=1600000000)
    assert {m.mtime for m in members(explicit.path)} == {1600000000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BundleError, match="SOURCE_DATE_EPOCH must be an integer"):
        build_archive(bundle, tmp_path / "bad")


def test_default_excludes_and_ignore_file(bundle, tmp_path):
    junk = [
        ".git/config", ".gitignore", "src/linear_forecaster/__pycache__/runner.cpython-311.pyc",
        "src/linear_forecaster/old.pyc", "deep/x.pyo", ".pytest_cache/v", ".mypy_cache/v", ".tox/v", ".venv/bin/python",
        "venv/lib/x.py", ".env", "dist/old.tar.gz", ".DS_Store", "src/.DS_Store", "notebooks/explore.ipynb", "train.py",
        "scratch/keep.txt", "scratch/drop.log",
    ]
    for rel in junk:
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text("x")
    (bundle / "src/linear_forecaster/dist").mkdir()
    (bundle / "src/linear_forecaster/dist/data.txt").write_text("nested dist/ ships: only the top-level dist/ is output")
    (bundle / C.IGNORE_FILE).write_text("train.py\nnotebooks/\nscratch/*\n!scratch/keep.txt\n")
    built = build_archive(bundle, None)
    assert built.path == bundle / "dist" / "linear-forecaster-1.0.0.tar.gz"
    names = {m.name for m in members(built.path)}
    assert "scratch/keep.txt" in names
    assert "src/linear_forecaster/dist/data.txt" in names
    for rel in junk:
        if rel != "scratch/keep.txt":
            assert rel not in names, rel
    assert C.IGNORE_FILE not in names


def test_output_dir_inside_the_bundle_is_never_archived(bundle):
    first = build_archive(bundle, bundle / "out")
    second = build_archive(bundle, bundle / "out")
    assert first.sha256 == second.sha256
    assert not any(m.name.startswith("out") for m in members(second.path))
    same_dir = build_archive(bundle, bundle)
    again = build_archive(bundle, bundle)
    assert same_dir.sha256 == again.sha256
    root_names = {m.name for m in members(again.path) if "/" not in m.name}
    assert "linear-forecaster-1.0.0.tar.gz" not in root_names
    assert "linear-forecaster-1.0.0.tar.gz.sha256" not in root_names


def test_a_failed_build_leaves_no_partial_archive(bundle, tmp_path):
    out = tmp_path / "out"
    (bundle / "artifacts" / "big.bin").write_bytes(b"\1" * (3 << 20))

    def interrupted(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_archive(bundle, out, progress=interrupted)
    assert list(out.iterdir()) == []


def test_links_and_special_files_are_refused(bundle, tmp_path):
    (bundle / "artifacts" / "link.npy").symlink_to("weights.npy")
    os.mkfifo(bundle / "pipe")
    with pytest.raises(BundleError) as info:
        build_archive(bundle, tmp_path / "out")
    assert [str(p) for p in info.value.problems] == [
        "artifacts/link.npy: error: symbolic link to 'weights.npy'; archives hold no links",
        "pipe: error: not a regular file or directory",
    ]
    assert not (tmp_path / "out" / "linear-forecaster-1.0.0.tar.gz").exists()


# --- inspect -------------------------------------------------------------------


def test_inspect_reports_what_build_wrote(bundle, tmp_path):
    built = build_archive(bundle, tmp_path / "out")
    info = inspect_archive(built.path)
    assert (info.sha256, info.size, info.file_count) == (built.sha256, built.size, built.file_count)
    assert info.manifest == built.manifest
    assert [f.path for f in info.files] == [f.path for f in built.files]
    assert info.unpacked_size == sum(f.size for f in built.files)


def _craft(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _manifest_for(files: dict[str, bytes]) -> tuple[tarfile.TarInfo, bytes]:
    doc = {"format": 1, "name": "x", "version": "1.0.0",
           "files": {k: {"sha256": hashlib.sha256(v).hexdigest(), "size": len(v)} for k, v in files.items()}}
    return _file(C.ARCHIVE_MANIFEST, json.dumps(doc).encode())


def test_inspect_detects_a_file_altered_after_build(bundle, tmp_path):
    built = build_archive(bundle, tmp_path / "out")
    entries = []
    with tarfile.open(built.path, "r:gz") as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else None
            if m.name == "src/linear_forecaster/runner.py":
                data = data.replace(b"round(", b"-round(")
                m.size = len(data)
            entries.append((m, data))
    tampered = _craft(tmp_path / "tampered.tar.gz", entries)
    with pytest.raises(ArchiveError) as info:
        inspect_archive(tampered)
    assert info.value.message == f"{tampered} does not match its manifest"
    assert [str(p) for p in info.value.problems] == [
        f"{tampered}!src/linear_forecaster/runner.py: error: sha256 does not match the archive manifest (corrupted or altered)"
    ]


def test_inspect_detects_added_and_missing_files(bundle, tmp_path):
    model = (bundle / "model.yaml").read_bytes()
    archive = _craft(tmp_path / "a.tar.gz", [
        _file("model.yaml", model), _file("extra.py", b"x = 1\n"),
        _manifest_for({"model.yaml": model, "gone.py": b""}),
    ])
    with pytest.raises(ArchiveError) as info:
        inspect_archive(archive)
    assert [str(p) for p in info.value.problems] == [
        f"{archive}!extra.py: error: file is not listed in the archive manifest",
        f"{archive}!gone.py: error: listed in the archive manifest but missing",
    ]


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda: _file("/etc/cron.d/x", b"x"), "/etc/cron.d/x: error: unsafe entry (absolute path)"),
        (lambda: _file("src/../../escape.py", b"x"), "src/../../escape.py: error: unsafe entry (path with '..')"),
        (lambda: _link("weights.npy", tarfile.SYMTYPE, "/etc/passwd"), "weights.npy: error: unsafe entry (link to '/etc/passwd')"),
        (lambda: _link("hard", tarfile.LNKTYPE, "model.yaml"), "hard: error: unsafe entry (link to 'model.yaml')"),
        (lambda: _link("dev", tarfile.CHRTYPE, ""), "dev: error: unsafe entry (device or special file)"),
        (lambda: _link("fifo", tarfile.FIFOTYPE, ""), "fifo: error: unsafe entry (device or special file)"),
    ],
)
def test_inspect_refuses_unsafe_entries_without_extracting(tmp_path, bundle, make, problem):
    model = (bundle / "model.yaml").read_bytes()
    archive = _craft(tmp_path / "evil.tar.gz", [_file("model.yaml", model), make(), _manifest_for({"model.yaml": model})])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ArchiveError) as info:
        inspect_archive(archive)
    assert info.value.message == f"{archive} is unsafe or corrupt"
    assert [str(p) for p in info.value.problems] == [f"{archive}!{problem}; refusing the archive"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/etc/cron.d/x").exists()


def _link(name: str, kind: bytes, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def test_inspect_refuses_non_archives_and_foreign_archives(tmp_path, bundle):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(ArchiveError, match=r"is not a valid \.tar\.gz"):
        inspect_archive(junk)
    truncated = tmp_path / "truncated.tar.gz"
    built = build_archive(bundle, tmp_path / "out")
    truncated.write_bytes(built.path.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match=r"is not a valid \.tar\.gz"):
        inspect_archive(truncated)
    plain = _craft(tmp_path / "plain.tar.gz", [_file("model.yaml", (bundle / "model.yaml").read_bytes())])
    with pytest.raises(ArchiveError) as info:
        inspect_archive(plain)
    assert info.value.message == f"{plain} has no {C.ARCHIVE_MANIFEST}; was it made by 'allora-bundle build'?"
    with pytest.raises(ArchiveError, match="no such file"):
        inspect_archive(tmp_path / "missing.tar.gz")


def test_inspect_checks_the_model_yaml_inside(tmp_path):
    bad = b'schema_version: "0.1"\nname: Bad_Name\n'
    archive = _craft(tmp_path / "a.tar.gz", [_file("model.yaml", bad), _manifest_for({"model.yaml": bad})])
    with pytest.raises(ArchiveError) as info:
        inspect_archive(archive)
    assert info.value.message == f"{archive} holds an invalid model.yaml"
    shown = [str(p) for p in info.value.problems]
    assert f"{archive}!model.yaml:1:1: error: 'version' is required" in shown
    assert any(line.startswith(f"{archive}!model.yaml:2:7: error: name:") for line in shown)


# --- resolve_source --------------------------------------------------------------


def test_resolve_source_builds_a_directory_and_inspects_an_archive(bundle, tmp_path):
    built = resolve_source(bundle, tmp_path / "work")
    assert built.path == tmp_path / "work" / "linear-forecaster-1.0.0.tar.gz"
    again = resolve_source(built.path, tmp_path / "unused")
    assert (again.sha256, again.manifest.name, again.file_count) == (built.sha256, "linear-forecaster", built.file_count)
    assert not (tmp_path / "unused").exists()


def test_resolve_source_refuses_an_invalid_bundle_with_every_problem(bundle, tmp_path):
    (bundle / "requirements.txt").unlink()
    (bundle / ".env.local").write_text("ALLORA_MNEMONIC=x\n")
    with pytest.raises(BundleError) as info:
        resolve_source(bundle, tmp_path / "work")
    assert info.value.lines() == [
        f"{bundle}/model.yaml:17:21: error: requirements.txt not found (environment.pip_requirements); "
        "create it, empty if the model needs no packages",
        f"{bundle}/.env.local: error: environment file would ship in the bundle; delete it or add it to .allorabundleignore",
    ]
    assert not (tmp_path / "work").exists()


def test_resolve_source_refuses_other_things(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(BundleError, match="neither a bundle directory nor a .tar.gz archive"):
        resolve_source(other, tmp_path)
    with pytest.raises(BundleError, match="no such bundle directory or archive"):
        resolve_source(tmp_path / "nope", tmp_path)


def test_progress_reports_every_byte_of_file_content(bundle, tmp_path):
    seen: list[int] = []
    built = build_archive(bundle, tmp_path / "out", progress=seen.append)
    assert sum(seen) == built.unpacked_size == sum(f.size for f in built.files)


def test_an_unwritable_output_is_a_clean_error(bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BundleError, match=f"cannot create the output directory {blocker}/out"):
        build_archive(bundle, blocker / "out")
    with pytest.raises(BundleError) as err:
        build_archive(bundle, blocker)
    assert err.value.lines() == [f"error: the output directory {blocker} is a file; name a directory with -o"]
    assert blocker.read_text() == "not a directory"


def test_a_file_vanishing_during_the_build_leaves_nothing(bundle, tmp_path):
    from allora_gitops.bundle.ignore import walk_bundle

    tree = walk_bundle(bundle)
    (bundle / "README.md").unlink()
    with pytest.raises(BundleError, match="cannot read README.md: No such file or directory"):
        build_archive(bundle, tmp_path / "out", tree=tree)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_write_error_in_the_writer_thread_reaches_the_caller(bundle):
    import errno

    from allora_gitops.bundle.archive import write_tar_gz
    from allora_gitops.bundle.ignore import walk_bundle

    (bundle / "artifacts" / "big.bin").write_bytes(os.urandom(9 << 20))

    class DiskFull:
        written = 0

        def write(self, data: bytes) -> None:
            self.written += len(data)
            if self.written > 1 << 20:
                raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        write_tar_gz(walk_bundle(bundle), DiskFull(), name="x", version="1.0.0", mtime=0)


def test_inspect_refuses_an_archive_that_carries_secrets(bundle, tmp_path, cli):
    """An archive not vetted by validate (hand-made, or an older build) is scanned before anyone uploads it."""
    mnemonic = "abandon " * 11 + "about"  # the BIP-39 test vector: a valid checksum
    (bundle / "config").mkdir()
    (bundle / "config" / "wallet.py").write_text(f'# wallet\nMNEMONIC = "{mnemonic}"\n')
    (bundle / ".env.local").write_text("API_KEY=x\n")
    built = build_archive(bundle, tmp_path / "out")  # build_archive alone does not validate
    shown = str(built.path)
    with pytest.raises(ArchiveError) as err:
        inspect_archive(built.path)
    assert err.value.lines() == [
        f"error: {shown} holds secrets; refusing the archive",
        f"{shown}!.env.local: error: environment file would ship in the bundle; delete it or add it to .allorabundleignore",
        f"{shown}!config/wallet.py:2:13: error: BIP-39 mnemonic phrase; keep the wallet out of the bundle "
        "(the platform passes it as a Secret)",
    ]
    assert mnemonic not in "\n".join(err.value.lines())
    res = cli("bundle", "inspect", built.path)
    assert res.code == 1 and res.lines[0] == f"error: {shown} holds secrets; refusing the archive"


@pytest.mark.parametrize("second", ["./src/m/runner.py", "src//m/runner.py", "src/./m/runner.py"])
def test_inspect_refuses_two_entries_for_the_same_file(tmp_path, second):
    data = b"def run(nonce):\n    return 1.0\n"
    archive = _craft(tmp_path / "dup.tar.gz", [_file("src/m/runner.py", data), _file(second, b"import os\n"),
                                               _manifest_for({"src/m/runner.py": data})])
    with pytest.raises(ArchiveError) as caught:
        inspect_archive(archive)
    assert [str(p) for p in caught.value.problems] == [
        f"{archive}!src/m/runner.py: error: duplicate entry ({second!r} names the same file as an earlier entry)"
    ]


def test_inspect_refuses_a_name_that_is_not_utf8_and_prints_it_escaped(tmp_path, cli):
    archive = tmp_path / "latin1.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("caf\xe9.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    result = cli("bundle", "inspect", archive)
    assert result.code == 1
    assert f"{archive}!caf\\xe9.txt: error: unsafe entry (name is not valid UTF-8); refusing the archive" in result.err.splitlines()
    assert "Traceback" not in result.err
