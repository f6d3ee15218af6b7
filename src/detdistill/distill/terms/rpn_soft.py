"""RPN soft term (Chen et al. 2017, eq. 2): the teacher's objectness as a soft target on the sampled anchors.

Knobs (the paper's, flat in ``DistillConfig``): ``mu`` (its weight is 1−μ), ``background_weight`` (w_bg =
1.5), ``temperature`` (T = 1), ``rpn_soft_anchors`` (``sampled``, the paper's normalisation, or ``all``).
"""

from __future__ import annotations

from torch import Tensor

from ..losses import weighted_soft_binary_cross_entropy
from .context import TermContext
from .registry import register_term


@register_term("rpn_soft", reads=("rpn",), summary="weighted soft BCE on RPN objectness, joins loss_objectness",
               reference="Chen et al. 2017, eq. 2-3", default_weight=0.5, weight=lambda c: 1.0 - c.mu,
               loss_key="loss_objectness", combine="cls", order=0)
def compute(ctx: TermContext, settings: None, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_soft = Σ_i −[p_i log q_i + w_bg (1−p_i) log(1−q_i)] / N_sampled`` (p: teacher, q: student,
    sigmoids at temperature T); see :func:`~detdistill.distill.losses.weighted_soft_binary_cross_entropy`."""
    rpn = ctx.rpn
    idx = rpn.sampled if cfg.rpn_soft_anchors == "sampled" else slice(None)
    return weighted_soft_binary_cross_entropy(
        rpn.objectness[idx].float(), rpn.teacher_objectness[idx].float(), background_weight=cfg.background_weight,
        temperature=cfg.temperature, normalizer=rpn.num_sampled)
