"""RPN soft term (Chen et al. 2017, eq. 2): the teacher's objectness as a soft target on the sampled anchors.

Knobs: ``distill.terms.rpn_soft.weight`` (1−μ = 0.5), ``.anchors`` (``sampled``, the paper's normalisation, or
``all``); shared with ``rcn_soft``: ``distill.background_weight`` (w_bg = 1.5), ``distill.temperature`` (T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ...typed_config import Annotated, probability

from ..losses import weighted_soft_binary_cross_entropy
from .context import TermContext
from .registry import TermConfig, register_term


@dataclass
class RPNSoftConfig(TermConfig):
    weight: Annotated[float, probability()] = 0.5
    """The soft loss's share 1−μ in ``loss_objectness = (1−w)·L_hard + w·L_soft`` (the paper: μ = 0.5)."""
    anchors: Literal["sampled", "all"] = "sampled"
    """The soft loss over the RPN's ``sampled`` anchors (the paper's normalisation) or ``all`` anchors."""


@register_term("rpn_soft", reads=("rpn",), summary="weighted soft BCE on RPN objectness, joins loss_objectness",
               reference="Chen et al. 2017, eq. 2-3", config=RPNSoftConfig, loss_key="loss_objectness",
               combine="cls", order=0)
def compute(ctx: TermContext, settings: RPNSoftConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_soft = Σ_i −[p_i log q_i + w_bg (1−p_i) log(1−q_i)] / N_sampled`` (p: teacher, q: student,
    sigmoids at temperature T); see :func:`~detdistill.distill.losses.weighted_soft_binary_cross_entropy`."""
    rpn = ctx.rpn
    idx = rpn.sampled if settings.anchors == "sampled" else slice(None)
    return weighted_soft_binary_cross_entropy(
        rpn.objectness[idx].float(), rpn.teacher_objectness[idx].float(), background_weight=cfg.background_weight,
        temperature=cfg.temperature, normalizer=rpn.num_sampled)
