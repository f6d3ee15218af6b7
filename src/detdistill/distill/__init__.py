"""Distillation losses (Chen et al., NIPS 2017)."""

from detdistill.distill.losses import (
    bound_active_fraction,
    bounded_regression_loss,
    classification_distillation_loss,
    hint_loss,
    regression_distillation_loss,
    weighted_soft_binary_cross_entropy,
    weighted_soft_cross_entropy,
)

__all__ = [
    "bound_active_fraction",
    "bounded_regression_loss",
    "classification_distillation_loss",
    "hint_loss",
    "regression_distillation_loss",
    "weighted_soft_binary_cross_entropy",
    "weighted_soft_cross_entropy",
]
