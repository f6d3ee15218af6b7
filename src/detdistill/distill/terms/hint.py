"""The paper's hint (Chen et al. 2017, §3.3; FitNets): the whole adapted feature map imitates the teacher's.
Knobs (flat): ``gamma`` (γ = 0.5), ``hint_kind`` (``l2``/``l1``), ``hint_levels``/``guided_levels``,
``adaptation``, ``adapter_init``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import hint_loss
from .context import TermContext
from .registry import register_term


@register_term("hint", reads=("features",), summary="full-map L2 (or L1) imitation of the teacher's levels",
               reference="Chen et al. 2017, eq. 6; Romero et al. 2015", default_weight=0.5,
               weight=lambda c: c.gamma, loss_key="loss_hint", order=4)
def compute(ctx: TermContext, settings: None, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_hint = mean_l mean (adapt_l(V_l) − Z_l)²`` over the paired levels; see
    :func:`~detdistill.distill.losses.hint_loss`."""
    return torch.stack([hint_loss(p.adapted.float(), p.teacher.float(), cfg.hint_kind) for p in ctx.features]).mean()
