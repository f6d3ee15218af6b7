"""FGD's focal and attention parts (Yang et al., "Focal and Global Knowledge Distillation for Detectors",
CVPR 2022); the GcBlock global-relation part is not implemented (optional in the issue)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...typed_config import Annotated, positive

from .context import TermContext
from .masks import fgd_masks
from .registry import NonNegative, TermConfig, register_term


@dataclass
class FGDConfig(TermConfig):
    weight: NonNegative = 1.0
    """Multiplier on the whole term (the authors' weights are alpha/beta/gamma)."""
    alpha: NonNegative = 5e-5
    """α, foreground imitation (authors' Faster R-CNN config: 5e-5)."""
    beta: NonNegative = 2.5e-5
    """β, background imitation (2.5e-5)."""
    gamma: NonNegative = 5e-5
    """γ, attention transfer (5e-5)."""
    tau: Annotated[float, positive()] = 0.5
    """τ, temperature of the spatial and channel attention (0.5)."""


def fgd_attention(feature: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Spatial ``A_S = H·W·softmax(mean_c |F| / τ)`` (N×H×W) and channel ``A_C = C·softmax(mean_hw |F| / τ)`` (N×C)."""
    n, c, h, w = feature.shape
    value = feature.abs()
    spatial = h * w * F.softmax((value.mean(dim=1) / tau).reshape(n, -1), dim=1).reshape(n, h, w)
    channel = c * F.softmax(value.mean(dim=(2, 3)) / tau, dim=1)
    return spatial, channel


def fgd_loss(student: Tensor, teacher: Tensor, fg_mask: Tensor, bg_mask: Tensor, alpha: float, beta: float,
             gamma: float, tau: float) -> Tensor:
    r"""FGD's focal + attention loss for one level, summed over elements and divided by the batch size N.

    .. math::
        L = \frac{1}{N}\Big[\alpha \sum M^{fg} A_S^t A_C^t (S'-T)^2 + \beta \sum M^{bg} A_S^t A_C^t (S'-T)^2
            + \gamma \big(\sum |A_S^t - A_S^s| + \sum |A_C^t - A_C^s|\big)\Big]

    with the teacher's attention weighting the imitation and the student's (of S') compared to it.
    """
    if student.shape != teacher.shape or student.dim() != 4:
        raise ValueError(f"fgd_loss: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must be "
                         "equal N×C×H×W shapes")
    teacher = teacher.detach()
    n = student.shape[0]
    t_spatial, t_channel = fgd_attention(teacher, tau)
    s_spatial, s_channel = fgd_attention(student, tau)
    weight = t_spatial[:, None] * t_channel[:, :, None, None]
    distance = (student - teacher).pow(2) * weight
    fg = (distance * fg_mask[:, None]).sum()
    bg = (distance * bg_mask[:, None]).sum()
    attention = (t_spatial - s_spatial).abs().sum() + (t_channel - s_channel).abs().sum()
    return (alpha * fg + beta * bg + gamma * attention) / n


@register_term("fgd", reads=("features", "gt_boxes"), config=FGDConfig, default_weight=1.0,
               summary="attention-weighted fg/bg imitation + attention transfer (tau 0.5), summed over levels",
               reference="Yang et al. CVPR 2022 (FGD), eq. 9-12; yzd-v/FGD")
def compute(ctx: TermContext, settings: FGDConfig, cfg) -> Tensor:  # noqa: ANN001
    """Sum over paired levels of :func:`fgd_loss` (FGD has one loss per FPN level)."""
    terms = []
    for p in ctx.features:
        _, _, h, w = p.adapted.shape
        fg, bg = fgd_masks(ctx.gt_boxes, p.stride, h, w, device=p.adapted.device)
        terms.append(fgd_loss(p.adapted.float(), p.teacher.float(), fg, bg, settings.alpha, settings.beta,
                              settings.gamma, settings.tau))
    return torch.stack(terms).sum()
