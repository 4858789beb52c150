"""Figures and where they go: percentiles, latency summaries, bench/results/<name>.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ROOT

RESULTS_DIR = ROOT / "bench" / "results"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = sorted(seconds)
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min_ms": round(values[0] * 1000, 3),
        "mean_ms": round(sum(values) / len(values) * 1000, 3),
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3),
    }


def write_results(name: str, results: dict[str, Any], quick: bool = False) -> Path:
    """bench/results/<name>.json; a `--quick` run writes <name>.quick.json and leaves the full run's figures."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.quick.json" if quick else RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path
