"""Fit the seasonal profile: the mean value at each position of a 24-block cycle, plus the overall trend.

Deterministic (seeded synthetic history), standard library only. Writes
artifacts/profile.json; .allorabundleignore keeps this script out of the archive.

    python train.py
"""

import json
import math
import random
from pathlib import Path

PERIOD = 24


def history(n: int = 5000, seed: int = 11) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    start = 4_000_000
    return [(h, 100 + 0.0004 * (h - start) + 3 * math.sin(2 * math.pi * (h % PERIOD) / PERIOD) + rng.gauss(0, 0.5))
            for h in range(start, start + n)]


def fit(rows: list[tuple[int, float]]) -> dict:
    n = len(rows)
    mean_h = sum(h for h, _ in rows) / n
    mean_v = sum(v for _, v in rows) / n
    slope = sum((h - mean_h) * (v - mean_v) for h, v in rows) / sum((h - mean_h) ** 2 for h, _ in rows)
    residuals: dict[int, list[float]] = {}
    for h, v in rows:
        residuals.setdefault(h % PERIOD, []).append(v - (mean_v + slope * (h - mean_h)))
    return {
        "period": PERIOD,
        "anchor": round(mean_h, 3),
        "level": round(mean_v, 6),
        "slope": round(slope, 9),
        "season": [round(sum(r) / len(r), 6) for _, r in sorted(residuals.items())],
    }


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "artifacts" / "profile.json"
    out.write_text(json.dumps(fit(history()), indent=1) + "\n")
    print(f"wrote {out}")
