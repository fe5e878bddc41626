"""validate, build, push and ``run DIR`` try exactly the files the archive will hold; one import diagnosis for both.

The issue's bundles: an artifact in ``.allorabundleignore`` that the code loads at import (validate and
build passed, push made a review branch, only the image's smoke test caught it), and a wrong module path
that ``run`` answered with "add btc-price-predictor to requirements.txt".
"""

from __future__ import annotations

import http.server
import pickle
import threading
from pathlib import Path

import pytest

from tests.fixtures.runtime import make_bundle

LOADS_AT_IMPORT = """\
import pickle
from pathlib import Path

MODEL = pickle.loads(Path("artifacts/model.pkl").read_bytes())


def run(nonce):
    return float(MODEL["w"] * nonce)
"""


@pytest.fixture
def ignored_artifact(tmp_path) -> Path:
    bundle = make_bundle(tmp_path / "btc", LOADS_AT_IMPORT, name="btc")
    (bundle / "artifacts" / "model.pkl").write_bytes(pickle.dumps({"w": 0.5}))
    (bundle / ".allorabundleignore").write_text("artifacts/model.pkl\n")
    return bundle


def test_the_bundle_runs_when_the_artifact_ships(cli, ignored_artifact):
    """The control: the same code with the artifact shipped is valid and predicts."""
    (ignored_artifact / ".allorabundleignore").unlink()
    assert cli("bundle", "validate", ignored_artifact).code == 0
    result = cli("bundle", "run", ignored_artifact, "--here", "-n", "4")
    assert (result.code, result.out) == (0, "4 → 2.0 (" + result.out.split("(", 1)[1]), result.err


def test_validate_names_the_excluded_file_the_import_needs(cli, ignored_artifact):
    result = cli("bundle", "validate", ignored_artifact)
    assert result.code == 1
    assert (f"{ignored_artifact}/src/demo/runner.py:4: error: artifacts/model.pkl is excluded from the archive by the "
            "ignore rules (.allorabundleignore or the defaults), but importing src.demo.runner opens it; ship it "
            "(`run` and the image would not have it)") in result.out.splitlines()
    assert "✗ entrypoint module found, imports, and its function takes the nonce" in result.out
    assert (ignored_artifact / "artifacts" / "model.pkl").is_file()  # the user's file is untouched


def test_build_writes_nothing(cli, ignored_artifact):
    result = cli("bundle", "build", ignored_artifact)
    assert result.code == 1
    assert "artifacts/model.pkl is excluded from the archive" in result.err
    assert "nothing was built" in result.err
    assert not (ignored_artifact / "dist").exists()


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.seen.append(f"GET {self.path}")
        self.send_response(500)
        self.end_headers()

    do_POST = do_PUT = do_GET

    def log_message(self, *args):
        pass


def test_push_refuses_before_anything_reaches_the_platform(cli, ignored_artifact, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("ALLORA_PLATFORM_TOKEN", "test-token")
        result = cli("bundle", "push", ignored_artifact, "--deploy", "--platform", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert result.code == 1
    assert "artifacts/model.pkl is excluded from the archive by the ignore rules" in result.err
    assert _Recorder.seen == []


def test_run_dir_runs_the_shipped_files(cli, ignored_artifact):
    result = cli("bundle", "run", ignored_artifact, "--here")
    assert result.code == 1
    first = result.err.splitlines()[0]
    assert first.startswith("error: importing src.demo.runner raised FileNotFoundError: "), first
    assert first.endswith("; artifacts/model.pkl is excluded from the archive by the ignore rules (.allorabundleignore or "
                          "the defaults), but importing src.demo.runner opens it; ship it (`run` and the image would not have it)")
    # the user's paths, not the scratch copy's
    assert result.err.splitlines()[1] == f"  at {ignored_artifact.resolve()}/src/demo/runner.py:4"
    assert "allora-shipped-" not in result.err


def test_a_module_imported_only_at_run_time_that_is_excluded_is_named(cli, tmp_path):
    """The static import scan cannot see importlib.import_module("src.demo." + name); the probe on the shipped files can."""
    runner = "import importlib\n\nPLUGIN = importlib.import_module('src.demo.' + 'plugin')\n\n\ndef run(nonce):\n    return PLUGIN.W\n"
    bundle = make_bundle(tmp_path / "b", runner)
    (bundle / "src" / "demo" / "plugin.py").write_text("W = 1.0\n")
    (bundle / ".allorabundleignore").write_text("plugin.py\n")
    result = cli("bundle", "validate", bundle)
    assert result.code == 1
    assert (f"{bundle}/src/demo/runner.py:3: error: src/demo/plugin.py is excluded from the archive by the ignore rules "
            "(.allorabundleignore or the defaults), but importing src.demo.runner needs it; ship it "
            "(`run` and the image would not have it)") in result.out.splitlines()


# --- one diagnosis: a wrong module path ----------------------------------------------------------


@pytest.mark.parametrize("module, meant", [
    ("btc_price_predictor.runner", "src.btc_price_predictor.runner"),  # src. left out
    ("src.btc_price_predictor.runer", "src.btc_price_predictor.runner"),  # a typo in the last part
    ("src.btc_price_predicter.runner", "src.btc_price_predictor.runner"),  # a typo in a package
    ("btc_price_predictor.runer", "src.btc_price_predictor.runner"),  # both
])
def test_a_wrong_module_path_gets_did_you_mean_from_run_and_validate(cli, tmp_path, module, meant):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n", module="src.btc_price_predictor.runner")
    manifest = bundle / "model.yaml"
    manifest.write_text(manifest.read_text().replace('module: "src.btc_price_predictor.runner"', f'module: "{module}"'))
    base = module.replace(".", "/")
    expected = (f"{bundle}/model.yaml:8:11: error: module '{module}' not found: expected {base}.py or {base}/__init__.py; "
                f"did you mean {meant}?")
    run = cli("bundle", "run", bundle, "--here")
    assert run.code == 1
    assert run.err.splitlines() == [expected]
    assert "requirements.txt" not in run.err
    validate = cli("bundle", "validate", bundle)
    assert expected in validate.out.splitlines()


def test_a_wrong_module_path_is_refused_before_an_environment_is_built(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "state"))
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n", module="src.demo.runner",
                         requirements="numpy==2.4.6\n")
    manifest = bundle / "model.yaml"
    manifest.write_text(manifest.read_text().replace('module: "src.demo.runner"', 'module: "demo.runner"'))
    result = cli("bundle", "run", bundle)
    assert result.code == 1 and result.err.rstrip().endswith("did you mean src.demo.runner?"), result.err
    assert not (tmp_path / "state" / "runtimes").exists()


def test_a_missing_bundle_module_gets_the_same_words_from_run_and_validate(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", "from src.demo.featurs import W\n\n\ndef run(nonce):\n    return W\n")
    (bundle / "src" / "demo" / "features.py").write_text("W = 1.0\n")
    words = "no module named 'src.demo.featurs' in the bundle (src/demo/featurs.py does not exist; did you mean src.demo.features?)"
    run = cli("bundle", "run", bundle, "--here")
    assert run.err.splitlines()[0].endswith("; " + words), run.err
    validate = cli("bundle", "validate", bundle)
    assert f"{bundle}/src/demo/runner.py:1: error: importing src.demo.runner failed: {words}" in validate.out.splitlines()


# --- the checklist says what happened -------------------------------------------------------------


def test_the_checklist_says_not_imported_when_a_package_is_not_installed_here(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", "import allora_test_not_installed\n\n\ndef run(nonce):\n    return 1.0\n",
                         requirements="allora-test-not-installed==1.0.0\n")
    result = cli("bundle", "validate", bundle, "--json")
    import json

    assert json.loads(result.out)["imported"] is False
    result = cli("bundle", "validate", bundle)
    assert result.code == 0
    out = result.out.splitlines()
    assert ("! entrypoint module found, not imported (a package it imports is not installed here); "
            "its function's signature checked from source") in out
    assert not any(line.startswith("✓ entrypoint") for line in out)


# --- the staged copy --------------------------------------------------------------------------------


def test_the_staged_copy_holds_what_the_archive_holds_as_hard_links(tmp_path, ignored_artifact):
    from allora_gitops.bundle.archive import build_archive, inspect_archive
    from allora_gitops.bundle.ignore import walk_bundle
    from allora_gitops.bundle.stage import StagedBundle

    (ignored_artifact / "artifacts" / "scale.json").write_text("2")
    (ignored_artifact / "src" / "demo" / "__pycache__").mkdir()
    (ignored_artifact / "src" / "demo" / "__pycache__" / "runner.cpython-311.pyc").write_bytes(b"\0")
    archived = {f.path for f in inspect_archive(build_archive(ignored_artifact, tmp_path / "out").path).files}
    with StagedBundle(walk_bundle(ignored_artifact)) as staged:
        laid_out = {p.relative_to(staged.path).as_posix() for p in staged.path.rglob("*") if p.is_file()}
        assert staged.linked
        runner = staged.path / "src" / "demo" / "runner.py"
        assert runner.stat().st_ino == (ignored_artifact / "src" / "demo" / "runner.py").stat().st_ino
        base = staged.path
    assert laid_out == archived - {".allora-manifest.json"}
    assert "artifacts/model.pkl" not in laid_out and "artifacts/scale.json" in laid_out
    assert not base.exists()  # removed on leaving
    assert (ignored_artifact / "artifacts" / "model.pkl").is_file()


def test_the_staged_copy_is_copied_where_no_scratch_directory_can_link(ignored_artifact):
    from allora_gitops.bundle.ignore import walk_bundle
    from allora_gitops.bundle.stage import StagedBundle

    with StagedBundle(walk_bundle(ignored_artifact), scratch_dirs=[]) as staged:
        assert not staged.linked
        runner = staged.path / "src" / "demo" / "runner.py"
        assert runner.read_text() == LOADS_AT_IMPORT
        assert runner.stat().st_ino != (ignored_artifact / "src" / "demo" / "runner.py").stat().st_ino
