"""The Allora model runtime: runs a bundle's ``run(nonce)`` for every submission window.

It ships into every model image as one file (``/workspace/bootstrap.pyz``, a zipapp of
this package) and imports nothing from ``allora_gitops``; ``allora_gitops`` imports
its :mod:`~allora_runtime.contract` instead. Third-party imports: PyYAML, allora-sdk
(live mode only) and prometheus-client (optional: metrics are skipped with a warning
when it is missing, except in live mode where it is required).
"""
