"""Fit the forecaster's weights on synthetic history and write artifacts/weights.npy.

Run it from this directory with ``python train.py``; the result is deterministic
(seeded generator, .npy format without timestamps), so the committed artifact
and a fresh one are byte-identical.
"""

from pathlib import Path

import numpy as np

from src.linear_forecaster.features import features

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(7)
    nonces = rng.integers(1_000_000, 5_000_000, size=2_000)
    x = np.stack([features(int(n)) for n in nonces])
    true_w, true_b = np.array([12.0, -3.5, 7.25]), 100.0
    y = x @ true_w + true_b + rng.normal(0.0, 0.5, size=len(nonces))
    design = np.hstack([x, np.ones((len(x), 1))])
    weights, *_ = np.linalg.lstsq(design, y, rcond=None)
    out = HERE / "artifacts" / "weights.npy"
    np.save(out, np.round(weights, 6))
    print(f"wrote {out.relative_to(HERE)}: {np.round(weights, 4).tolist()}")


if __name__ == "__main__":
    main()
