"""Small statistics helpers shared by the demo, the benches and the replay report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no data."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def percentiles(values: Iterable[float], ps: Iterable[float]) -> dict[float, float]:
    data = sorted(values)
    return {p: percentile(data, p) for p in ps}
