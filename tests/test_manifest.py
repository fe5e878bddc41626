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


# --- model configuration: environment.variables / secrets / system_packages, runtime.gpus, artifacts.remote ---------

DIGEST = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PIP = '  pip_requirements: "requirements.txt"\n'
CONFIGURED = VALID.replace(PIP, PIP + f"""\
  variables:
    LOG_LEVEL: "debug"
    WINDOW: 24
    MODEL_SHA256: "{DIGEST}"
  secrets: [MARKET_API_KEY]
  system_packages: [libgomp1, ffmpeg]
""") + f"""\
runtime:
  gpus: 1
artifacts:
  remote:
    - path: artifacts/weights.bin
      url: https://models.example.com/weights.bin
      sha256: "{DIGEST}"
    - path: ./artifacts/tokenizer/vocab.json
      url: s3://bucket/tok/vocab.json
      sha256: "{DIGEST}"
"""


def test_model_configuration_loads():
    m = load_manifest_text(CONFIGURED, "model.yaml").manifest
    assert m.environment.variables == {"LOG_LEVEL": "debug", "WINDOW": "24", "MODEL_SHA256": DIGEST}  # a digest is not a key
    assert m.environment.secrets == ["MARKET_API_KEY"]
    assert m.environment.system_packages == ["libgomp1", "ffmpeg"]
    assert m.runtime.gpus == 1
    assert [(a.path, a.url) for a in m.remote_artifacts] == [
        ("artifacts/weights.bin", "https://models.example.com/weights.bin"),
        ("artifacts/tokenizer/vocab.json", "s3://bucket/tok/vocab.json"),  # normalised
    ]
    assert load_manifest_text(VALID, "model.yaml").manifest.remote_artifacts == []


def _env(block: str) -> str:
    """``block`` inside environment: (indented) or as a section of its own, after allora:."""
    return VALID.replace(PIP, PIP + block) if block.startswith("  ") else VALID + block


@pytest.mark.parametrize(
    "block, expected",
    [
        ('  variables:\n    ALLORA_TOPIC_ID: "3"\n',
         "model.yaml:15:22: error: environment.variables.ALLORA_TOPIC_ID: names starting with ALLORA_ are set by the platform; choose another name"),
        ("  variables:\n    BUNDLE_ROOT: /x\n",
         "model.yaml:15:18: error: environment.variables.BUNDLE_ROOT: BUNDLE_ROOT is set by the platform (the runtime and the image need it); choose another name"),
        ("  variables:\n    PROMETHEUS_MULTIPROC_DIR: /x\n",
         "model.yaml:15:31: error: environment.variables.PROMETHEUS_MULTIPROC_DIR: PROMETHEUS_MULTIPROC_DIR is set by the platform (the runtime and the image need it); choose another name"),
        ('  variables:\n    9LIVES: "x"\n',
         "model.yaml:15:13: error: environment.variables.9LIVES: '9LIVES' is not an environment variable name (letters, digits and '_', not starting with a digit)"),
        ("  variables:\n    RATIO: 0.5\n",
         "model.yaml:15:12: error: environment.variables.RATIO: write the value as a quoted string (environment variables are text)"),
        ("  secrets: [HOME]\n",
         "model.yaml:14:13: error: environment.secrets.0: HOME is set by the platform (the runtime and the image need it); choose another name"),
        ("  secrets: [A_KEY, A_KEY]\n", "model.yaml:14:20: error: environment.secrets[1]: A_KEY is listed twice"),
        ('  variables:\n    A_KEY: "x"\n  secrets: [A_KEY]\n',
         "model.yaml:15:12: error: environment.variables.A_KEY: A_KEY is also declared under environment.secrets; keep one"),
        ('  system_packages: ["ffmpeg=7:5.1"]\n',
         "model.yaml:14:21: error: environment.system_packages.0: 'ffmpeg=7:5.1' is not a Debian package name (Debian Policy 5.6.1: "
         "lowercase letters, digits, '+', '-' and '.', at least two characters, starting with a letter or digit; no version or release)"),
        ("  system_packages: [x]\n", "model.yaml:14:21: error: environment.system_packages.0: 'x' is not a Debian package name"),
        ("  system_packages: [libgomp1, libgomp1]\n", "model.yaml:14:31: error: environment.system_packages[1]: libgomp1 is listed twice"),
        ("runtime:\n  gpus: 0\n", "model.yaml:20:9: error: runtime.gpus: Input should be greater than 0 (got 0)"),
        ("runtime:\n  gpus: 17\n", "model.yaml:20:9: error: runtime.gpus: Input should be less than or equal to 16 (got 17)"),
        ("runtime:\n  gpus: one\n", "model.yaml:20:9: error: runtime.gpus: Input should be a valid integer"),
        ("runtime:\n  gpus: true\n", "model.yaml:20:9: error: runtime.gpus: Input should be a valid integer"),
        ('runtime:\n  gpus: "2"\n', "model.yaml:20:9: error: runtime.gpus: Input should be a valid integer"),
        ("runtime:\n  memory_mb: true\n", "model.yaml:20:14: error: runtime.memory_mb: Input should be a valid integer"),
    ],
)
def test_each_environment_and_runtime_key_fails_with_its_line(block, expected):
    found = problems(_env(block))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_secret_looking_variable_is_refused_without_its_value():
    key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    mnemonic = "abandon " * 11 + "about"
    found = problems(_env(f'  variables:\n    MARKET_API_KEY: "{key}"\n    SEED: "{mnemonic}"\n'))
    assert found == [
        "model.yaml:15:21: error: environment.variables.MARKET_API_KEY: the value looks like a secret (a key or a mnemonic); "
        "declare MARKET_API_KEY under environment.secrets and map it at deploy time (--secret MARKET_API_KEY=SECRET/KEY)",
        "model.yaml:16:11: error: environment.variables.SEED: the value looks like a secret (a key or a mnemonic); "
        "declare SEED under environment.secrets and map it at deploy time (--secret SEED=SECRET/KEY)",
    ]
    assert not any(key in f or "abandon" in f for f in found)


def _remote(path: str = "artifacts/w.bin", url: str = "https://models.example.com/w.bin", sha256: str = DIGEST) -> str:
    return VALID + f'artifacts:\n  remote:\n    - path: "{path}"\n      url: "{url}"\n      sha256: "{sha256}"\n'


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"path": "weights.bin"}, "model.yaml:21:13: error: artifacts.remote[0].path: 'weights.bin' is not under the artifacts directory artifacts/"),
        ({"path": "artifacts/../w.bin"}, "model.yaml:21:13: error: artifacts.remote.0.path: path must be a relative path inside the bundle"),
        ({"path": "artifacts/my weights.bin"}, "model.yaml:21:13: error: artifacts.remote.0.path: 'artifacts/my weights.bin' may hold letters, digits"),
        ({"url": "http://models.example.com/w.bin"}, "model.yaml:22:12: error: artifacts.remote.0.url: 'http://models.example.com/w.bin' is not an https:// or s3:// URL"),
        ({"url": "ftp://models.example.com/w.bin"}, "model.yaml:22:12: error: artifacts.remote.0.url: 'ftp://models.example.com/w.bin' is not an https:// or s3:// URL"),
        ({"url": "https://user:hunter2@models.example.com/w.bin"}, "model.yaml:22:12: error: artifacts.remote.0.url: carries credentials;"),
        ({"url": "https://b.s3.amazonaws.com/w.bin?X-Amz-Credential=AKIA&X-Amz-Signature=abc"},
         "model.yaml:22:12: error: artifacts.remote.0.url: carries a credential in its query string"),
        ({"sha256": "ABC"}, "model.yaml:23:15: error: artifacts.remote.0.sha256: must be 64 lowercase hex digits (the sha256 of the file)"),
    ],
)
def test_each_remote_artifact_problem_names_its_line(kwargs, expected):
    found = problems(_remote(**kwargs))
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "hunter2" not in found[0] and "AKIA" not in found[0]


def test_two_remote_artifacts_at_one_path_and_an_unknown_key():
    text = _remote() + f'    - path: "artifacts/w.bin"\n      url: "s3://b/w"\n      sha256: "{DIGEST}"\n      size: 3\n'
    assert problems(text) == ["model.yaml:27:7: error: unknown key 'artifacts.remote.1.size' (typo? unknown keys are not allowed)"]
    text = _remote() + f'    - path: "artifacts/w.bin"\n      url: "s3://b/w"\n      sha256: "{DIGEST}"\n'
    assert problems(text) == ["model.yaml:24:13: error: artifacts.remote[1].path: artifacts/w.bin is listed twice"]


def test_unknown_keys_in_the_new_sections_stay_errors():
    found = problems(_env("  secret: [A]\n") + "runtime:\n  gpu: 1\n")
    assert found == [
        "model.yaml:14:3: error: unknown key 'environment.secret' (did you mean 'secrets'? unknown keys are not allowed)",
        "model.yaml:21:3: error: unknown key 'runtime.gpu' (did you mean 'gpus'? unknown keys are not allowed)",
    ]


def test_the_json_schema_describes_the_new_keys():
    schema = BundleManifest.json_schema()
    defs = schema["$defs"]
    env = defs["Environment"]["properties"]
    assert {"variables", "secrets", "system_packages"} <= set(env)
    assert "--secret NAME=SECRET/KEY" in env["secrets"]["description"]
    assert "allow" in env["system_packages"]["description"] and "ALLORA_" in env["variables"]["description"]
    gpus = defs["Runtime"]["properties"]["gpus"]
    assert gpus["anyOf"][0] == {"exclusiveMinimum": 0, "maximum": 16, "type": "integer"} and "nvidia.com/gpu" in gpus["description"]
    remote = defs["RemoteArtifact"]
    assert remote["required"] == ["path", "url", "sha256"] and remote["additionalProperties"] is False
    assert "sha256" in defs["Artifacts"]["properties"]["remote"]["description"]


def test_an_editor_checking_against_the_schema_accepts_the_new_keys_and_refuses_a_typo(cli):
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(cli("bundle", "schema").out))
    assert list(validator.iter_errors(yaml.safe_load(CONFIGURED))) == []
    typo = yaml.safe_load(CONFIGURED.replace("  gpus: 1", "  gpu: 1"))
    assert [e.message for e in validator.iter_errors(typo)] == ["Additional properties are not allowed ('gpu' was unexpected)"]


def test_a_secret_pasted_where_a_name_belongs_is_never_echoed():
    """A key listed under environment.secrets (its value instead of its name), a mnemonic as a variable's name, a key
    as a top-level key: each is refused, and no message quotes it."""
    key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    mnemonic = "abandon " * 11 + "about"
    found = problems(_env(f'  secrets: ["{key}"]\n  variables:\n    "{mnemonic}": "x"\n'))
    found += problems(VALID + f'"{key}": 1\n')
    assert len(found) == 3, found
    assert not any(key in f or "abandon" in f for f in found), found
    assert found[0].startswith("model.yaml:14:13: error: environment.secrets.0: this looks like a secret's value (not shown)")


@pytest.mark.parametrize("written", ["01234", "0x10", "1_000", "0o17"])
def test_a_bare_number_yaml_would_change_is_refused_naming_the_variable(written):
    """`ZIP: 01234` would reach the container as "1234": validate asks for quotes instead of changing the value."""
    (msg,) = problems(_env(f"  variables:\n    ZIP: {written}\n"))
    assert msg.startswith("model.yaml:15:10: error: environment.variables.ZIP: this number is not written as a plain whole number")
    quoted = load_manifest_text(_env(f'  variables:\n    ZIP: "{written}"\n    WINDOW: 24\n    LOW: -3\n'), "model.yaml")
    assert dict(quoted.manifest.environment.variables) == {"ZIP": written, "WINDOW": "24", "LOW": "-3"}


@pytest.mark.parametrize(
    "old, new",
    [
        ("MARKET_API_KEY]", "market-api-key]"),  # environment.secrets item
        ("libgomp1", "Libgomp1"),  # environment.system_packages item
    ],
)
def test_an_editor_flags_what_validate_refuses_in_the_new_keys(cli, old, new):
    """The schema carries validate's name patterns, so the editor flags a bad name as it is typed."""
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(cli("bundle", "schema").out))
    assert old in CONFIGURED
    assert len(list(validator.iter_errors(yaml.safe_load(CONFIGURED.replace(old, new, 1))))) == 1


def test_an_editor_flags_a_bad_variable_name_and_sha256(cli):
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(cli("bundle", "schema").out))
    data = yaml.safe_load(CONFIGURED)
    data["environment"]["variables"] = {"bad name": "x"}
    data["artifacts"]["remote"][0]["sha256"] = "XYZ"
    assert len(list(validator.iter_errors(data))) == 2
