"""The documentation site's generator: reference pages rendered from the code at build time (not shipped)."""
