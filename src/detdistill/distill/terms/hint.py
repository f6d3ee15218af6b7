"""The paper's hint (Chen et al. 2017, §3.3; FitNets): the whole adapted feature map imitates the teacher's.
Knobs: ``distill.terms.hint.weight`` (γ = 0.5), ``.kind`` (``l2``/``l1``); shared by the feature terms:
``distill.hint_levels``/``guided_levels``, ``adaptation``, ``adapter_init``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..losses import hint_loss
from .context import TermContext
from .registry import NonNegative, TermConfig, register_term


@dataclass
class HintConfig(TermConfig):
    weight: NonNegative = 0.5
    """γ: weight of the hint loss (the paper: 0.5)."""
    kind: Literal["l2", "l1"] = "l2"
    """Hint distance: ``l2`` (mean squared) or ``l1`` (mean absolute)."""


@register_term("hint", reads=("features",), summary="full-map L2 (or L1) imitation of the teacher's levels",
               reference="Chen et al. 2017, eq. 6; Romero et al. 2015", config=HintConfig, loss_key="loss_hint",
               order=4)
def compute(ctx: TermContext, settings: HintConfig, cfg) -> Tensor:  # noqa: ANN001
    r"""``L_hint = mean_l mean (adapt_l(V_l) − Z_l)²`` over the paired levels; see
    :func:`~detdistill.distill.losses.hint_loss`."""
    return torch.stack([hint_loss(p.adapted.float(), p.teacher.float(), settings.kind) for p in ctx.features]).mean()
