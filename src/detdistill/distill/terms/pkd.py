"""PKD: imitation of per-channel standardised features (Cao et al., "PKD: General Distillation Framework for
Object Detectors via Pearson Correlation Coefficient", NeurIPS 2022; mmrazor's configs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...typed_config import Annotated, positive

from .context import TermContext
from .registry import NonNegative, TermConfig, register_term


@dataclass
class PKDConfig(TermConfig):
    weight: NonNegative = 6.0
    """w (mmrazor's Faster R-CNN config: 6), on the sum over paired levels."""
    eps: Annotated[float, positive()] = 1e-6
    """ε added to each channel's variance before the square root (authors: 1e-6)."""
    min_std_ratio: NonNegative = 0.1
    """The student's per-channel std is floored at this share of the teacher's, so a constant (collapsed or
    freshly initialised) student feature gets a bounded gradient instead of one scaled by 1/√ε."""


def _channel_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
    return mean, torch.sqrt(var + eps)


def pkd_loss(student: Tensor, teacher: Tensor, eps: float = 1e-6, min_std_ratio: float = 0.1) -> Tensor:
    r"""Half the mean squared difference of the per-channel standardised features.

    .. math::
        \hat T = \frac{T - \mu_T}{\sqrt{\sigma_T^2 + \varepsilon}}, \quad
        \hat S = \frac{S' - \mu_S}{\max(\sqrt{\sigma_S^2 + \varepsilon},\ r\,\sqrt{\sigma_T^2 + \varepsilon})},
        \quad L = \frac{1}{2\,|T|} \sum (\hat S - \hat T)^2

    μ and σ² per channel over N×H×W (biased variance). With r = 0 this is the authors' loss; r > 0 only acts
    while the student's channel is nearly constant (its std below r × the teacher's), where the authors'
    gradient grows as 1/√ε.

    Args:
        student: N×C×H×W adapted student feature (receives the gradient).
        teacher: N×C×H×W teacher feature (detached).
    """
    if student.shape != teacher.shape or student.dim() != 4:
        raise ValueError(f"pkd_loss: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must be "
                         "equal N×C×H×W shapes")
    t_mean, t_std = _channel_stats(teacher.detach(), eps)
    s_mean, s_std = _channel_stats(student, eps)
    t_hat = (teacher.detach() - t_mean) / t_std
    s_hat = (student - s_mean) / torch.maximum(s_std, min_std_ratio * t_std)
    return 0.5 * (s_hat - t_hat).pow(2).mean()


@register_term("pkd", reads=("features",), config=PKDConfig, default_weight=6.0, adapter_init="kaiming",
               summary="MSE/2 of per-channel standardised features (Pearson), summed over levels",
               reference="Cao et al. NeurIPS 2022 (PKD); mmrazor configs/distill/mmdet/pkd")
def compute(ctx: TermContext, settings: PKDConfig, cfg) -> Tensor:  # noqa: ANN001
    """Sum over paired levels of :func:`pkd_loss` (mmrazor sums its per-level losses). Its adapters start
    from a random (Kaiming) init: a zero adapter's output is constant, which standardisation cannot use."""
    return torch.stack([pkd_loss(p.adapted.float(), p.teacher.float(), settings.eps, settings.min_std_ratio)
                        for p in ctx.features]).sum()
