"""Seasonal profile: trend plus the mean deviation at the block's position in a 24-block cycle.

An ``async`` prediction function with no third-party dependency: the profile
is fitted by ``train.py`` and loaded once, at import time, from artifacts/.
"""

import json
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
PROFILE = json.loads((ARTIFACTS / "profile.json").read_text())


async def run(nonce: int) -> float:
    """Predict the topic's value for the submission window at block height ``nonce``."""
    p = PROFILE
    trend = p["level"] + p["slope"] * (nonce - p["anchor"])
    return round(trend + p["season"][nonce % p["period"]], 6)
