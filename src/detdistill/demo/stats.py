"""Paired statistics over seeds for the demo (they live in :mod:`detdistill.stats`, shared with the ablation)."""

from ..stats import PairedDifference, mean_std, paired_difference, t_quantile_975

__all__ = ["PairedDifference", "mean_std", "paired_difference", "t_quantile_975"]
