"""FGFI: imitation on the fine-grained anchor mask (Wang et al., "Distilling Object Detectors with
Fine-grained Feature Imitation", CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...typed_config import Annotated, probability

from .context import TermContext
from .masks import fgfi_mask
from .hint_gt import hint_gt_loss
from .registry import NonNegative, TermConfig, register_term


@dataclass
class HintFGFIConfig(TermConfig):
    weight: NonNegative = 0.01
    """λ on the imitated locations (authors: 0.01)."""
    psi: Annotated[float, probability()] = 0.5
    """ψ: a location is imitated where an anchor's IoU with a box exceeds ψ × that box's best (authors: 0.5)."""
    bg_weight: NonNegative = 0.0
    """λ_bg on the other locations, DeFeat-style (0: FGFI)."""


@register_term("hint_fgfi", reads=("features", "gt_boxes", "anchors"), config=HintFGFIConfig, default_weight=0.01,
               summary="imitation where anchors match a box (IoU > ψ·best), per level",
               reference="Wang et al. CVPR 2019 (FGFI), eq. 1-3", weighted_inside=True)
def compute(ctx: TermContext, settings: HintFGFIConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``λ Σ M (S'−T)² / (2 N_M)`` (channel-summed) with M = :func:`~.masks.fgfi_mask` of each level's own
    anchors, averaged over the paired levels."""
    terms = []
    for p in ctx.features:
        mask = fgfi_mask(p.anchors, ctx.gt_boxes, settings.psi)
        terms.append(hint_gt_loss(p.adapted.float(), p.teacher.float(), mask, settings.weight, settings.bg_weight))
    return torch.stack(terms).mean()
