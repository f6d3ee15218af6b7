"""Object-region imitation: the hint restricted to the ground-truth boxes, with DeFeat's separate background
weight (FGFI Table 1's "GT-box" row; Guo et al. 2021, DeFeat)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .context import TermContext
from .masks import gt_box_mask, masked_imitation
from .registry import NonNegative, TermConfig, register_term


@dataclass
class HintGTConfig(TermConfig):
    weight: NonNegative = 0.01
    """λ_fg on the locations inside ground-truth boxes (FGFI's λ = 0.01, channel-summed distance)."""
    bg_weight: NonNegative = 0.0
    """λ_bg on the other locations, normalised by their own count (DeFeat; 0 = FGFI's GT-box imitation)."""


def hint_gt_loss(student: Tensor, teacher: Tensor, mask: Tensor, fg_weight: float, bg_weight: float) -> Tensor:
    r"""``λ_fg Σ M d / (2 N_fg) + λ_bg Σ (1−M) d / (2 N_bg)``, d = Σ_c (S' − T)² per location,
    N_fg = Σ M and N_bg = Σ (1 − M) over the batch (each at least 1)."""
    loss = fg_weight * masked_imitation(student, teacher, mask)
    if bg_weight:
        loss = loss + bg_weight * masked_imitation(student, teacher, 1.0 - mask)
    return loss


@register_term("hint_gt", reads=("features", "gt_boxes"), config=HintGTConfig, default_weight=0.01,
               summary="imitation inside the ground-truth boxes (DeFeat-style fg/bg weights)",
               reference="Wang et al. CVPR 2019 Table 1; Guo et al. CVPR 2021 (DeFeat)", weighted_inside=True, needs_labels=True)
def compute(ctx: TermContext, settings: HintGTConfig, cfg) -> Tensor:  # noqa: ANN001
    """Mean over paired levels of :func:`hint_gt_loss`, the mask at each level's measured stride."""
    terms = []
    for p in ctx.features:
        _, _, h, w = p.adapted.shape
        mask = gt_box_mask(ctx.gt_boxes, p.stride, h, w, device=p.adapted.device)
        terms.append(hint_gt_loss(p.adapted.float(), p.teacher.float(), mask, settings.weight, settings.bg_weight))
    return torch.stack(terms).mean()
