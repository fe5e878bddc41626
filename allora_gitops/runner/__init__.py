"""Local predictions: ``allora-bundle run`` runs the container's bootstrap.pyz in dry-run mode.

``environment`` builds and caches the isolated virtualenv a bundle runs in;
``local`` runs bootstrap.pyz there and reads its JSON lines back.
"""
