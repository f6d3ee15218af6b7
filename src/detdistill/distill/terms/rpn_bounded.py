"""RPN bounded regression (Chen et al. 2017, eq. 5): L2 to the ground truth where the student is worse than
the teacher, on the positive anchors. Knobs: ``distill.terms.rpn_bounded.weight`` (ν = 0.5), ``.margin``
(m = 0); shared: ``distill.lambda_reg`` (λ = 1)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ...typed_config import Annotated, at_least

from ..losses import bound_active_fraction, bounded_regression_loss
from .context import TermContext
from .registry import NonNegative, TermConfig, register_term


@dataclass
class BoundedConfig(TermConfig):
    """The bounded regression terms' section (``rpn_bounded`` and ``rcn_bounded`` each have one)."""

    weight: NonNegative = 0.5
    """ν in ``λ·(L_smoothL1 + ν·L_b)`` (the paper: 0.5)."""
    margin: Annotated[float, at_least(0.0, integer=False)] = 0.0
    """m: margin in the bound ``‖R_s−y‖² + m > ‖R_t−y‖²``."""


@register_term("rpn_bounded", reads=("rpn",), summary="teacher-bounded L2 on RPN deltas, joins loss_rpn_box_reg",
               reference="Chen et al. 2017, eq. 4-5", config=BoundedConfig, loss_key="loss_rpn_box_reg",
               combine="reg", order=1, needs_labels=True)
def compute(ctx: TermContext, settings: BoundedConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_b = Σ_{i∈pos} ‖s_i−y_i‖² [‖s_i−y_i‖² + m > ‖t_i−y_i‖²] / N_sampled``; see
    :func:`~detdistill.distill.losses.bounded_regression_loss`."""
    rpn, pos = ctx.rpn, ctx.rpn.positive
    s, t, y = rpn.deltas[pos], rpn.teacher_deltas[pos], rpn.regression_targets[pos]
    ctx.stats["rpn_bound_active"] = float(bound_active_fraction(s, t, y, settings.margin))
    return bounded_regression_loss(s.float(), t.float(), y.float(), settings.margin, normalizer=rpn.num_sampled)
