"""Paired statistics over seeds: mean ± std per model, and the paired difference with its 95 % CI."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

from ..stats import t_quantile_975


@dataclass(frozen=True)
class PairedDifference:
    """``treated − control`` paired by seed: mean, sample std of the differences, 95 % CI, wins."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    wins: int

    def as_dict(self) -> dict:
        return asdict(self)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    if not values:
        raise ValueError("mean_std: no values")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(control: Sequence[float], treated: Sequence[float]) -> PairedDifference:
    """The paired difference and its t-interval; with one pair the interval is unbounded (nan)."""
    if len(control) != len(treated) or not control:
        raise ValueError(f"paired_difference needs equally many values, got {len(control)} and {len(treated)}")
    diffs = [t - c for c, t in zip(control, treated)]
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        low = high = math.nan
    else:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return PairedDifference(n, mean, std, low, high, sum(d > 0 for d in diffs))
