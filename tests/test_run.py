"""``allora-bundle run``: local predictions through bootstrap.pyz --dry-run, in the current interpreter or a cached virtualenv."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.fixtures.runtime import make_bundle

LINE = re.compile(r"^(?P<nonce>\d+) → (?P<value>.+) \((?P<latency>\d+\.\d) ms\)$")

FORTY_TWO = """
def run(nonce: int) -> float:
    return 42.0
"""


def parse_lines(out: str) -> list[tuple[int, str]]:
    found = []
    for line in out.splitlines():
        match = LINE.match(line)
        assert match, f"unexpected output line: {line!r}"
        found.append((int(match["nonce"]), match["value"]))
    return found


def test_run_here_prints_one_line_per_nonce(cli, tmp_path):
    bundle = make_bundle(tmp_path / "hello", FORTY_TWO, name="hello")
    result = cli("bundle", "run", bundle, "--here", "--nonce", "1000", "--nonce", "1001")
    assert result.code == 0, result.err
    assert parse_lines(result.out) == [(1000, "42.0"), (1001, "42.0")]


def test_run_defaults_to_the_sample_nonce_and_the_current_directory(cli, tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "hello", FORTY_TWO, name="hello")
    monkeypatch.chdir(bundle)
    result = cli("bundle", "run", "--here")
    assert result.code == 0, result.err
    assert parse_lines(result.out) == [(1000, "42.0")]


def test_an_invalid_prediction_exits_1_and_says_why(cli, tmp_path):
    runner = """
    def run(nonce):
        print("computing", nonce)
        return None if nonce == 2 else {"y": 1.5, "z": "2"}
    """
    bundle = make_bundle(tmp_path / "b", runner)
    result = cli("bundle", "run", bundle, "--here", "-n", "1", "-n", "2", "-n", "3")
    assert result.code == 1
    lines = result.out.splitlines()
    assert re.fullmatch(r"1 → y=1\.5, z=2 \(\d+\.\d ms\)", lines[0])
    assert re.fullmatch(r"2 → invalid: the prediction is None; return a number \(\d+\.\d ms\)", lines[1])
    assert re.fullmatch(r"3 → y=1\.5, z=2 \(\d+\.\d ms\)", lines[2])
    assert result.err.splitlines() == ["computing 1", "computing 2", "computing 3"]  # the model's prints, on stderr


def test_timeout_option_bounds_each_call(cli, tmp_path):
    runner = """
    import time

    def run(nonce):
        if nonce == 1:
            time.sleep(30)
        return 1.0
    """
    bundle = make_bundle(tmp_path / "b", runner, max_seconds=60)
    started = time.monotonic()
    result = cli("bundle", "run", bundle, "--here", "-n", "1", "-n", "2", "--timeout", "0.5")
    assert time.monotonic() - started < 15
    assert result.code == 1
    first, second = result.out.splitlines()
    assert re.fullmatch(r"1 → invalid: run\(\) did not return within 0\.5 s \(\d+\.\d ms\)", first)
    assert re.fullmatch(r"2 → 1\.0 \(\d+\.\d ms\)", second)


def test_json_output_is_one_document(cli, tmp_path):
    bundle = make_bundle(tmp_path / "hello", FORTY_TWO, name="hello")
    result = cli("bundle", "run", bundle, "--here", "--json", "-n", "5")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["bundle"] == "hello" and document["version"] == "0.1.0"
    assert document["ok"] is True and document["environment"] == "here"
    [prediction] = document["predictions"]
    assert (prediction["nonce"], prediction["ok"], prediction["value"]) == (5, True, 42.0)
    assert prediction["latency_ms"] >= 0


def test_import_errors_are_reported_as_errors(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", "import numpy_that_does_not_exist\n")
    result = cli("bundle", "run", bundle, "--here")
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines()[0] == (
        "error: cannot import src.demo.runner: a module it imports is missing (No module named 'numpy_that_does_not_exist'); "
        "no module named 'numpy_that_does_not_exist', and requirements.txt lists no packages; "
        "add numpy-that-does-not-exist to requirements.txt"  # validate's words: one diagnosis
    )


def test_manifest_errors_point_at_the_line(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", FORTY_TWO)
    manifest = bundle / "model.yaml"
    manifest.write_text(manifest.read_text().replace('fee_tier: "STANDARD"', 'fee_tier: "FAST"'))
    result = cli("bundle", "run", bundle, "--here")
    assert result.code == 1
    assert re.search(r"model\.yaml:\d+:\d+: error: allora\.fee_tier: ", result.err), result.err


def test_the_example_bundle_runs_here(cli):
    result = cli("bundle", "run", EXAMPLES / "linear-forecaster", "--here", "-n", "1000", "-n", "123456")
    assert result.code == 0, result.err
    assert parse_lines(result.out) == [(1000, "106.11121"), (123456, "99.278271")]


def test_environment_key_follows_requirements_and_interpreter(tmp_path):
    from allora_gitops.runner.environment import EnvironmentSpec

    base = EnvironmentSpec(requirements="numpy==2.4.6\n", requirements_dir=tmp_path)
    assert base.key() == EnvironmentSpec(requirements="numpy==2.4.6\n", requirements_dir=tmp_path / "elsewhere").key()
    assert base.key() != EnvironmentSpec(requirements="numpy==2.4.5\n", requirements_dir=tmp_path).key()
    assert base.key() != EnvironmentSpec(requirements="numpy==2.4.6\n", requirements_dir=tmp_path, constraints="x==1").key()
    assert base.key() != EnvironmentSpec(
        requirements="numpy==2.4.6\n", requirements_dir=tmp_path, runtime_requirements=("PyYAML==6.0.3",)
    ).key()


def test_init_bundle_prints_42(cli, tmp_path):
    """A fresh `allora-bundle init` bundle predicts 42.0 (its template's constant)."""
    created = cli("bundle", "init", "fresh-model", "--dir", tmp_path / "fresh-model")
    assert created.code == 0, created.err
    result = cli("bundle", "run", tmp_path / "fresh-model", "--here", "-n", "1000")
    assert result.code == 0, result.err
    assert parse_lines(result.out) == [(1000, "42.0")]


@pytest.mark.slow
def test_isolated_environment_is_built_once_then_reused(cli_proc, tmp_path):
    """The default path: a virtualenv from the bundle's requirements (numpy here), cached under the state directory."""
    env = {"ALLORA_GITOPS_HOME": str(tmp_path / "state")}
    example = EXAMPLES / "linear-forecaster"
    first = cli_proc("bundle", "run", example, "-n", "1000", env=env, timeout=900)
    assert first.code == 0, first.err
    assert parse_lines(first.out) == [(1000, "106.11121")]
    assert "creating the run environment" in first.err
    [environment] = [p for p in (tmp_path / "state" / "runtimes").iterdir() if p.is_dir()]
    assert (environment / ".allora-ready.json").is_file()
    site = list(environment.glob("lib/python3*/site-packages"))[0]
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"numpy", "pyyaml", "prometheus_client"} <= installed
    assert "allora_sdk" not in installed  # dry-run never imports the SDK: local environments stay light

    started = time.monotonic()
    second = cli_proc("bundle", "run", example, "-n", "123456", "--json", env=env)
    took = time.monotonic() - started
    assert second.code == 0, second.err
    assert "creating the run environment" not in second.err
    document = json.loads(second.out)
    assert document["environment"] == str(environment)
    assert Path(document["python"]) == environment / "bin" / "python"
    assert document["predictions"][0]["value"] == 99.278271
    assert took < 20  # no pip: CLI start + interpreter + numpy import


@pytest.mark.slow
def test_a_failing_install_is_reported_and_leaves_no_half_environment(cli_proc, tmp_path):
    bundle = make_bundle(tmp_path / "b", FORTY_TWO, requirements="allora-gitops-no-such-package==0.0.1\n")
    state = tmp_path / "state"
    result = cli_proc("bundle", "run", bundle, env={"ALLORA_GITOPS_HOME": str(state)}, timeout=600)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith("creating the run environment ")
    assert lines[1] == "error: installing the bundle's requirements failed (exit 1):"
    # uv's words (the default installer where uv is installed, as here)
    assert any("allora-gitops-no-such-package was not found in the package registry" in line for line in lines[2:]), lines
    assert [p.suffix for p in (state / "runtimes").iterdir()] == [".lock"]


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_environment_is_built_with_uv_and_with_pip_where_uv_cannot_serve(cli_proc, tmp_path, installer):
    """uv by default; ALLORA_GITOPS_INSTALLER=pip (or no uv at all) builds it with pip. Same key, same contents."""
    from allora_gitops.runner.environment import find_uv

    assert find_uv() is not None  # the test environment installs uv (the "fast" extra)
    state = tmp_path / "state"
    bundle = make_bundle(tmp_path / "b", "import six\n\n\ndef run(nonce):\n    return float(six.PY3)\n",
                         requirements="six==1.17.0\n")
    result = cli_proc("bundle", "run", bundle, "-n", "3",
                      env={"ALLORA_GITOPS_HOME": str(state), "ALLORA_GITOPS_INSTALLER": installer}, timeout=600)
    assert result.code == 0, result.err
    assert parse_lines(result.out) == [(3, "1.0")]
    [environment] = [p for p in (state / "runtimes").iterdir() if p.is_dir()]
    assert json.loads((environment / ".allora-ready.json").read_text())["installer"] == installer
    site = next(environment.glob("lib/python3*/site-packages"))
    assert {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")} >= {"six", "pyyaml", "prometheus_client"}


def test_run_archive_predicts_what_run_dir_predicts(cli, tmp_path):
    """Before, `run bundle.tar.gz` failed with "Not a directory"."""
    from allora_gitops.bundle.archive import build_archive

    runner = "import json, pathlib\n\ndef run(nonce):\n    return nonce * json.loads(pathlib.Path('artifacts/w.json').read_text())['w']\n"
    bundle = make_bundle(tmp_path / "b", runner)
    (bundle / "artifacts" / "w.json").write_text('{"w": 0.5}')
    built = build_archive(bundle, tmp_path / "out")
    from_dir = cli("bundle", "run", bundle, "--here", "-n", "7")
    from_archive = cli("bundle", "run", built.path, "--here", "-n", "7")
    assert (from_dir.code, from_archive.code) == (0, 0), from_archive.err
    assert parse_lines(from_archive.out) == parse_lines(from_dir.out) == [(7, "3.5")]
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(built.path.read_bytes()[:-100])
    result = cli("bundle", "run", corrupt, "--here")
    assert result.code == 1 and result.err.startswith(f"error: {corrupt} is not a valid .tar.gz"), result.err


@pytest.mark.parametrize("pickled, expected", [
    (b"csklearn.linear_model\nLinearRegression\n.",
     "No module named 'sklearn'); no module named 'sklearn', and requirements.txt lists no packages; "
     "add scikit-learn to requirements.txt (needed while loading artifacts/model.pkl)"),
    (b"c_loss\nCyHalfSquaredError\n.",
     "No module named '_loss'); this looks like a version mismatch while loading artifacts/model.pkl: the artifact was "
     "saved with another version of a package than the one installed; pin in requirements.txt the version it was saved with"),
])
def test_a_missing_module_while_unpickling_names_the_artifact_and_the_fix(cli, tmp_path, pickled, expected):
    runner = "import pickle\n\nMODEL = pickle.load(open('artifacts/model.pkl', 'rb'))\n\n\ndef run(nonce):\n    return 1.0\n"
    bundle = make_bundle(tmp_path / "b", runner)
    (bundle / "artifacts" / "model.pkl").write_bytes(pickled)
    result = cli("bundle", "run", bundle, "--here")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].endswith(expected), lines[0]
    assert lines[1] == f"  at {bundle.resolve()}/src/demo/runner.py:3"  # the user's line, not pickle's


def test_run_json_prints_one_document_when_the_bundle_does_not_load(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", "import numpy_that_does_not_exist\n")
    result = cli("bundle", "run", bundle, "--here", "--json")
    assert result.code == 1
    document = json.loads(result.out)
    assert document["ok"] is False
    assert document["error"]["message"].startswith("cannot import src.demo.runner: a module it imports is missing")
    assert document["error"]["where"].endswith("/src/demo/runner.py:1")


def test_pip_progress_lines_are_passed_on_as_they_come():
    import sys

    from allora_gitops.runner.environment import _run

    shown: list[str] = []
    _run([sys.executable, "-c", "print('Collecting numpy==2.4.6'); print('  Downloading numpy.whl (16 MB)'); print('noise')"],
         "installing", progress=shown.append)
    assert shown == ["  Collecting numpy==2.4.6", "  Downloading numpy.whl (16 MB)"]


@pytest.mark.slow
def test_utf16_requirements_install_and_validate_then_sees_the_run_environment(cli_proc, tmp_path):
    """PowerShell's `pip freeze >` writes UTF-16 LE with a BOM: validate accepts it, so run must install from it.

    Once run has built the environment, validate's import check uses it: a module it lacks is a certain error.
    """
    from allora_gitops import constants as C

    env = {"ALLORA_GITOPS_HOME": str(tmp_path / "state")}
    # six: a package only this file brings (PyYAML the run environment installs anyway, so alone it proves nothing)
    bundle = make_bundle(tmp_path / "b", "import six\nimport yaml\n\n\ndef run(nonce):\n"
                                         "    return float(len(yaml.safe_dump([nonce])) + six.PY3)\n")
    (bundle / "requirements.txt").write_bytes(b"\xff\xfe" + f"{C.RUNTIME_PYYAML_REQUIREMENT}\r\nsix==1.17.0\r\n".encode("utf-16-le"))
    assert cli_proc("bundle", "validate", bundle, env=env).code == 0
    first = cli_proc("bundle", "run", bundle, "-n", "7", env=env, timeout=900)
    assert first.code == 0, first.err
    assert parse_lines(first.out) == [(7, "5.0")]  # len("- 7\n") + True

    runner = bundle / "src" / "demo" / "runner.py"
    runner.write_text("import boto3\n" + runner.read_text())  # installed beside the CLI, not in the bundle's environment
    result = cli_proc("bundle", "validate", bundle, env=env)
    assert result.code == 1
    assert (f"{bundle}/src/demo/runner.py:1: error: importing src.demo.runner failed: no module named 'boto3' in the run "
            "environment built from requirements.txt; add boto3 to requirements.txt") in result.out.splitlines()

    pruned = cli_proc("bundle", "run", "--prune", env=env)
    assert pruned.code == 0, pruned.err
    assert pruned.out.splitlines()[-1].startswith(f"1 cached environment removed from {tmp_path / 'state' / 'runtimes'}, ")
    assert not [p for p in (tmp_path / "state" / "runtimes").iterdir() if p.is_dir()]


def test_a_path_that_does_not_exist_is_a_usage_error(cli, tmp_path):
    result = cli("bundle", "run", tmp_path / "dist" / "gone-0.1.0.tar.gz")
    assert result.code == 2
    assert "does not exist" in result.err and "model.yaml" not in result.err


def test_a_requirement_validate_refuses_is_refused_before_pip_naming_the_users_file(cli, tmp_path, monkeypatch):
    """Not pip's error about the cached copy it installs from: the user's file and line, and no environment built."""
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "state"))
    bundle = make_bundle(tmp_path / "b", FORTY_TWO, requirements="# pins\nnumpy=>1.0\n")
    result = cli("bundle", "run", bundle)
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{bundle}/requirements.txt:2:1: error: invalid requirement 'numpy=>1.0': "
        "Expected semicolon (after name with no version specifier) or end"
    ]
    assert not (tmp_path / "state" / "runtimes").exists()
    document = json.loads(cli("bundle", "run", bundle, "--json").out)
    assert document["error"]["message"].startswith(f"{bundle}/requirements.txt:2:1: error: invalid requirement 'numpy=>1.0'")


def test_run_json_names_a_model_yaml_problem_in_its_message(cli, tmp_path):
    bundle = make_bundle(tmp_path / "b", FORTY_TWO)
    (bundle / "model.yaml").write_text((bundle / "model.yaml").read_text().replace('fee_tier: "STANDARD"', 'fee_tier: "FAST"'))
    result = cli("bundle", "run", bundle, "--here", "--json")
    assert result.code == 1
    document = json.loads(result.out)
    assert re.match(r".*model\.yaml:\d+:\d+: error: allora\.fee_tier: ", document["error"]["message"]), document


def test_prune_json_is_one_document(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "state"))
    half = tmp_path / "state" / "runtimes" / "0123456789abcdef01234567"
    half.mkdir(parents=True)  # an environment whose build never finished
    (half / "junk").write_bytes(b"x" * 1000)
    result = cli("bundle", "run", "--prune", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert [(Path(e["path"]).name, e["complete"]) for e in document["removed"]] == [(half.name, False)]
    assert document["freed_bytes"] >= 1000 and not half.exists()
