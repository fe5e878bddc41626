"""``allora-bundle``: the model developer's CLI. Must start fast: heavy imports live inside commands."""

from __future__ import annotations

from allora_gitops.cli import run
from allora_gitops.cli.app import entry, new_app

app = new_app("allora-bundle", "Create, check, build and run Allora model bundles.")
run.register(app)


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON schema of model.yaml (for editors: yaml-language-server, VS Code)."""
    import json

    from allora_gitops.bundle.manifest import manifest_json_schema

    print(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))


main = entry(app)

if __name__ == "__main__":
    main()
