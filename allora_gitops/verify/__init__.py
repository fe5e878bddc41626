"""Checking a GitOps repository: kustomize builds, schemas (core + CRDs), policy rules, hadolint."""

from __future__ import annotations

from allora_gitops.verify.repo import VerifyReport, check_objects, is_bare_repository, verify_bare, verify_repo

__all__ = ["VerifyReport", "check_objects", "is_bare_repository", "verify_bare", "verify_repo"]
