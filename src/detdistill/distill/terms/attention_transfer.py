"""Attention transfer: match where the teacher's features are strong, not the features themselves
(Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017; the authors' attention-transfer code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...typed_config import Annotated, positive

from .context import TermContext
from .registry import NonNegative, TermConfig, register_term


@dataclass
class AttentionTransferConfig(TermConfig):
    weight: NonNegative = 500.0
    """β/2 with the authors' β = 1000, on the sum over paired levels."""
    power: Annotated[float, positive()] = 2.0
    """p of the attention map Σ_c |F_c|^p (authors: 2)."""


def attention_map(feature: Tensor, power: float = 2.0) -> Tensor:
    """N×(H·W) unit-norm spatial attention: the channel mean of ``|F|^p``, flattened, L2-normalised per image."""
    return F.normalize(feature.abs().pow(power).mean(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student: Tensor, teacher: Tensor, power: float = 2.0) -> Tensor:
    r"""Mean squared difference of the normalised attention maps (the authors' code, per level).

    .. math::
        Q = \operatorname{vec}\Big(\tfrac{1}{C}\sum_c |F_c|^p\Big), \quad
        L = \frac{1}{N\,HW} \sum_n \Big\| \frac{Q^S_n}{\|Q^S_n\|_2} - \frac{Q^T_n}{\|Q^T_n\|_2} \Big\|_2^2

    Channel counts may differ (the map averages them away); the spatial sizes must match.

    Args:
        student: N×C_s×H×W student feature (receives the gradient).
        teacher: N×C_t×H×W teacher feature (detached).
    """
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0] \
            or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(f"attention_transfer_loss: student {tuple(student.shape)} and teacher "
                         f"{tuple(teacher.shape)} must be N×C×H×W with equal N, H and W")
    return (attention_map(student, power) - attention_map(teacher.detach(), power)).pow(2).mean()


@register_term("attention_transfer", reads=("features",), config=AttentionTransferConfig, default_weight=500.0,
               adapter_init="kaiming",
               summary="MSE of L2-normalised spatial attention maps (channel mean of |F|^2), summed over levels",
               reference="Zagoruyko & Komodakis ICLR 2017 (AT); github.com/szagoruyko/attention-transfer")
def compute(ctx: TermContext, settings: AttentionTransferConfig, cfg) -> Tensor:  # noqa: ANN001
    """Sum over paired levels of :func:`attention_transfer_loss` on the adapted student and the teacher."""
    return torch.stack([attention_transfer_loss(p.adapted.float(), p.teacher.float(), settings.power)
                        for p in ctx.features]).sum()
