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
        "error: cannot import src.demo.runner: a module it imports is missing (No module named 'numpy_that_does_not_exist')"
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
    assert any("No matching distribution found for allora-gitops-no-such-package==0.0.1" in line for line in lines[2:])
    assert [p.suffix for p in (state / "runtimes").iterdir()] == [".lock"]
