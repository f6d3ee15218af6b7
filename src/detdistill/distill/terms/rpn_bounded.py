"""RPN bounded regression (Chen et al. 2017, eq. 5): L2 to the ground truth where the student is worse than
the teacher, on the positive anchors. Knobs (flat): ``nu`` (ν = 0.5), ``margin`` (m = 0), ``lambda_reg``."""

from __future__ import annotations

from torch import Tensor

from ..losses import bound_active_fraction, bounded_regression_loss
from .context import TermContext
from .registry import register_term


@register_term("rpn_bounded", reads=("rpn",), summary="teacher-bounded L2 on RPN deltas, joins loss_rpn_box_reg",
               reference="Chen et al. 2017, eq. 4-5", default_weight=0.5, weight=lambda c: c.nu * c.lambda_reg,
               loss_key="loss_rpn_box_reg", combine="reg", order=1, needs_labels=True)
def compute(ctx: TermContext, settings: None, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_b = Σ_{i∈pos} ‖s_i−y_i‖² [‖s_i−y_i‖² + m > ‖t_i−y_i‖²] / N_sampled``; see
    :func:`~detdistill.distill.losses.bounded_regression_loss`."""
    rpn, pos = ctx.rpn, ctx.rpn.positive
    s, t, y = rpn.deltas[pos], rpn.teacher_deltas[pos], rpn.regression_targets[pos]
    ctx.stats["rpn_bound_active"] = float(bound_active_fraction(s, t, y, cfg.margin))
    return bounded_regression_loss(s.float(), t.float(), y.float(), cfg.margin, normalizer=rpn.num_sampled)
