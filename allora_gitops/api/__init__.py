"""The platform's HTTP API: ``create_app(settings)`` (FastAPI), served by ``allora-gitops serve``.

Routes translate a request and call the same core functions the CLI uses (``inspect_archive``,
the records API, ``publish_recorded``/``promote``/``rollback``/``retire``), so the GitOps review
stays the only way to the cluster. Needs the ``platform`` extra (FastAPI, uvicorn, python-multipart).
"""
