"""Prediction function of the {{ cookiecutter.name }} bundle.

The platform calls ``run(nonce)`` once per submission window of the topic,
with the window's block height. Return a float, int, str or Decimal (or a
dict of label -> scalar for multi-output topics); ``async def run`` works too.

Load models and other artifacts once, at import time, from the bundle's
artifacts/ directory, for example:

    import joblib
    MODEL = joblib.load(ARTIFACTS / "model.pkl")

and add the packages you import to requirements.txt with pinned versions.
"""

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"


def run(nonce: int) -> float:
    """Predict the topic's value for the submission window at block height ``nonce``."""
    return 42.0
