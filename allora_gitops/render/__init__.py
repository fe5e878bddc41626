"""Rendering: one DeploymentSpec in, a tree of repo-relative path → text out (see ``tree``)."""

from __future__ import annotations

from allora_gitops.render.spec import DeploymentSettings, DeploymentSpec
from allora_gitops.render.tree import (
    ArgoCDSettings,
    check_tree,
    render_argocd,
    render_base,
    render_build,
    render_deployment,
    render_overlay,
    write_tree,
)

__all__ = [
    "ArgoCDSettings",
    "DeploymentSettings",
    "DeploymentSpec",
    "check_tree",
    "render_argocd",
    "render_base",
    "render_build",
    "render_deployment",
    "render_overlay",
    "write_tree",
]
