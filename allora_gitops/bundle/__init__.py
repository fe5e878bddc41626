"""The bundle: model.yaml, validation, the reproducible archive, scaffolding."""
