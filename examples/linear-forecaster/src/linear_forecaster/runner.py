"""Linear forecaster: a least-squares model over block-height features.

The weights are fitted by ``train.py`` and shipped in ``artifacts/weights.npy``;
they are loaded once, at import time, as the platform guide recommends.
"""

from pathlib import Path

import numpy as np

from .features import features

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
_WEIGHTS = np.load(ARTIFACTS / "weights.npy")  # [w1, w2, w3, bias]


def run(nonce: int) -> float:
    """Predict the topic's value for the submission window at block height ``nonce``."""
    return round(float(features(nonce) @ _WEIGHTS[:-1] + _WEIGHTS[-1]), 6)
