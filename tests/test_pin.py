"""Digest write-back (`pin-image`) against a real registry (docker-registry on loopback) and a real bare repository.

The image pushed here is a tiny one made by the fixture (skopeo copy from an OCI layout): the
registry, the digest check and the write-back are real; building with buildah is covered once,
end to end, in test_image_push.py.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from allora_gitops import constants as C
from tests.fixtures.git import git, remote_file
from tests.fixtures.registry import push_tiny_image

NAME = "linear-forecaster"


@pytest.fixture
def published(gitops_remote, make_spec, oci_registry):
    """The example on testnet and mainnet, committed to main, its image REPO:TAG in the loopback registry."""
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    from allora_gitops.render import render_deployment

    tree = {}
    for network in C.NETWORKS:
        spec = make_spec(network, image_registry=oci_registry.prefix())
        tree.update(render_deployment(spec))
    persist(parse_remote(gitops_remote), TreeChange(files=tree), branch="main", message="deploy both\n")
    return spec.image


@pytest.fixture
def pushed(published, tmp_path):
    return published, push_tiny_image(published, tmp_path)


def overlay(repo: Path, ref: str, network: str, f: str = "kustomization.yaml") -> str:
    return remote_file(repo, ref, f"{C.deployment_overlay_dir(NAME, network)}/{f}") or ""


def kustomize_images(repo: Path, ref: str, network: str, tmp_path: Path) -> list[str]:
    work = tmp_path / f"checkout-{ref.replace('/', '-')}-{network}"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", "-b", ref, str(repo), str(work)], check=True)
    out = subprocess.run(
        ["kubectl", "kustomize", str(work / C.deployment_overlay_dir(NAME, network))], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip().startswith("image:")]


def test_pin_writes_the_digest_on_a_new_review_branch_and_kustomize_renders_it(cli, gitops_remote, pushed, oci_registry, tmp_path):
    image, digest = pushed
    repository = image.rsplit(":", 1)[0]
    assert oci_registry.manifest_digest(repository.split("/", 1)[1], digest) == digest  # the registry's own word

    r = cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--version", "1.0.0")

    assert r.code == 0, r.err
    branch = C.pin_branch(NAME, "testnet", "1.0.0")
    assert f"pinned {NAME} on testnet to {digest}: commit " in r.out and f"on {branch}" in r.out
    assert f"    digest: {digest}\n" in overlay(gitops_remote, branch, "testnet")
    assert "digest:" not in overlay(gitops_remote, "main", "testnet")  # main is changed only through review
    assert kustomize_images(gitops_remote, branch, "testnet", tmp_path) == [f"image: {image}@{digest}"]  # the tag stays readable, the digest decides
    # the checkov skip for image digests is gone from the pinned overlay's Deployment, the other skip stays
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / f"checkout-{branch.replace('/', '-')}-testnet" / C.deployment_overlay_dir(NAME, "testnet"))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "CKV_K8S_43" not in rendered and "CKV_K8S_40" in rendered
    subject = git(gitops_remote, "log", "-1", "--format=%s", branch).strip()
    assert subject == f"pin(testnet): {NAME} image {image} to {digest}"

    again = cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--version", "1.0.0", "--network", "testnet")
    assert again.code == 0 and "already pinned" in again.out


def test_pin_goes_on_the_open_review_branch(cli, gitops_remote, make_spec, oci_registry, tmp_path):
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    from allora_gitops.render import render_deployment

    spec = make_spec("testnet", image_registry=oci_registry.prefix())
    review = C.review_branch(NAME, "testnet", "1.0.0")
    persist(parse_remote(gitops_remote), TreeChange(files=render_deployment(spec)), branch=review, message="deploy\n")
    digest = push_tiny_image(spec.image, tmp_path)

    r = cli("gitops", "pin-image", NAME, "--image", spec.image, "--digest", digest, "--repo", gitops_remote, "--version", "1.0.0")

    assert r.code == 0, r.err
    assert f"on {review}" in r.out
    assert f"digest: {digest}" in overlay(gitops_remote, review, "testnet")
    assert C.pin_branch(NAME, "testnet", "1.0.0") not in git(gitops_remote, "branch", "--list")


def test_a_digest_the_registry_does_not_hold_is_refused(cli, gitops_remote, pushed):
    image, _ = pushed
    missing = "sha256:" + "0" * 64
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "pin-image", NAME, "--image", image, "--digest", missing, "--repo", gitops_remote)

    assert r.code == 1
    assert r.err.splitlines() == [f"error: {image.rsplit(':', 1)[0]}@{missing} is not in the registry {image.split('/')[0]} (no such manifest)"]
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before


def test_a_digest_the_tag_no_longer_names_is_refused_naming_both(cli, gitops_remote, pushed, oci_registry, tmp_path):
    """After a tag is pushed again, its old digest is other bytes than the tag the overlay shows (docker/cli #4545)."""
    image, old = pushed
    new = push_tiny_image(image, tmp_path, note="pushed again")
    assert new != old and oci_registry.manifest_digest(image.split("/", 1)[1].rsplit(":", 1)[0], image.rsplit(":", 1)[1]) == new
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "pin-image", NAME, "--image", image, "--digest", old, "--repo", gitops_remote)

    assert r.code == 1
    assert r.err.splitlines() == [
        f"error: {image} resolves to {new}, not {old}: the tag was pushed again or the digest is another image's; "
        "pin the digest the tag names, after checking it holds the reviewed build"
    ]
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert cli("gitops", "pin-image", NAME, "--image", image, "--digest", new, "--repo", gitops_remote, "--version", "1.0.0").code == 0


def test_another_bundles_image_under_the_tag_is_refused(cli, gitops_remote, published, tmp_path):
    """The image's own bundle label must name the sha256 the overlay runs (annotations of the overlay)."""
    from tests.fixtures.rendered import EXAMPLE_SHA256

    other = "f" * 64
    assert overlay(gitops_remote, "main", "mainnet").count(EXAMPLE_SHA256) == 1  # the overlay says which bundle it runs
    digest = push_tiny_image(published, tmp_path, labels={C.ANNOTATION_BUNDLE_SHA256: other})
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "pin-image", NAME, "--image", published, "--digest", digest, "--repo", gitops_remote, "--network", "mainnet")

    assert r.code == 1
    repository = published.rsplit(":", 1)[0]
    assert r.err.splitlines() == [
        f"error: {repository}@{digest} is labelled {C.ANNOTATION_BUNDLE_SHA256}={other}, but the overlay runs bundle sha256 "
        f"{EXAMPLE_SHA256}: it is another bundle's image"
    ]
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before
    # the right label passes
    right = push_tiny_image(published, tmp_path, labels={C.ANNOTATION_BUNDLE_SHA256: EXAMPLE_SHA256})
    assert cli("gitops", "pin-image", NAME, "--image", published, "--digest", right, "--repo", gitops_remote, "--network", "mainnet").code == 0


def test_an_unreachable_registry_is_one_line_and_nothing_is_written(cli, gitops_remote, unreachable_registry):
    image = f"{unreachable_registry}/allora/{NAME}:1.0.0-3f6c1d2e4b5a"
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "pin-image", NAME, "--image", image, "--digest", "sha256:" + "a" * 64, "--repo", gitops_remote)

    assert r.code == 1
    assert len(r.err.splitlines()) == 1
    assert r.err.startswith(f"error: cannot reach the registry {unreachable_registry} for ") and "connection refused" in r.err
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--digest", "sha256:xyz"), "error: --digest 'sha256:xyz': expected sha256:<64 hex digits>"),
        (("--image", "{repo}"), "error: --image '{repo}': expected REPO:TAG, as the overlays reference it (the digest goes in --digest)"),
        (("--image", "{image}@{digest}"),
         "error: --image '{image}@{digest}': expected REPO:TAG, as the overlays reference it (the digest goes in --digest)"),
        (("--network", "devnet"), "error: --network 'devnet': expected one of testnet, mainnet"),
    ],
)
def test_bad_arguments_are_one_usage_line_and_touch_nothing(cli, gitops_remote, pushed, args, message):
    image, digest = pushed
    values = {"image": image, "digest": digest, "repo": image.rsplit(":", 1)[0]}
    given = dict(zip(args[::2], (a.format(**values) for a in args[1::2])))
    before = git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)")

    r = cli("gitops", "pin-image", NAME, *[x for k, v in {"--image": image, "--digest": digest, **given}.items() for x in (k, v)], "--repo", gitops_remote)

    assert (r.code, r.err.splitlines()) == (2, [message.format(**values)])  # before the registry is asked: no ==> line
    assert git(gitops_remote, "for-each-ref", "--format=%(refname) %(objectname)") == before


def test_tls_verification_is_off_for_loopback_registries_only():
    from allora_gitops.image.registry import tls_verify_args

    for ref in ("127.0.0.1:5000/a/b:1", "localhost:5000/a:1", "localhost/a:1", "[::1]:5000/a:1", "127.9.9.9/a@sha256:" + "a" * 64):
        assert tls_verify_args(ref) == ["--tls-verify=false"], ref
    for ref in ("ghcr.io/org/a:1", "localhost.example.com/a:1", "127.0.0.1.nip.io/a:1", "10.0.0.1:5000/a:1", "a/b:1", "python:3.11-slim"):
        assert tls_verify_args(ref) == [], ref


def test_two_write_backs_racing_on_one_branch_both_land(gitops_remote, pushed):
    from allora_gitops.gitops.pin import PinRequest, pin_image

    image, digest = pushed
    results, errors = {}, []

    def pin(network: str) -> None:
        try:
            results[network] = pin_image(
                PinRequest(repo=str(gitops_remote), name=NAME, image=image, digest=digest, networks=(network,), branch="pins")
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pin, args=(n,)) for n in C.NETWORKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    for network in C.NETWORKS:
        assert f"digest: {digest}" in overlay(gitops_remote, "pins", network)
    subjects = git(gitops_remote, "log", "--format=%s", "main..pins").splitlines()
    assert sorted(subjects) == sorted(f"pin({n}): {NAME} image {image} to {digest}" for n in C.NETWORKS)


def test_pin_kustomization_keeps_comments_and_changes_one_line():
    from allora_gitops.gitops.pin import pin_kustomization

    text = "# keep me\nimages:\n  - name: a\n    newName: r/a\n    newTag: 1-abc\n"
    out = pin_kustomization(text, "a", "r/a:1-abc", "sha256:" + "b" * 64)
    assert out == text + f"    digest: sha256:{'b' * 64}\n"


def test_verify_on_the_base_branch_requires_mainnet_pinned_and_passes_once_it_is(cli, gitops_remote, pushed, tmp_path):
    image, digest = pushed
    main = tmp_path / "main"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(gitops_remote), str(main)], check=True)

    r = cli("gitops", "verify", main)

    assert r.code == 1
    findings = [line for line in r.out.splitlines() if line.endswith("[image-digest]")]
    assert findings == [
        f"{C.deployment_overlay_dir(NAME, 'mainnet')}: error: Deployment/{NAME}-mainnet: container model: image {image} is not pinned "
        "by digest (required on the base branch for mainnet: build-image --push --write-back, or pin-image) [image-digest]"
    ]  # testnet may run the tag until it is pinned
    assert cli("gitops", "verify", main, "--no-require-digest").code == 0

    assert cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--network", "mainnet", "--branch", "main").code == 0
    subprocess.run(["git", "-C", str(main), "pull", "-q", "--ff-only"], check=True)
    r = cli("gitops", "verify", main)
    assert r.code == 0, r.out


def test_diff_shows_a_digest_change_as_one_summary_line(cli, gitops_remote, pushed):
    image, digest = pushed
    assert cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--network", "testnet", "--version", "1.0.0").code == 0

    r = cli("gitops", "diff", "--repo", gitops_remote, "--base", "main", C.pin_branch(NAME, "testnet", "1.0.0"))

    assert r.code == 1, r.err
    summary = [line for line in r.out.splitlines() if line.startswith("#     ")]
    assert summary == [f"#     image: {image} → {image}@{digest}"]
    changed = [line for line in r.out.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert sorted(changed) == sorted([
        "-    checkov.io/skip2: CKV_K8S_43=the image is built after rendering; its tag is derived from the bundle sha256 and never reused",
        f"-        image: {image}",
        f"+        image: {image}@{digest}",
    ])  # the rendered objects: the image line, and the skip that no longer holds


def test_verify_reads_a_bare_repository_as_its_base_branch(cli, gitops_remote, pushed):
    image, digest = pushed
    mainnet = C.deployment_overlay_dir(NAME, "mainnet")

    r = cli("gitops", "verify", gitops_remote)

    assert r.code == 1, r.err
    assert [line.split(": error: ", 1)[0] for line in r.out.splitlines() if line.endswith("[image-digest]")] == [mainnet]
    assert "3 overlays" in r.err  # testnet, mainnet and the platform's own platform/
    assert cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--network", "mainnet", "--branch", "main").code == 0
    assert cli("gitops", "verify", gitops_remote).code == 0
    # a usage mistake is exit 2, one line
    r = cli("gitops", "verify", gitops_remote, "--changed-since", "main")
    assert (r.code, len(r.err.splitlines())) == (2, 1) and "bare repository" in r.err


def test_verify_on_a_review_branch_warns_that_merging_leaves_mainnet_unpinned(cli, gitops_remote, pushed, tmp_path):
    image, digest = pushed
    work = tmp_path / "review"
    subprocess.run(["git", "clone", "-q", str(gitops_remote), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", C.review_branch(NAME, "mainnet", "1.0.0")], check=True)
    warning = (
        f"{C.deployment_overlay_dir(NAME, 'mainnet')}: warning: Deployment/{NAME}-mainnet: container model: image {image} is not "
        "pinned by digest; merged as it is, the base branch fails verify (mainnet must be pinned there): pin it on this branch "
        "first (pin-image) [image-digest]"
    )

    r = cli("gitops", "verify", work)

    assert r.code == 0, r.out  # a warning: the review branch itself is fine
    assert [line for line in r.out.splitlines() if "[image-digest]" in line] == [warning]
    # the same branch read from the bare repository
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD"], check=True)
    r = cli("gitops", "verify", gitops_remote, "--ref", C.review_branch(NAME, "mainnet", "1.0.0"))
    assert r.code == 0 and [line for line in r.out.splitlines() if "[image-digest]" in line] == [warning]
    # pinned on the branch: no warning
    assert cli("gitops", "pin-image", NAME, "--image", image, "--digest", digest, "--repo", gitops_remote, "--network", "mainnet",
               "--branch", C.review_branch(NAME, "mainnet", "1.0.0")).code == 0  # fmt: skip
    subprocess.run(["git", "-C", str(work), "pull", "-q", "--ff-only", "origin", C.review_branch(NAME, "mainnet", "1.0.0")], check=True)
    r = cli("gitops", "verify", work)
    assert r.code == 0 and "[image-digest]" not in r.out
