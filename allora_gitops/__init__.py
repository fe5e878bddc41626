"""allora-gitops: host prediction models on the Allora network through GitOps."""

__version__ = "0.1.0"
