"""Small statistics shared by the ablation and the demo (standard library only)."""

from __future__ import annotations

# Two-sided 95 % quantiles of Student's t (0.975) for 1..30 degrees of freedom; beyond, the normal 1.96 is
# within 2 % (a table avoids a SciPy dependency for one number).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96
