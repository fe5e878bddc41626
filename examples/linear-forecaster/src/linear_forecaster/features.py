"""Features of a block height, shared by training and prediction so they cannot drift apart."""

import numpy as np


def features(nonce: int) -> np.ndarray:
    """Cyclic position of the block height within short and long windows."""
    return np.array(
        [
            (nonce % 100) / 100.0,
            (nonce % 1000) / 1000.0,
            np.sin(nonce / 1000.0),
        ],
        dtype=np.float64,
    )
