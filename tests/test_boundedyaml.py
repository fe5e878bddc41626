"""boundedyaml: hostile YAML (alias bombs, recursion, depth, size) is refused cheaply, with one line naming the file."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from allora_gitops import constants as C
from allora_gitops.boundedyaml import YamlError, YamlLimits, load_yaml, load_yaml_all
from tests.conftest import EXAMPLES, cli_env

# Nine levels of nine aliases: 9**9 ≈ 387 million strings once expanded (CVE-2019-11253's shape).
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize("positions", [False, True])
def test_alias_bomb_is_refused_naming_the_file_and_line(positions):
    with pytest.raises(YamlError) as caught:
        load_yaml(BOMB, "b/model.yaml", positions=positions)
    (problem,) = caught.value.problems
    assert str(problem).startswith("b/model.yaml:")
    assert "once aliases are expanded" in problem.message


@pytest.mark.parametrize("positions", [False, True])
def test_a_recursive_alias_is_refused(positions):
    with pytest.raises(YamlError) as caught:
        load_yaml("a: &x [1, *x]\n", "f.yaml", positions=positions)
    assert str(caught.value.problems[0]) == "f.yaml:1:4: error: YAML alias refers to a node that contains it (a recursive structure); refused"


@pytest.mark.parametrize("positions", [False, True])
def test_depth_and_size_bounds(positions):
    deep = "a: " + "[" * 30 + "]" * 30 + "\n"
    with pytest.raises(YamlError) as caught:
        load_yaml(deep, "f.yaml", positions=positions, limits=YamlLimits(max_depth=20))
    assert caught.value.problems[0].message == "YAML nested deeper than 20 levels; refused"
    with pytest.raises(YamlError) as caught:
        load_yaml("a: 12345678901\n", "f.yaml", positions=positions, limits=YamlLimits(max_chars=10))
    assert str(caught.value.problems[0]) == "f.yaml: error: YAML file is larger than 10 characters; refused"
    assert load_yaml("a: [[[]]]\n", "f.yaml", positions=positions, limits=YamlLimits(max_depth=4)) == {"a": [[[]]]}
    assert load_yaml("a: 1\n", "f.yaml", positions=positions) == {"a": 1}


def test_aliases_within_the_bound_and_merge_keys_still_load():
    text = "base: &b {cpu: 1, mem: 2}\nx:\n  <<: *b\n  mem: 3\ny: [*b, *b]\n"
    assert load_yaml(text, "f.yaml") == {"base": {"cpu": 1, "mem": 2}, "x": {"cpu": 1, "mem": 3}, "y": [{"cpu": 1, "mem": 2}] * 2}
    assert load_yaml_all("---\na: 1\n---\n---\nb: 2\n", "f.yaml") == [{"a": 1}, None, {"b": 2}]


def test_the_node_bound_counts_every_document_of_a_file():
    text = "---\n[1, 2, 3]\n---\n[4, 5, 6]\n"
    assert load_yaml_all(text, "f.yaml", limits=YamlLimits(max_nodes=8)) == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(YamlError) as caught:
        load_yaml_all(text, "f.yaml", limits=YamlLimits(max_nodes=7))
    assert "more than 7 values" in caught.value.problems[0].message


def test_syntax_error_names_file_line_and_column():
    with pytest.raises(YamlError) as caught:
        load_yaml("a: [1\n", "f.yaml", positions=True)
    assert str(caught.value.problems[0]).startswith("f.yaml:2:1: error: invalid YAML: expected ',' or ']'")


# A small parent that runs the command and reports that child's own rusage. Measured straight from the
# test process, ru_maxrss would count the pytest process's pages the forked child held before exec
# (Linux carries the high-water mark across execve): 200+ MB late in a full run, whatever the CLI used.
_RUSAGE_OF_CHILD = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}))
"""


def _measured_cli(tmp_path: Path, *args: str) -> tuple[int, str, float, float]:
    """Run ``allora-bundle ARGS`` in a child process; (exit code, stdout+stderr, CPU seconds, peak RSS in MB).

    CPU time (user + system), not wall time: the cost of the work itself, which a loaded machine
    (CI's two cores shared with other jobs) does not inflate; an alias bomb costs minutes of CPU.
    """
    out = tmp_path / "out"
    report = subprocess.run(
        [sys.executable, "-c", _RUSAGE_OF_CHILD, str(out), sys.executable, "-m", "allora_gitops.cli.bundle", *args],
        capture_output=True, text=True, env=cli_env(), check=True,
    )
    usage = json.loads(report.stdout)
    return usage["code"], out.read_text(), usage["cpu"], usage["maxrss_kb"] / 1024  # Linux: kilobytes


def test_validate_refuses_a_model_yaml_alias_bomb_fast_and_small(tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(EXAMPLES / "linear-forecaster", bundle)
    (bundle / C.MANIFEST_FILE).write_text(BOMB)
    code, err, seconds, rss_mb = _measured_cli(tmp_path, "validate", str(bundle))
    assert code == 1, err
    assert f"{bundle / C.MANIFEST_FILE}:7:4: error: YAML holds more than 1,000,000 values once aliases are expanded" in err
    assert "Traceback" not in err
    assert seconds < 2.0, seconds
    assert rss_mb < 200, rss_mb


def test_inspect_refuses_an_archive_whose_model_yaml_is_an_alias_bomb(tmp_path):
    model = BOMB.encode()
    doc = {"format": 1, "name": "x", "version": "1.0.0",
           "files": {C.MANIFEST_FILE: {"sha256": hashlib.sha256(model).hexdigest(), "size": len(model)}}}
    archive = tmp_path / "x.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in ((C.ARCHIVE_MANIFEST, json.dumps(doc).encode()), (C.MANIFEST_FILE, model)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    code, err, seconds, rss_mb = _measured_cli(tmp_path, "inspect", str(archive))
    assert code == 1, err
    assert f"{archive}!{C.MANIFEST_FILE}:7:4: error: YAML holds more than 1,000,000 values" in err
    assert seconds < 2.0 and rss_mb < 200, (seconds, rss_mb)


def test_repository_files_read_by_verify_and_publish_are_bounded_too(tmp_path):
    from allora_gitops.gitops.layout import load_yaml_documents
    from allora_gitops.verify.repo import check_yaml_file

    path = tmp_path / "build.yaml"
    path.write_text(BOMB)
    assert [str(p) for p in check_yaml_file(path, "builds/x/1.0.0/build.yaml")] == [
        "builds/x/1.0.0/build.yaml:7:4: error: YAML holds more than 1,000,000 values once aliases are expanded (an alias bomb?); refused"
    ]
    assert load_yaml_documents(BOMB) == []  # facts from a hostile file: none, and verify says why
