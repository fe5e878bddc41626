"""The documentation: `mkdocs build --strict` passes (and fails on what it must), the generated reference says what
the code says, and the shell examples marked runnable in the README and docs/ run.

A fenced ``bash`` block right after a ``<!-- runnable -->`` line is run: the runnable blocks of one page in order,
in one ``bash -euo pipefail`` shell, in a scratch directory holding a copy of ``examples/``, with ``allora-bundle``
and ``allora-gitops`` on ``PATH`` running this checkout's code (the scratch directory plays the clone's root).
Options after a colon, comma-separated: ``slow`` marks the page's test slow; ``from-clone`` runs the block from
the clone's root again rather than where the block before it ended (``<!-- runnable: slow, from-clone -->``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO_ROOT, cli_env

DOCS = REPO_ROOT / "docs"
MARKER = re.compile(r"^<!-- runnable(?:: (?P<modes>[a-z, -]+))? -->\s*$")
MODES = {"slow", "from-clone"}


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True, text=True, env=cli_env({"NO_MKDOCS_2_WARNING": "1"}), timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    proc = mkdocs_build(REPO_ROOT / "mkdocs.yml", site)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return site


def test_the_strict_build_has_every_generated_reference_page_in_its_nav(site):
    from docsgen.reference import PAGES

    index = (site / "index.html").read_text()
    for path in PAGES:
        page = site / path.replace(".md", "/index.html")
        assert page.is_file(), path
        assert f'href="{path.replace(".md", "/")}"' in index, f"{path} is not in the nav"


def test_every_page_under_how_to_and_reference_is_in_the_nav_without_a_nav_entry(site):
    """Other branches add pages there: the nav must pick them up by itself."""
    index = (site / "index.html").read_text()
    pages = sorted(p.relative_to(DOCS) for folder in ("how-to", "reference") for p in (DOCS / folder).glob("*.md"))
    assert len(pages) >= 10
    for page in pages:
        assert f'href="{page.with_suffix("").as_posix()}/"' in index, page


def test_the_strict_build_fails_on_a_dead_link_a_bad_anchor_and_an_unreachable_page(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO_ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO_ROOT / "docsgen", tmp_path / "docsgen", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "docs" / "how-to" / "rollback.md").open("a") as page:
        page.write("\nSee [nothing](no-such-page.md) and [a section](promote.md#no-such-anchor).\n")
    (tmp_path / "docs" / "stray").mkdir()
    (tmp_path / "docs" / "stray" / "lost.md").write_text("# Lost\n")
    proc = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 1
    assert "contains a link 'no-such-page.md', but the target 'how-to/no-such-page.md' is not found" in proc.stderr
    assert "does not contain an anchor '#no-such-anchor'" in proc.stderr
    assert "stray/lost.md" in proc.stderr


def test_the_readme_links_only_to_files_that_exist():
    """GitHub renders the README, mkdocs does not: its links are checked here."""
    readme = (REPO_ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?://|#)[^)\s]+)\)", readme)
    assert len(links) >= 10
    missing = [link for link in links if not (REPO_ROOT / link.split("#")[0]).exists()]
    assert missing == []


def test_the_readme_states_the_two_commands_and_no_install_from_an_index():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash .ci/demo     # set up, then run the main job end to end on embedded defaults" in readme
    assert "bash .ci/test     # set up, then run the whole test suite" in readme
    assert (REPO_ROOT / ".ci" / "demo").is_file() and (REPO_ROOT / ".ci" / "test").is_file()
    assert "exec \"$VENV/bin/python\" -m pytest" in (REPO_ROOT / ".ci" / "test").read_text()
    # nothing is published: no line tells the reader to install the project by name from an index
    assert not re.search(r"^\s*pip install ['\"]?allora-gitops", readme, re.M)
    assert 140 <= len(readme.splitlines()) <= 210


# --- the generated reference -----------------------------------------------------------------------------


def test_the_cli_reference_has_every_command_and_option_of_both_apps():
    import typer

    from allora_gitops.cli.bundle import app as bundle_app
    from allora_gitops.cli.gitops import app as gitops_app
    from docsgen.reference import render_cli_bundle, render_cli_gitops

    for prog, app, page in (("allora-bundle", bundle_app, render_cli_bundle()), ("allora-gitops", gitops_app, render_cli_gitops())):
        def walk(command, path):
            for name, sub in getattr(command, "commands", {}).items():
                if sub.hidden:
                    continue
                yield (*path, name), sub
                yield from walk(sub, (*path, name))

        commands = list(walk(typer.main.get_command(app), ()))
        assert len(commands) >= 5
        for path, command in commands:
            assert f"\n## `{' '.join((prog, *path))}`\n" in page, path
            for param in command.params:
                if param.param_type_name == "option" and not param.hidden:
                    assert f"`{param.opts[0]}`" in page, (path, param.opts)
    assert "| `--network` | `testnet`, `mainnet`" in render_cli_bundle() or "`--network`" in render_cli_bundle()


def test_the_model_yaml_reference_has_every_key_of_the_schema():
    from allora_gitops.bundle.manifest import manifest_json_schema
    from docsgen.reference import render_model_yaml

    page = render_model_yaml()
    schema = manifest_json_schema()
    for key in schema["properties"]:
        assert f"| `{key}` |" in page, key
    for key in ("environment.secrets", "runtime.gpus", "artifacts.remote", "artifacts.remote[].sha256", "entrypoint.module"):
        assert f"| `{key}` |" in page, key


def test_the_http_api_reference_has_every_route_of_the_openapi_document():
    from docsgen.reference import openapi_document, render_http_api

    page = render_http_api()
    paths = openapi_document()["paths"]
    assert "/api/bundles" in paths
    for path, methods in paths.items():
        for method in methods:
            assert f"### `{method.upper()} {path}`" in page, (method, path)


def test_the_metrics_reference_has_every_series_and_every_alert_links_to_its_runbook():
    from allora_gitops.chain.metrics import GAUGES
    from allora_gitops.render.monitoring import alerts
    from docsgen.reference import example_spec, render_metrics_and_alerts

    page = render_metrics_and_alerts()
    for name in ("allora_predictions_total", "allora_consecutive_failures", "allora_heartbeat_timestamp_seconds", "allora_wallet_balance_uallo", "allora_chain_up", *GAUGES):
        assert f"| `{name}` |" in page, name
    runbooks = (DOCS / "how-to" / "runbooks.md").read_text()
    for alert in alerts(example_spec()):
        assert f"### {alert.name}\n" in page
        assert f"(../how-to/runbooks.md#runbook-{alert.name.lower()})" in page
        assert f'<a id="runbook-{alert.name.lower()}"></a>' in runbooks, alert.name


def test_the_settings_reference_has_every_repository_setting_and_the_environment():
    from allora_gitops.gitops.settings import settings_keys
    from docsgen.reference import render_settings

    page = render_settings()
    for key in settings_keys():
        assert f"| `{key}` |" in page, key
    for variable in ("ALLORA_DATABASE_URL", "ALLORA_STORE_URL", "ALLORA_GITOPS_HOME", "ALLORA_API_DB_POOL_SIZE", "ALLORA_RESULTS_URL"):
        assert f"| `{variable}` |" in page, variable


def test_every_environment_variable_is_explained_on_the_page_the_reference_points_to():
    """The generated table lists every variable; the prose that explains them is hand-written, so it must not lose one."""
    from docsgen.reference import ENVIRONMENT_SOURCES, ROOT, environment_variables

    for _, module, prose in ENVIRONMENT_SOURCES:
        if prose:
            text = "".join((DOCS / "reference" / page.split("#")[0]).read_text() for page in prose)
            missing = [name for name, _ in environment_variables(ROOT / module) if name not in text]
            assert missing == [], (prose, missing)


def test_environment_variables_take_the_comment_beside_or_above_their_definition(tmp_path):
    from docsgen.reference import environment_variables

    module = tmp_path / "m.py"
    module.write_text(
        "# --- a section header -----------\n"
        'A_ENV = "ALLORA_A"  # what A sets\n'
        "# what B sets,\n# on two lines\n"
        'B_ENV = "ALLORA_B"\n'
        'OTHER = "not a variable"\n'
        'C_ENV = "ALLORA_C"\n'
    )
    assert environment_variables(module) == [("ALLORA_A", "what A sets"), ("ALLORA_B", "what B sets, on two lines"), ("ALLORA_C", "")]


def test_the_architecture_page_maps_every_package(site):
    page = (site / "explanation" / "architecture" / "index.html").read_text()
    for package in sorted(p.parent.name for p in (REPO_ROOT / "allora_gitops").glob("*/__init__.py")):
        assert f"<code>allora_gitops.{package}/</code>" in page, package
    assert "<code>allora_runtime/</code>" in page


# --- the runnable examples -------------------------------------------------------------------------------


def runnable_pages() -> list[tuple[Path, str, bool]]:
    """``(page, script, slow)`` for every page with runnable blocks."""
    found = []
    for page in [REPO_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        lines = page.read_text().splitlines()
        blocks, slow = [], False
        for i, line in enumerate(lines):
            match = MARKER.match(line)
            if not match:
                continue
            assert i + 1 < len(lines) and lines[i + 1].startswith("```bash"), f"{page}:{i + 1}: a runnable marker must precede a ```bash block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            modes = {m.strip() for m in (match["modes"] or "").split(",") if m.strip()}
            assert modes <= MODES, f"{page}:{i + 1}: unknown runnable options {sorted(modes - MODES)}"
            start = 'cd "$CLONE"\n' if "from-clone" in modes else ""
            blocks.append(f"# {page.relative_to(REPO_ROOT)}:{i + 3}\n{start}" + "\n".join(lines[i + 2 : end]))
            slow = slow or "slow" in modes
        if blocks:
            found.append((page, "\n".join(blocks) + "\n", slow))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params():
    for page, script, slow in runnable_pages():
        marks = [pytest.mark.slow] if slow else []
        yield pytest.param(page, script, marks=marks, id=str(page.relative_to(REPO_ROOT)))


def test_the_readme_and_the_tutorials_have_runnable_examples():
    pages = {page.relative_to(REPO_ROOT).as_posix() for page, _, _ in runnable_pages()}
    assert {"README.md", "docs/tutorials/first-model.md", "docs/tutorials/platform.md"} <= pages


@pytest.mark.parametrize("page, script", list(_params()))
def test_the_runnable_examples_of_a_page_run(page, script, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, module in (("allora-bundle", "bundle"), ("allora-gitops", "gitops")):
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m allora_gitops.cli.{module} "$@"\n')
        shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(EXAMPLES, work / "examples", ignore=shutil.ignore_patterns("__pycache__", "dist"))
    work.chmod(0o755)  # as root, the embedded PostgreSQL runs as its own user and must reach its data directory
    tmp_path.chmod(0o755)
    env = cli_env({
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:" + cli_env()["PATH"],
        "ALLORA_GITOPS_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CLONE": str(work),
    })  # fmt: skip
    for variable in ("ALLORA_DATABASE_URL", "ALLORA_STORE_URL", "ALLORA_PLATFORM_URL", "ALLORA_PLATFORM_TOKEN"):
        env.pop(variable, None)
    env["PORT"] = str(free_port())  # a page that starts a server: never the documented 8000 of a busy machine
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:  # whatever a failed page left running in the background (a server) ends with the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode == 0, f"{page}:\n{script}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    if page.name == "platform.md":  # the tutorial's promise: the example and the user's own push, both on the platform
        assert '"name":"demo-model"\n"name":"linear-forecaster"\n' in stdout, stdout[-3000:]
