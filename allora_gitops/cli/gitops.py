"""``allora-gitops``: the platform CLI (render, verify, publish, …). Command groups live in their own modules."""

from __future__ import annotations

<<<<<<< HEAD
from allora_gitops.cli import db, diff, image, publish, render, repo, serve, status, verify
=======
from allora_gitops.cli import db, diff, image, publish, render, repo, results, status, verify
>>>>>>> main
from allora_gitops.cli.app import entry, new_app

app = new_app("allora-gitops", "Publish Allora model bundles to a GitOps repository that Argo CD syncs.", platform=True)
repo.register(app)
render.register(app)
verify.register(app)
publish.register(app)
diff.register(app)
status.register(app)
image.register(app)
db.register(app)
<<<<<<< HEAD
serve.register(app)
=======
results.register(app)
>>>>>>> main

main = entry(app)

if __name__ == "__main__":
    main()
