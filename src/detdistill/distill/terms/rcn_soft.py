"""RCN soft term (Chen et al. 2017, eq. 2): the teacher's class distribution on the shared RoIs as a soft
target, class-weighted. Knobs (flat): ``mu`` (weight 1−μ), ``background_weight`` (1.5), ``temperature`` (1)."""

from __future__ import annotations

from torch import Tensor

from ..losses import weighted_soft_cross_entropy
from .context import TermContext
from .registry import register_term


@register_term("rcn_soft", reads=("rcn",), summary="class-weighted soft CE on RoI logits, joins loss_classifier",
               reference="Chen et al. 2017, eq. 2-3", default_weight=0.5, weight=lambda c: 1.0 - c.mu,
               loss_key="loss_classifier", combine="cls", order=2)
def compute(ctx: TermContext, settings: None, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_soft = Σ_i Σ_c w_c softmax(t_i/T)_c (−log softmax(s_i/T)_c) / N_RoI``; see
    :func:`~detdistill.distill.losses.weighted_soft_cross_entropy`."""
    rcn = ctx.rcn
    return weighted_soft_cross_entropy(rcn.class_logits.float(), rcn.teacher_logits.float(), rcn.class_weights,
                                       temperature=cfg.temperature)
