"""Links from a submission's tx hash to the network's block explorer.

The explorers are the ones the Allora docs list per network (https://docs.allora.network/reference/networks:
testnet ``https://explorer.testnet.allora.network/allora-testnet-1``, mainnet ``https://explorer.allora.network/``);
both are Ping.pub-style explorers, whose transaction page is ``<explorer>/<chain-id>/tx/<HASH>``. A platform
that prefers another explorer sets ``ALLORA_EXPLORER_TX_URL_TESTNET`` / ``ALLORA_EXPLORER_TX_URL_MAINNET`` to
a URL template with one ``{tx_hash}`` placeholder (read by the CLI and by ``serve``).

A link is only ever built from a hash that is exactly 64 hexadecimal digits (what the chain returns and what
``submission_results`` accepts), so nothing a reporter sends can inject into the URL or the page around it.
"""

from __future__ import annotations

import os
import re
from typing import Optional
from urllib.parse import urlsplit

from allora_gitops.errors import UsageError

PLACEHOLDER = "{tx_hash}"
DEFAULT_TX_URLS = {
    "testnet": "https://explorer.testnet.allora.network/allora-testnet-1/tx/{tx_hash}",
    "mainnet": "https://explorer.allora.network/allora-mainnet-1/tx/{tx_hash}",
}
TX_URL_ENV = "ALLORA_EXPLORER_TX_URL_{network}"  # ALLORA_EXPLORER_TX_URL_TESTNET, …_MAINNET
_TX_HASH = re.compile(r"^[0-9A-Fa-f]{64}$")


def explorer_tx_template(network: str) -> Optional[str]:
    """The transaction-page URL template of ``network``: ``$ALLORA_EXPLORER_TX_URL_<NETWORK>``, else the
    default above; None for a network without one. Raises ``UsageError`` naming the variable when it is not
    an http(s) URL with exactly one ``{tx_hash}``."""
    name = TX_URL_ENV.format(network=network.upper())
    configured = os.environ.get(name, "").strip()
    if not configured:
        return DEFAULT_TX_URLS.get(network)
    parts = urlsplit(configured)
    if parts.scheme not in ("http", "https") or not parts.netloc or configured.count(PLACEHOLDER) != 1 or "{" in configured.replace(PLACEHOLDER, ""):
        raise UsageError(f"${name} must be an http(s) URL with one {PLACEHOLDER} placeholder, e.g. {DEFAULT_TX_URLS['testnet']}")
    return configured


def explorer_tx_url(network: str, tx_hash: Optional[str]) -> Optional[str]:
    """The explorer page of one transaction, or None when there is no hash, the hash is not 64 hex digits, or
    the network has no explorer. Hashes are shown upper-case, as Cosmos SDK explorers and the chain do."""
    if not tx_hash or not _TX_HASH.match(tx_hash):
        return None
    template = explorer_tx_template(network)
    return template.replace(PLACEHOLDER, tx_hash.upper()) if template else None


def check_explorer_settings() -> None:
    """Read every network's template once: ``UsageError`` for a malformed ``$ALLORA_EXPLORER_TX_URL_*``."""
    from allora_gitops.constants import NETWORKS

    for network in NETWORKS:
        explorer_tx_template(network)
