"""model.yaml loading: every problem at once, each with file:line:col."""

from __future__ import annotations

import json

import pytest

from allora_gitops.bundle.manifest import BundleManifest, load_manifest, load_manifest_text
from allora_gitops.errors import ManifestError

VALID = """\
schema_version: "0.1"
name: "my-model"
version: "1.0.0"
python:
  version: "3.11"
entrypoint:
  kind: "python_function"
  module: "src.my_model.runner"
  function: "run"
  workdir: "."
  artifacts_dir: "artifacts"
environment:
  pip_requirements: "requirements.txt"
allora:
  topic_id: 69
  polling_interval: 120
  fee_tier: "STANDARD"
  network: "testnet"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest_text(text, "model.yaml")
    return [str(p) for p in info.value.problems]


def test_valid_manifest_loads_with_defaults():
    m = load_manifest_text(VALID, "model.yaml").manifest
    assert m.name == "my-model"
    assert m.allora.topic_id == 69
    assert m.runtime.max_seconds == 25
    assert m.artifacts_path == "artifacts"
    assert m.module_file_candidates[0] == "src/my_model/runner.py"


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "model.yaml", "model.yaml")
    assert str(info.value.problems[0]) == "model.yaml: error: model.yaml not found"


def test_empty_file():
    assert problems("") == ["model.yaml:1:1: error: file is empty; run 'allora-bundle init' for a template"]


def test_malformed_yaml_names_line_and_column():
    (msg,) = problems('schema_version: "0.1"\nname: [unclosed\nversion: "1.0.0"\n')
    assert msg.startswith("model.yaml:3:")
    assert "invalid YAML" in msg


def test_duplicate_key_is_an_error():
    (msg,) = problems(VALID + 'name: "other"\n')
    assert msg.startswith("model.yaml:19:1: error: invalid YAML")


def test_every_problem_reported_at_once_with_positions():
    text = VALID.replace('version: "1.0.0"', 'version: "one"').replace("topic_id: 69", "topic_id: abc")
    text = text.replace('  fee_tier: "STANDARD"', '  fee_tier: "FAST"\n  colour: blue')
    got = problems(text)
    assert got == [
        "model.yaml:3:10: error: version: 'one' is not a semantic version like 1.0.0",
        "model.yaml:15:13: error: allora.topic_id: Input should be a valid integer, unable to parse string as an integer (got 'abc')",
        "model.yaml:17:13: error: allora.fee_tier: Input should be 'ECO', 'STANDARD' or 'PRIORITY' (got 'FAST')",
        "model.yaml:18:3: error: unknown key 'allora.colour' (typo? unknown keys are not allowed)",
    ]


def test_a_value_quoted_back_never_carries_a_credential_and_is_cut_short():
    text = VALID.replace(
        '  pip_requirements: "requirements.txt"',
        '  pip_requirements: "requirements.txt"\n  extra_index_urls: "https://user:tok3nSECRET@pkgs.example/simple"',
    )
    (msg,) = problems(text)
    assert msg == (
        "model.yaml:14:21: error: environment.extra_index_urls: Input should be a valid list "
        "(got 'https://user:***@pkgs.example/simple')"
    )
    (msg,) = problems(VALID.replace("topic_id: 69", "topic_id: " + "x" * 500))
    assert msg == (
        "model.yaml:15:13: error: allora.topic_id: Input should be a valid integer, unable to parse string as an integer "
        f"(got '{'x' * 58}…)"
    )


def test_topic_id_fits_the_records_database():
    (msg,) = problems(VALID.replace("topic_id: 69", "topic_id: " + "9" * 30))
    assert msg.startswith("model.yaml:15:13: error: allora.topic_id: Input should be less than or equal to 9223372036854775807")


def test_unquoted_python_version_gets_a_hint():
    (msg,) = problems(VALID.replace('version: "3.11"', "version: 3.10"))
    assert msg.startswith("model.yaml:5:12: error: python.version: Input should be a valid string")
    assert "unquoted 3.10 reads as the number 3.1" in msg


@pytest.mark.parametrize("version", ["3.8", "3.14"])
def test_unsupported_python(version):
    (msg,) = problems(VALID.replace('version: "3.11"', f'version: "{version}"'))
    assert msg == f"model.yaml:5:12: error: python.version: Python {version} is not supported; use one of 3.10, 3.11, 3.12, 3.13"


def test_unsupported_entrypoint_kind():
    (msg,) = problems(VALID.replace('kind: "python_function"', 'kind: "notebook"'))
    assert msg == "model.yaml:7:9: error: entrypoint.kind: Input should be 'python_function' (got 'notebook')"


def test_missing_required_section_points_at_parent():
    text = "\n".join(line for line in VALID.splitlines() if "module:" not in line) + "\n"
    assert problems(text) == ["model.yaml:6:1: error: 'entrypoint.module' is required"]


@pytest.mark.parametrize(
    "name,fragment",
    [("My_Model", "lowercase DNS-1123 label"), ("a" * 54, "at most 53"), ("-bad", "lowercase DNS-1123 label")],
)
def test_bad_names(name, fragment):
    (msg,) = problems(VALID.replace('name: "my-model"', f'name: "{name}"'))
    assert msg.startswith("model.yaml:2:7: error: name:")
    assert fragment in msg


def test_paths_cannot_escape_the_bundle():
    (msg,) = problems(VALID.replace('artifacts_dir: "artifacts"', 'artifacts_dir: "../elsewhere"'))
    assert "must be a relative path inside the bundle" in msg


def test_index_urls_cannot_carry_credentials():
    text = VALID.replace(
        '  pip_requirements: "requirements.txt"',
        '  pip_requirements: "requirements.txt"\n  extra_index_urls: ["https://user:token@pypi.example.com/simple"]',
    )
    (msg,) = problems(text)
    assert "carries credentials" in msg
    assert "token" not in msg


def test_json_schema_export_is_usable(cli):
    result = cli("bundle", "schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema["title"] == "Allora model bundle (model.yaml v0.1)"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"schema_version", "name", "version", "python", "entrypoint"}
    assert schema == BundleManifest.json_schema()


def test_a_misspelt_key_gets_the_closest_valid_key():
    text = VALID.replace("  function:", "  funtion:").replace("environment:", "enviroment:")
    got = problems(text)
    assert "model.yaml:9:3: error: unknown key 'entrypoint.funtion' (did you mean 'function'? unknown keys are not allowed)" in got
    assert "model.yaml:12:1: error: unknown key 'enviroment' (did you mean 'environment'? unknown keys are not allowed)" in got


@pytest.mark.parametrize("written, meant", [("src/my_model/runner.py", "src.my_model.runner"),
                                            ("./src/my_model/runner.py", "src.my_model.runner"),
                                            ("src/my_model/__init__.py", "src.my_model")])
def test_a_module_written_as_a_file_path_gets_the_dotted_form(written, meant):
    assert problems(VALID.replace("src.my_model.runner", written)) == [
        f"model.yaml:8:11: error: entrypoint.module: '{written}' is not a dotted Python module path like "
        f"src.my_model.runner; did you mean {meant}?"
    ]



def test_an_absurd_resource_ask_stops_at_validate_with_its_line(tmp_path):
    """10^30 cores or 16 EiB of memory is a typo: model.yaml says so with file:line before any render."""
    from allora_gitops.bundle.manifest import load_manifest
    from allora_gitops.errors import ManifestError
    from tests.conftest import EXAMPLES

    text = (EXAMPLES / "linear-forecaster" / "model.yaml").read_text()
    assert "cpu_cores:" in text and "memory_mb:" in text
    import re

    text = re.sub(r"cpu_cores: .*", "cpu_cores: 1" + "0" * 30, text)
    text = re.sub(r"memory_mb: .*", "memory_mb: 17592186044416", text)
    (tmp_path / "model.yaml").write_text(text)
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path / "model.yaml")
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 2, lines
    assert all("model.yaml:" in line for line in lines)
    assert "runtime.cpu_cores" in lines[0] + lines[1] and "1024" in lines[0] + lines[1]
    assert "runtime.memory_mb" in lines[0] + lines[1] and "16777216" in lines[0] + lines[1]
