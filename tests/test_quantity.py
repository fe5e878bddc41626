"""Resource quantities are rendered the way the API server stores them, or Argo CD never sees them in sync.

The expected strings are what ``resource.MustParse(in).String()`` gives in k8s.io/apimachinery
(the rules are listed in ``allora_gitops/render/quantity.py``).
"""

from __future__ import annotations

import pytest

from allora_gitops.render.quantity import canonical_quantity

CANONICAL = [
    # decimal (cores, or bytes with SI prefixes): the largest multiple-of-3 exponent with an integer mantissa
    ("0.5", "500m"),
    (".5", "500m"),
    ("1000m", "1"),
    ("1.0", "1"),
    ("1500m", "1500m"),
    ("1.5", "1500m"),
    ("2.50", "2500m"),
    ("250m", "250m"),
    ("2", "2"),
    ("2000", "2k"),
    ("1000M", "1G"),
    ("1500k", "1500k"),
    ("0.0000000001", "1n"),  # rounded up to a whole nano
    ("0", "0"),
    ("0m", "0"),
    # binary: divided by 1024 while whole; below 1024 or fractional → decimal
    ("1024Mi", "1Gi"),
    ("2048Mi", "2Gi"),
    ("1.5Gi", "1536Mi"),
    ("0.5Gi", "512Mi"),
    ("512Mi", "512Mi"),
    ("1024Ki", "1Mi"),
    ("1.5Ki", "1536"),
    ("0.5Ki", "512"),
    ("1.1Ki", "1126400m"),
    ("1Ei", "1Ei"),
    ("1024Ei", "9223372036854775807"),  # capped at 2^63-1, like ParseQuantity
]


@pytest.mark.parametrize(("given", "stored"), CANONICAL)
def test_quantities_are_written_as_the_api_server_stores_them(given, stored):
    assert canonical_quantity(given) == stored


@pytest.mark.parametrize("stored", sorted({s for _, s in CANONICAL}))
def test_a_canonical_quantity_is_its_own_canonical_form(stored):
    assert canonical_quantity(stored) == stored


@pytest.mark.parametrize("bad", ["", "1e3", "2 GB", "-1", "1.", "Mi", "1mi", "1KiB"])
def test_what_is_not_a_quantity_is_refused(bad):
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        canonical_quantity(bad)


def test_the_rendered_overlay_carries_the_canonical_forms(make_spec):
    from allora_gitops import constants as C
    from allora_gitops.render import render_deployment

    spec = make_spec("testnet", cpu="0.5", cpu_limit="1000m", memory="1024Mi")
    patch = render_deployment(spec)[f"{C.deployment_overlay_dir(spec.name, 'testnet')}/deployment-patch.yaml"]

    import yaml

    (container,) = yaml.safe_load(patch)["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
