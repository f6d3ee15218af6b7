"""RCN soft term (Chen et al. 2017, eq. 2): the teacher's class distribution on the shared RoIs as a soft
target, class-weighted. Knobs: ``distill.terms.rcn_soft.weight`` (1−μ = 0.5); shared with ``rpn_soft``:
``distill.background_weight`` (1.5), ``distill.temperature`` (1)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ...typed_config import Annotated, probability

from ..losses import weighted_soft_cross_entropy
from .context import TermContext
from .registry import TermConfig, register_term


@dataclass
class RCNSoftConfig(TermConfig):
    weight: Annotated[float, probability()] = 0.5
    """The soft loss's share 1−μ in ``loss_classifier = (1−w)·L_hard + w·L_soft`` (the paper: μ = 0.5)."""


@register_term("rcn_soft", reads=("rcn",), summary="class-weighted soft CE on RoI logits, joins loss_classifier",
               reference="Chen et al. 2017, eq. 2-3", config=RCNSoftConfig, loss_key="loss_classifier",
               combine="cls", order=2)
def compute(ctx: TermContext, settings: RCNSoftConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_soft = Σ_i Σ_c w_c softmax(t_i/T)_c (−log softmax(s_i/T)_c) / N_RoI``; see
    :func:`~detdistill.distill.losses.weighted_soft_cross_entropy`."""
    rcn = ctx.rcn
    return weighted_soft_cross_entropy(rcn.class_logits.float(), rcn.teacher_logits.float(), rcn.class_weights,
                                       temperature=cfg.temperature)
