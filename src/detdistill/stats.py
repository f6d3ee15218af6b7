"""Small statistics shared by the ablation and the demo (standard library only)."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

# Two-sided 95 % quantiles of Student's t (0.975) for 1..30 degrees of freedom; beyond, the normal 1.96 is
# within 2 % (a table avoids a SciPy dependency for one number).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


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
