"""RCN bounded regression (Chen et al. 2017, eq. 5) on the ground-truth class's deltas of the foreground RoIs.
Knobs: ``distill.terms.rcn_bounded.weight`` (ν = 0.5), ``.margin`` (0); shared: ``distill.lambda_reg`` (1).
Needs equal RoI box-coder weights."""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import bound_active_fraction, bounded_regression_loss
from .context import TermContext
from ...errors import PairingError
from .registry import register_term
from .rpn_bounded import BoundedConfig


def _check(teacher, student, cfg) -> None:  # noqa: ANN001
    tw, sw = teacher.roi_heads.box_coder.weights, student.roi_heads.box_coder.weights
    if tuple(tw) != tuple(sw):
        raise PairingError(f"RoI box coder weights differ (teacher {tuple(tw)}, student {tuple(sw)}): "
                           "the bounded RCN loss compares deltas, so they must match (or set "
                           "distill.terms.rcn_bounded.enabled=false)")


@register_term("rcn_bounded", reads=("rcn",), summary="teacher-bounded L2 on RoI deltas, joins loss_box_reg",
               reference="Chen et al. 2017, eq. 4-5", config=BoundedConfig, loss_key="loss_box_reg", combine="reg",
               check=_check, order=3, needs_labels=True)
def compute(ctx: TermContext, settings: BoundedConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_b = Σ_{i∈fg} ‖s_i−y_i‖² [‖s_i−y_i‖² + m > ‖t_i−y_i‖²] / N_RoI`` on the deltas of RoI i's
    ground-truth class (fastrcnn_loss's normaliser: all sampled RoIs)."""
    rcn = ctx.rcn
    pos = torch.where(rcn.labels > 0)[0]
    cls_of_pos = rcn.labels[pos]
    n = rcn.class_logits.shape[0]
    s = rcn.box_regression.reshape(n, -1, 4)[pos, cls_of_pos]
    t = rcn.teacher_regression.reshape(n, -1, 4)[pos, cls_of_pos]
    y = rcn.regression_targets[pos]
    ctx.stats["rcn_bound_active"] = float(bound_active_fraction(s, t, y, settings.margin))
    return bounded_regression_loss(s.float(), t.float(), y.float(), settings.margin, normalizer=rcn.labels.numel())
