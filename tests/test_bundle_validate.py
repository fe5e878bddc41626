"""validate_bundle: every check of PRODUCT.md, every bad input of the issue, each with file:line:col."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from allora_gitops.bundle.validate import validate_bundle
from tests.conftest import EXAMPLES

MODEL = """\
schema_version: "0.1"
name: "demo"
version: "1.0.0"
python:
  version: "3.11"
entrypoint:
  kind: "python_function"
  module: "src.demo.runner"
  function: "run"
  workdir: "."
  artifacts_dir: "artifacts"
environment:
  pip_requirements: "requirements.txt"
"""
RUNNER = "def run(nonce: int) -> float:\n    return 42.0\n"


@pytest.fixture
def make(tmp_path):
    """Write a small valid bundle, with ``files`` overriding or adding (None deletes)."""

    def _make(files: dict[str, str | bytes | None] | None = None) -> Path:
        root = tmp_path / "b"
        base: dict[str, str | bytes | None] = {
            "model.yaml": MODEL,
            "requirements.txt": "",
            "src/demo/runner.py": RUNNER,  # src/ has no __init__.py: a namespace package, as upstream
            "artifacts/.gitkeep": "",
        }
        base.update(files or {})
        for rel, text in base.items():
            if text is None:
                continue
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return root

    return _make


def lines(root: Path, strict: bool = False, **kwargs) -> list[str]:
    return [str(p) for p in validate_bundle(root, strict, display="b", **kwargs).problems]


def test_valid_bundle_with_a_namespace_package(make):
    report = validate_bundle(make(), display="b")
    assert report.problems == []
    assert report.ok
    assert report.manifest.name == "demo"
    assert not (make() / "src/demo/__pycache__").exists()  # the import check leaves no bytecode behind


def test_example_bundle_is_valid():
    report = validate_bundle(EXAMPLES / "linear-forecaster")
    assert [p for p in report.problems if p.code != "not-installed"] == []


# --- model.yaml ----------------------------------------------------------------


def test_missing_model_yaml(make):
    assert lines(make({"model.yaml": None})) == ["b/model.yaml: error: model.yaml not found"]


def test_empty_model_yaml(make):
    assert lines(make({"model.yaml": ""})) == ["b/model.yaml:1:1: error: file is empty; run 'allora-bundle init' for a template"]


def test_malformed_model_yaml_names_line_and_column(make):
    (line,) = lines(make({"model.yaml": MODEL.replace('name: "demo"', 'name: "demo')}))
    assert line.startswith("b/model.yaml:3:")
    assert ": error: invalid YAML" in line


def test_wrong_types_and_unknown_key_all_at_once(make):
    text = MODEL.replace('version: "1.0.0"', "version: 1").replace('  function: "run"', "  function: 7\n  entry: x")
    assert lines(make({"model.yaml": text})) == [
        "b/model.yaml:3:10: error: version: Input should be a valid string; write the version quoted, e.g. version: \"1.0.0\" (got 1)",
        "b/model.yaml:9:13: error: entrypoint.function: Input should be a valid string (got 7)",
        "b/model.yaml:10:3: error: unknown key 'entrypoint.entry' (typo? unknown keys are not allowed)",
    ]


@pytest.mark.parametrize("version", ["3.8", "3.14"])
def test_unsupported_python(make, version):
    text = MODEL.replace('version: "3.11"', f'version: "{version}"')
    assert lines(make({"model.yaml": text})) == [
        f"b/model.yaml:5:12: error: python.version: Python {version} is not supported; use one of 3.10, 3.11, 3.12, 3.13"
    ]


def test_unsupported_entrypoint_kind(make):
    text = MODEL.replace('kind: "python_function"', 'kind: "docker_image"')
    assert lines(make({"model.yaml": text})) == [
        "b/model.yaml:7:9: error: entrypoint.kind: Input should be 'python_function' (got 'docker_image')"
    ]


def test_file_checks_still_run_when_model_yaml_is_invalid(make):
    got = lines(make({"model.yaml": MODEL.replace('name: "demo"', 'name: "Demo"'), ".env.local": "X=1\n"}))
    assert got[0].startswith("b/model.yaml:2:7: error: name:")
    assert got[1] == "b/.env.local: error: environment file would ship in the bundle; delete it or add it to .allorabundleignore"


# --- requirements --------------------------------------------------------------


def test_missing_requirements_file(make):
    assert lines(make({"requirements.txt": None})) == [
        "b/model.yaml:13:21: error: requirements.txt not found (environment.pip_requirements); "
        "create it, empty if the model needs no packages"
    ]
    assert lines(make({"requirements.txt": None, "requirements.txt/x": ""})) == [
        "b/model.yaml:13:21: error: requirements.txt is not a file (environment.pip_requirements); "
        "create it, empty if the model needs no packages"
    ]


def test_unparseable_requirement_line(make):
    got = lines(make({"requirements.txt": "numpy==1.26.4\n\n  pandas=2.2\n"}))
    assert got == [
        "b/requirements.txt:3:3: error: invalid requirement 'pandas=2.2': "
        "Expected semicolon (after name with no version specifier) or end (= is not a valid operator. Did you mean == ?)"
    ]
    # the line is quoted as pip quotes it: the user sees what they wrote
    assert lines(make({"requirements.txt": "numpy=>1.0\n"})) == [
        "b/requirements.txt:1:1: error: invalid requirement 'numpy=>1.0': Expected semicolon (after name with no version specifier) or end"
    ]
    # a line holding a secret is never quoted
    key = "0x" + "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
    assert lines(make({"requirements.txt": f"wallet={key}\n"})) == [
        "b/requirements.txt:1:1: error: invalid requirement (not shown: it holds a secret): Expected semicolon "
        "(after name with no version specifier) or end (= is not a valid operator. Did you mean == ?)",
        "b/requirements.txt:1:8: error: 64-hex-digit string that looks like a private key; keep keys out of the bundle; "
        f"if it is a public value (an event topic hash, say), allow it: add sha256:{hashlib.sha256(key[2:].encode()).hexdigest()} "
        "to .allorasecretsignore",
    ]


def test_requirements_follow_pips_grammar(make):
    """A full-line comment ending in a backslash does not swallow the next line (pip's join_lines)."""
    text = (
        "# pinned for the demo \\\n"
        "numpy==1.26.4\n"
        "pandas==2.2.0 \\\n"
        "    --hash=sha256:" + "a" * 64 + "\n"
        'requests[socks]==2.31.0 ; python_version >= "3.8"  # trailing comment\n'
    )
    report = validate_bundle(make({"requirements.txt": text}), display="b")
    assert [str(p) for p in report.problems] == []
    from allora_gitops.bundle.requirements import parse_requirements

    reqs, _ = parse_requirements(text, "r.txt")
    assert [(r.name, r.line, r.pinned) for r in reqs] == [("numpy", 2, True), ("pandas", 3, True), ("requests", 5, True)]


def test_nested_requirement_files_are_refused_not_left_to_fail_in_the_image(make):
    got = lines(make({"requirements.txt": "-r base.txt\n--constraint c.txt\n", "base.txt": "numpy==1.26.4\n"}))
    assert got == [
        "b/requirements.txt:1:1: error: -r names another requirements file, which would be missing where the image "
        "installs this one; list its requirements here",
        "b/requirements.txt:2:1: error: --constraint names a constraints file from inside the requirements file; "
        "set environment.constraints in model.yaml instead",
    ]


def test_unpinned_requirement_warns_and_strict_makes_it_an_error(make):
    root = make({"requirements.txt": "# pinned and not\nnumpy==1.26.4  # inline comment\nrequests>=2\nscipy\n"})
    report = validate_bundle(root, display="b")
    assert report.ok
    assert [str(p) for p in report.problems] == [
        "b/requirements.txt:3:1: warning: 'requests>=2' is not pinned; use an exact version (requests==X.Y.Z) so every image build installs the same code",
        "b/requirements.txt:4:1: warning: 'scipy' is not pinned; use an exact version (scipy==X.Y.Z) so every image build installs the same code",
    ]
    strict = validate_bundle(root, True, display="b")
    assert not strict.ok
    assert [p.severity for p in strict.problems] == ["error", "error"]


def test_requirement_options(make):
    text = "numpy==1.26.4 --hash=sha256:" + "a" * 64 + "\n-e ./lib\n--extra-index-url https://pypi.example/simple\n--prefer-binary\n"
    assert lines(make({"requirements.txt": text})) == [
        "b/requirements.txt:2:1: error: editable requirements cannot be installed in an image; pin a released version",
        "b/requirements.txt:3:1: error: --extra-index-url does not belong in the requirements file; use "
        "environment.extra_index_urls in model.yaml (credentials go in build secrets)",
        "b/requirements.txt:4:1: warning: pip option --prefer-binary is passed to pip unchecked",
    ]


def test_requirement_urls_with_credentials_are_refused_without_quoting_them(make):
    text = (
        "ok @ git+ssh://git@github.com/acme/ok.git\n"  # an ssh user, not a secret
        "acme @ https://deploy:hunter2pass@pkgs.example/acme-1.0.whl\n"
        "git+https://ghp_tokenTOKENtoken@github.com/acme/private.git\n"
        "bad>=1 @ https://u:s3cr3tpw@h/x\n"  # invalid PEP 508 too: the parser's message must not quote it either
    )
    report = validate_bundle(make({"requirements.txt": text}), display="b")
    message = (
        "error: a URL with credentials (user:token@) would ship in the archive and the image; "
        "install from an index configured in a pip.conf build secret instead"
    )
    assert [str(p) for p in report.problems] == [f"b/requirements.txt:{n}:1: {message}" for n in (2, 3, 4)]
    shown = repr(report.to_dict()) if hasattr(report, "to_dict") else repr(report.problems)
    assert not any(s in shown for s in ("hunter2pass", "ghp_tokenTOKENtoken", "s3cr3tpw"))


def test_a_requirements_file_that_is_not_utf8_is_named_with_its_position(make):
    # errors="replace" used to turn the byte into U+FFFD and report a PEP 508 parse error instead
    assert lines(make({"requirements.txt": b"numpy==1.26.4\nscipy==1.1\xff\n"})) == [
        "b/requirements.txt:2:11: error: not UTF-8 text (byte 0xff; it looks like Windows-1252 / Latin-1); re-save it as UTF-8"
    ]


@pytest.mark.parametrize("codec, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                        ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_bom_marked_text_is_decoded_as_pip_and_git_do(make, codec, bom):
    """PowerShell's `pip freeze > requirements.txt` writes UTF-16 LE with a BOM; pip installs from it."""
    enc = lambda text: bom + text.encode(codec)  # noqa: E731
    root = make({
        "requirements.txt": enc("numpy\r\n"),
        "constraints.txt": enc("numpy==1.26.4\n"),
        ".allorabundleignore": enc("notes/\n"),
        "notes/secret.txt": "abandon " * 11 + "about\n",  # excluded by the ignore file, so not scanned
        "model.yaml": enc(MODEL + '  constraints: "constraints.txt"\n'),
    })
    report = validate_bundle(root, display="b")
    assert [str(p) for p in report.problems] == [
        "b/requirements.txt:1:1: warning: 'numpy' is not pinned; use an exact version (numpy==X.Y.Z) so every image build installs the same code"
    ]
    assert report.manifest.environment.constraints == "constraints.txt"


def test_utf16_without_a_bom_is_refused_naming_what_it_looks_like(make):
    got = lines(make({"requirements.txt": "numpy==1.26.4\n".encode("utf-16-le")}))
    assert got == ["b/requirements.txt:1:2: error: not UTF-8 text (byte 0x00; it looks like UTF-16 LE without a byte-order mark); re-save it as UTF-8"]


def test_a_huge_requirement_is_quoted_shortened(make):
    got = lines(make({"requirements.txt": "a" * 200_000 + "\n"}))
    assert got == [
        f"b/requirements.txt:1:1: warning: '{'a' * 79}…' is not pinned; use an exact version ({'a' * 79}…==X.Y.Z) "
        "so every image build installs the same code"
    ]


# --- entrypoint ------------------------------------------------------------------


def test_module_file_missing(make):
    assert lines(make({"src/demo/runner.py": None})) == [
        "b/model.yaml:8:11: error: module 'src.demo.runner' not found: expected src/demo/runner.py or src/demo/runner/__init__.py"
    ]


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (b"def run(nonce):\n    return 1.0\n\xff\xfe\n", 3, "(unicode error) 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte (runner.py, line 3)"),
        (b"def run(nonce):\n    return (1.0\n", 2, "'(' was never closed (runner.py, line 2)"),
    ],
)
def test_a_module_that_does_not_compile_points_at_its_own_line(make, source, line, message):
    """Not at importlib's frozen frames, which resolve into the bundle's directory."""
    assert lines(make({"src/demo/runner.py": source})) == [
        f"b/src/demo/runner.py:{line}: error: importing src.demo.runner raised SyntaxError: {message}"
    ]


def test_module_raising_on_import_names_file_and_line(make):
    code = "import os\n\nraise ValueError('no weights')\n\ndef run(nonce):\n    return 1.0\n"
    assert lines(make({"src/demo/runner.py": code})) == [
        "b/src/demo/runner.py:3: error: importing src.demo.runner raised ValueError: no weights"
    ]


def test_error_in_a_helper_module_points_at_the_helper(make):
    files = {"src/demo/runner.py": "from .helper import x\n" + RUNNER, "src/demo/helper.py": "x = 1 / 0\n"}
    assert lines(make(files)) == [
        "b/src/demo/helper.py:1: error: importing src.demo.runner raised ZeroDivisionError: division by zero"
    ]


def test_module_hanging_on_import_times_out(make):
    import time

    root = make({"src/demo/runner.py": "import time\nwhile True:\n    time.sleep(1)\n" + RUNNER})
    started = time.monotonic()
    got = lines(root, import_timeout=1.5)
    assert time.monotonic() - started < 10
    assert got == [
        "b/src/demo/runner.py: error: importing src.demo.runner did not finish within 1.5 s (a hang, or a very slow "
        "load at import); raise it with --import-timeout"
    ]


def test_module_calling_sys_exit_on_import(make):
    assert lines(make({"src/demo/runner.py": "import sys\nsys.exit(3)\n"})) == [
        "b/src/demo/runner.py:2: error: importing src.demo.runner called sys.exit(3); modules must not exit on import"
    ]


def test_module_crashing_the_interpreter(make):
    code = "import ctypes\nctypes.string_at(0)\n" + RUNNER
    assert lines(make({"src/demo/runner.py": code})) == [
        "b/src/demo/runner.py: error: the interpreter was killed by SIGSEGV while importing src.demo.runner"
    ]


def test_module_exiting_hard(make):
    code = "import os\nos._exit(5)\n"
    assert lines(make({"src/demo/runner.py": code})) == [
        "b/src/demo/runner.py: error: the interpreter exited with code 5 while importing src.demo.runner"
    ]


def test_function_missing(make):
    assert lines(make({"src/demo/runner.py": "def predict(nonce):\n    return 1.0\n"})) == [
        "b/model.yaml:9:13: error: src.demo.runner has no function 'run'"
    ]


def test_function_not_callable(make):
    assert lines(make({"src/demo/runner.py": "run = 42.0\n"})) == [
        "b/model.yaml:9:13: error: src.demo.runner.run is a float, not a function"
    ]


@pytest.mark.parametrize(
    "signature, ok",
    [
        ("nonce", True),
        ("nonce: int = 0", True),
        ("*args", True),
        ("nonce, scale=1.0", True),
        ("", False),
        ("nonce, other", False),
        ("nonce, *, key", False),
    ],
)
def test_function_arity(make, signature, ok):
    code = f"import asyncio\n\n\nasync def run({signature}):\n    return 1.0\n"
    got = lines(make({"src/demo/runner.py": code}))
    if ok:
        assert got == []
    else:
        assert got == [f"b/src/demo/runner.py:4: error: run({signature}) must take exactly one argument, the nonce: def run(nonce: int)"]


def test_missing_module_listed_in_requirements_is_a_warning_here(make):
    root = make({
        "requirements.txt": "allora-test-not-installed==1.0.0\n",
        "src/demo/runner.py": "import allora_test_not_installed\n\n\ndef run(nonce, extra):\n    return 1.0\n",
    })
    report = validate_bundle(root, display="b")
    assert [str(p) for p in report.problems] == [
        "b/src/demo/runner.py:1: warning: allora_test_not_installed is not installed here, so src.demo.runner was not "
        "imported; `allora-bundle run` checks in a real environment",
        # the function is still checked, from the source
        "b/src/demo/runner.py:4:1: error: run() must take exactly one argument, the nonce: def run(nonce: int)",
    ]
    # --strict does not fail a bundle for what this machine lacks
    strict = validate_bundle(root, True, display="b")
    assert [p.severity for p in strict.problems] == ["warning", "error"]


def test_missing_module_with_a_different_import_name(make):
    root = make({"requirements.txt": "scikit-learn==1.5.0\n", "src/demo/runner.py": "import sklearn.linear_model\n" + RUNNER})
    report = validate_bundle(root, display="b")
    if "sklearn" in sys.modules or _importable("sklearn"):
        pytest.skip("scikit-learn is installed here")
    assert [p.code for p in report.problems] == ["not-installed"]
    assert report.ok


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_a_module_no_requirement_is_known_to_provide_is_a_warning_naming_a_candidate(make):
    """Import names differ from distribution names: without the installed environment this is never certain."""
    root = make({"requirements.txt": "numpy==1.26.4\nallora-test-lib==1.0\n",
                 "src/demo/runner.py": "import allora_test_not_installed\n" + RUNNER})
    report = validate_bundle(root, display="b")
    assert report.ok
    assert [str(p) for p in report.problems] == [
        "b/src/demo/runner.py:1: warning: importing src.demo.runner failed: no module named 'allora_test_not_installed' "
        "here, and no requirement in requirements.txt is known to provide it (import and distribution names can differ; "
        "perhaps allora-test-lib provides it); if none does, add the package that provides it (`allora-bundle run` checks for certain)"
    ]


def test_an_import_of_the_cli_environment_is_an_error_with_empty_requirements(make, cli):
    """boto3 is installed beside this CLI; the bundle would not have it, so validate must not see it either."""
    import importlib.util

    assert importlib.util.find_spec("boto3") is not None  # the point of the test: it IS importable here
    root = make({"src/demo/runner.py": "import boto3\n" + RUNNER})
    result = cli("bundle", "validate", root, "--strict")
    assert result.code == 1
    assert (f"{root}/src/demo/runner.py:1: error: importing src.demo.runner failed: no module named 'boto3', and "
            "requirements.txt lists no packages; add boto3 to requirements.txt") in result.out.splitlines()


def test_every_third_party_import_is_checked_not_only_the_first(make):
    code = "import json\nimport numpy\n\ntry:\n    import ujson\nexcept ImportError:\n    ujson = None\n" \
           "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n\n\ndef run(nonce):\n    import boto3\n    return 1.0\n"
    got = lines(make({"requirements.txt": "numpy==1.26.4\n", "src/demo/runner.py": code}))
    assert [g.split(": warning: ")[0] for g in got] == ["b/src/demo/runner.py:2", "b/src/demo/runner.py:14"]
    assert got[1].startswith("b/src/demo/runner.py:14: warning: no module named 'boto3' here, and no requirement in "
                             "requirements.txt is known to provide it")


def test_a_distribution_named_unlike_its_import_is_not_an_error(make):
    root = make({"requirements.txt": "azure-storage-blob==12.19.0\n",
                 "src/demo/runner.py": "from azure.storage.blob import BlobClient\n" + RUNNER})
    report = validate_bundle(root, True, display="b")
    assert report.ok, [str(p) for p in report.problems]
    assert [p.code for p in report.problems] == ["not-installed"]


def test_missing_bundle_module_is_an_error(make):
    root = make({"src/demo/runner.py": "from .featurs import f\n" + RUNNER, "src/demo/features.py": "f = 1\n"})
    assert lines(root) == [
        "b/src/demo/runner.py:1: error: importing src.demo.runner failed: no module named 'src.demo.featurs' in the "
        "bundle (src/demo/featurs.py does not exist; did you mean src.demo.features?)"
    ]


def test_bundle_root_shadows_installed_packages_and_workdir_is_the_cwd(make):
    code = "import os\nassert os.path.isdir('artifacts'), os.getcwd()\n" + RUNNER
    assert lines(make({"src/demo/runner.py": code})) == []


def test_workdir_missing(make):
    root = make({"model.yaml": MODEL.replace('workdir: "."', 'workdir: "app"')})
    assert lines(root) == ["b/model.yaml:10:12: error: workdir 'app' is not a directory of the bundle"]


# --- artifacts, size, ignore rules ------------------------------------------------


def test_ignoring_a_module_the_entrypoint_imports_is_an_error_naming_the_file(make):
    root = make({
        "src/demo/runner.py": "from src.demo.features import scale\n" + RUNNER,
        "src/demo/features.py": "from .helpers import h\nscale = 2\n",
        "src/demo/helpers.py": "h = 1\n",
        ".allorabundleignore": "helpers.py\n",
    })
    assert lines(root) == [
        "b/src/demo/helpers.py: error: src/demo/helpers.py is imported by b/src/demo/features.py:1 but excluded from the "
        "archive by the ignore rules (.allorabundleignore or the defaults); `run` and the image would fail to import it"
    ]


def test_excluding_every_artifact_is_a_warning(make):
    root = make({"artifacts/model.pkl": b"\x80\x04N.", ".allorabundleignore": "*.pkl\n"})
    assert lines(root) == [
        "b/model.yaml:11:18: warning: every file under the artifacts directory 'artifacts' is excluded by the ignore "
        "rules (e.g. artifacts/model.pkl); the model would ship without them"
    ]


def test_artifacts_missing_is_a_warning(make):
    root = make({"artifacts/.gitkeep": None})
    assert not (root / "artifacts").exists()
    report = validate_bundle(root, display="b")
    assert report.ok
    assert [str(p) for p in report.problems] == ["b/model.yaml:11:18: warning: artifacts directory 'artifacts' does not exist"]


def test_oversize_bundle(make):
    root = make()
    with open(root / "artifacts" / "huge.bin", "wb") as fh:  # sparse: costs no disk
        fh.truncate(501 << 20)
    assert lines(root) == [
        "b: error: bundle is 501.0 MB, over the 500.0 MB limit (largest: artifacts/huge.bin (501.0 MB), "
        "model.yaml (0.0 MB), src/demo/runner.py (0.0 MB)); exclude files with .allorabundleignore"
    ]
    (root / ".allorabundleignore").write_text("*.bin\n")
    assert lines(root) == [  # the only artifact is gone: allowed, but said
        "b/model.yaml:11:18: warning: every file under the artifacts directory 'artifacts' is excluded by the ignore "
        "rules (e.g. artifacts/huge.bin); the model would ship without them"
    ]


def test_entrypoint_excluded_by_ignore_rules(make):
    root = make({".allorabundleignore": "src/\n"})
    assert lines(root) == ["b/model.yaml:8:11: error: src/demo/runner.py is excluded from the archive by the ignore rules"]


# --- secrets, links ---------------------------------------------------------------

MNEMONIC = "abandon " * 11 + "about"  # the BIP-39 test vector: a valid checksum
HEX_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBk\n-----END EC PRIVATE KEY-----\n"


def test_secrets_of_each_kind_name_file_and_line(make):
    root = make({
        ".env.production": "ALLORA_MNEMONIC=x\n",
        ".env": "ignored: excluded by default\n",
        "config/wallet.py": f'# wallet\nMNEMONIC = "{MNEMONIC}"\n',
        "src/demo/keys.py": f"\n\nKEY = '0x{HEX_KEY}'\n",
        "artifacts/deploy.pem": PEM,
    })
    assert lines(root) == [
        "b/.env.production: error: environment file would ship in the bundle; delete it or add it to .allorabundleignore",
        "b/artifacts/deploy.pem:1:1: error: PEM private key; keep keys out of the bundle (the platform passes the wallet as a Secret)",
        "b/config/wallet.py:2:13: error: BIP-39 mnemonic phrase; keep the wallet out of the bundle (the platform passes it as a Secret)",
        "b/src/demo/keys.py:3:8: error: 64-hex-digit string that looks like a private key; keep keys out of the bundle; "
        f"if it is a public value (an event topic hash, say), allow it: add sha256:{hashlib.sha256(HEX_KEY.lower().encode()).hexdigest()} "
        "to .allorasecretsignore",
    ]


def test_a_mnemonic_one_word_per_line_is_found_at_its_line(make):
    words = MNEMONIC.split()
    layouts = {
        "one-per-line.txt": "\n".join(words),
        "numbered.md": "My wallet:\n" + "\n".join(f"{i}. {w.capitalize()}" for i, w in enumerate(words, 1)),
        "list.yaml": "seed:\n" + "".join(f"  - {w.upper()}\n" for w in words),
    }
    assert lines(make(layouts)) == [
        "b/list.yaml:2:5: error: BIP-39 mnemonic phrase; keep the wallet out of the bundle (the platform passes it as a Secret)",
        "b/numbered.md:2:4: error: BIP-39 mnemonic phrase; keep the wallet out of the bundle (the platform passes it as a Secret)",
        "b/one-per-line.txt:1:1: error: BIP-39 mnemonic phrase; keep the wallet out of the bundle (the platform passes it as a Secret)",
    ]


def test_an_allow_listed_public_hash_passes_validate_and_inspect(make, tmp_path):
    """A topic hash is public; it is allowed by its fingerprint in the committed allow-list, the scan stays on."""
    from allora_gitops.bundle.archive import build_archive, inspect_archive

    topic = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # ERC-20 Transfer(address,address,uint256)
    root = make({"src/demo/events.py": f'TRANSFER = "0x{topic}"\nOTHER = "0x{HEX_KEY}"\n'})
    got = lines(root)
    assert len(got) == 2 and all(g.startswith("b/src/demo/events.py:") for g in got)
    (root / ".allorasecretsignore").write_text(f"# ERC-20 Transfer event topic, public\nsha256:{hashlib.sha256(topic.encode()).hexdigest()}\n")
    assert [g.split(": error: ")[0] for g in lines(root)] == ["b/src/demo/events.py:2:10"]  # only the other value
    (root / "src/demo/events.py").write_text(f'TRANSFER = "0x{topic}"\n')
    assert lines(root) == []
    built = build_archive(root, tmp_path / "out")
    assert inspect_archive(built.path).file_count == built.file_count  # the archive passes too: the list ships


def test_secret_messages_never_contain_the_secret(make):
    root = make({"w.txt": MNEMONIC + "\n" + HEX_KEY + "\n" + PEM})
    report = validate_bundle(root, display="b")
    text = "\n".join(str(p) for p in report.problems)
    assert len(report.problems) == 3
    assert "abandon" not in text and HEX_KEY not in text and "MHcCAQEEIBk" not in text


def test_no_false_positives_on_digests_prose_and_binaries(make):
    root = make({
        "requirements.txt": f"numpy==1.26.4 --hash=sha256:{HEX_KEY}\n",
        "artifacts/checksums.json": f'{{"weights.bin": {{"sha256": "{HEX_KEY}"}}}}\n',
        "README.md": "abandon ability able about above absent absorb abstract absurd abuse access accident account\n",
        "artifacts/weights.bin": b"\0\1\2" + (MNEMONIC + HEX_KEY).encode(),
        ".allorabundleignore": ".env.*\n",
        ".env.local": "X=1\n",  # ignored, so it does not ship
    })
    assert lines(root) == []


def test_escaping_symlink_is_an_error(make, tmp_path):
    root = make()
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    (root / "artifacts" / "model.pkl").symlink_to(outside)
    (root / "artifacts" / "up").symlink_to("../../")
    (root / "artifacts" / "inside.pkl").symlink_to(".gitkeep")
    assert lines(root) == [
        "b/artifacts/inside.pkl: error: symbolic link to '.gitkeep'; archives hold no links, replace it with the file itself",
        f"b/artifacts/model.pkl: error: symbolic link to '{outside}' points outside the bundle; copy what it points to into the bundle",
        "b/artifacts/up: error: symbolic link to '../../' points outside the bundle; copy what it points to into the bundle",
    ]


def test_not_a_directory(tmp_path):
    report = validate_bundle(tmp_path / "nope", display="nope")
    assert [str(p) for p in report.problems] == ["nope: error: not a directory"]


def test_a_file_name_that_is_not_utf8_is_refused_without_a_traceback(make, cli_proc):
    root = make()
    with open(os.path.join(os.fsencode(root / "artifacts"), b"caf\xe9.pkl"), "wb") as fh:
        fh.write(b"\x80\x04N.")
    result = cli_proc("bundle", "validate", root, env={"PYTHONIOENCODING": "ascii"})  # a strict terminal, too
    assert result.code == 1, result.out + result.err
    assert (f"{root}/artifacts/caf\\xe9.pkl: error: file name is not valid UTF-8; rename it (such names break "
            "Dockerfile COPY, tar and terminals)") in result.out.splitlines()
    assert "Traceback" not in result.out + result.err and "internal error" not in result.err
    assert result.out.splitlines()[-1].startswith("\\u274c Bundle validation failed: 1 error")  # ❌, escaped on ASCII


def test_a_module_path_without_src_gets_a_did_you_mean(make):
    root = make({"model.yaml": MODEL.replace('module: "src.demo.runner"', 'module: "demo.runner"')})
    assert lines(root) == [
        "b/model.yaml:8:11: error: module 'demo.runner' not found: expected demo/runner.py or demo/runner/__init__.py; "
        "did you mean src.demo.runner?"
    ]


def test_the_runtimes_own_packages_need_no_requirement(make):
    """The image installs PyYAML, prometheus-client and allora-sdk for the runtime: importing them is no error."""
    root = make({"src/demo/runner.py": "import yaml\nimport prometheus_client\n" + RUNNER})
    report = validate_bundle(root, True, display="b")
    assert report.ok and [p.code for p in report.problems] == ["not-installed"]  # the probe sees only the stdlib


@pytest.mark.parametrize("requirements, error", [
    ("numpy=>1.0\n", "b/requirements.txt:1:1: error: invalid requirement 'numpy=>1.0': "
                     "Expected semicolon (after name with no version specifier) or end"),
    ("-r other.txt\n", "b/requirements.txt:1:1: error: -r names another requirements file, which would be missing "
                       "where the image installs this one; list its requirements here"),
])
def test_a_refused_requirements_line_is_the_one_error_not_also_a_missing_import(make, requirements, error):
    """The refused line may be the very package the code imports: 'lists no packages' would be false."""
    root = make({"requirements.txt": requirements, "other.txt": "numpy==1.26.4\n",
                 "src/demo/runner.py": "import numpy_not_installed_here\n" + RUNNER})
    assert lines(root) == [error]


def test_an_allow_list_the_ignore_rules_exclude_is_said_to_allow_nothing(make):
    topic = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    root = make({"src/demo/events.py": f'TRANSFER = "0x{topic}"\n',
                 ".allorasecretsignore": f"sha256:{hashlib.sha256(topic.encode()).hexdigest()}\n",
                 ".allorabundleignore": ".allorasecretsignore\n"})
    got = lines(root)
    assert got[0] == ("b/.allorasecretsignore: warning: .allorasecretsignore is excluded from the archive by the ignore rules, "
                      "so its fingerprints allow nothing (inspect reads them from the archive); ship it")
    assert [g.split(": error: ")[0] for g in got[1:]] == ["b/src/demo/events.py:1:13"]
