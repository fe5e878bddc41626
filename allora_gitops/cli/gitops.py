"""``allora-gitops``: the platform CLI (render, verify, publish, …). Command groups live in their own modules."""

from __future__ import annotations

from allora_gitops.cli import argocd, chain, db, diff, image, localissuer, logs, platform_image, publish, render, repo, results, sandbox, serve, status, verify
from allora_gitops.cli.app import entry, new_app

app = new_app("allora-gitops", "Publish Allora model bundles to a GitOps repository that Argo CD syncs.", platform=True)
repo.register(app)
render.register(app)
verify.register(app)
publish.register(app)
diff.register(app)
status.register(app)
image.register(app)
platform_image.register(app)
db.register(app)
results.register(app)
logs.register_platform(app)
sandbox.register(app)
serve.register(app)
localissuer.register(app)
argocd.register(app)
chain.register(app)

main = entry(app)

if __name__ == "__main__":
    main()
