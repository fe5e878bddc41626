"""buildah push to a real registry (docker-registry on loopback), without building: the stand-in base image is pushed.

The full path (build the example, push, record, write back) is in test_image_build.py; this one
checks the push itself in seconds: TLS verification is off for loopback only, and the digest
buildah reports is the one the registry serves.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


def test_buildah_push_to_a_loopback_registry_reports_the_served_digest(base_image, oci_registry):
    from allora_gitops.image.builder import BuildahBuilder
    from allora_gitops.image.registry import manifest_digest

    builder = BuildahBuilder(lambda _line: None)
    ref = f"{oci_registry.prefix()}/python:pushed"
    builder._run_quiet(*builder._global(), "tag", base_image.ref, ref)

    digest = builder.push(ref)

    assert digest == oci_registry.manifest_digest("allora/python", "pushed")
    assert manifest_digest(ref) == digest  # skopeo, from the served bytes


def test_buildah_push_to_an_unreachable_registry_is_one_line(base_image, unreachable_registry):
    from allora_gitops.errors import ImageBuildError
    from allora_gitops.image.builder import BuildahBuilder

    builder = BuildahBuilder(lambda _line: None)
    ref = f"{unreachable_registry}/allora/python:nowhere"
    builder._run_quiet(*builder._global(), "tag", base_image.ref, ref)

    with pytest.raises(ImageBuildError) as err:
        builder.push(ref)

    assert err.value.message.startswith(f"cannot push {ref}: ") and "connection refused" in err.value.message
    assert "\n" not in err.value.message
