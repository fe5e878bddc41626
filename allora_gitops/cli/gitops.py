"""``allora-gitops``: the platform CLI (render, verify, publish, …). Command groups live in their own modules."""

from __future__ import annotations

from allora_gitops.cli import db, image, render, verify
from allora_gitops.cli.app import entry, new_app

app = new_app("allora-gitops", "Publish Allora model bundles to a GitOps repository that Argo CD syncs.")
db.register(app)
image.register(app)
render.register(app)
verify.register(app)

main = entry(app)

if __name__ == "__main__":
    main()
