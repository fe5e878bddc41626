"""The GitOps repository side: paths (layout), clone/commit/push (repo), rendered diffs (review), scaffolding."""
