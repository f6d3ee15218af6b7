"""DKD on the RoI logits (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022): an alternative to the
paper's RCN soft term, on the same shared RoIs; the target class is each RoI's sampled label."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...typed_config import Annotated, positive

from .context import TermContext
from .registry import NonNegative, TermConfig, register_term


@dataclass
class DKDConfig(TermConfig):
    enabled: bool | None = None
    """Switch this term on/off (null: the recipe decides). Replaces ``rcn_soft`` (both on is refused)."""
    weight: NonNegative = 1.0
    """Multiplier on α·TCKD + β·NCKD (added to the hard cross-entropy, which keeps weight 1)."""
    alpha: NonNegative = 1.0
    """α, target-class KD (mdistiller's detection config: 1)."""
    beta: NonNegative = 0.25
    """β, non-target-class KD (0.25)."""
    temperature: Annotated[float, positive()] = 1.0
    """T (1)."""


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Σ p (log p − log q) per row, with 0·log 0 = 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=1)


def dkd_loss(student_logits: Tensor, teacher_logits: Tensor, target: Tensor, alpha: float = 1.0,
             beta: float = 0.25, temperature: float = 1.0) -> Tensor:
    r"""Decoupled KD, mean over the R rows.

    With :math:`p = \mathrm{softmax}(t/T)`, :math:`q = \mathrm{softmax}(s/T)`, target class g:
    :math:`b = (p_g, 1 - p_g)`, :math:`\hat p = \mathrm{softmax}` of the non-target logits (same for q), and

    .. math::
        L = \frac{T^2}{R} \sum_i \big[\alpha\, KL(b^t_i \| b^s_i) + \beta\, KL(\hat p^t_i \| \hat p^s_i)\big]

    Computed in log space (log(1 − p_g) as a log-sum-exp over the other classes), so it stays finite for
    confident logits.

    Args:
        student_logits: R×C (receives the gradient); teacher_logits: R×C (detached); target: R class ids.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"dkd_loss: logits {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)} must "
                         "be equal R×C shapes")
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    gt = F.one_hot(target.long(), student_logits.shape[1]).bool()
    out = []
    for logits in (student_logits / temperature, teacher_logits.detach() / temperature):
        log_all = torch.logsumexp(logits, dim=1, keepdim=True)
        others = logits.masked_fill(gt, float("-inf"))
        log_target = logits.gather(1, target.long()[:, None]) - log_all
        log_rest = torch.logsumexp(others, dim=1, keepdim=True) - log_all
        binary = torch.cat([log_target, log_rest], dim=1)
        non_target = F.log_softmax(others, dim=1).masked_fill(gt, float("-inf"))
        out.append((binary, non_target))
    (s_bin, s_nt), (t_bin, t_nt) = out
    tckd = _kl(t_bin, s_bin)
    nckd = _kl(t_nt, s_nt.masked_fill(gt, 0.0))
    return (alpha * tckd + beta * nckd).mean() * temperature ** 2


@register_term("rcn_dkd", reads=("rcn",), config=DKDConfig, default_weight=1.0, excludes=("rcn_soft",),
               summary="decoupled KD (target / non-target KL) on RoI logits, beside the hard CE",
               reference="Zhao et al. CVPR 2022 (DKD); mdistiller detection config")
def compute(ctx: TermContext, settings: DKDConfig, cfg) -> Tensor:  # noqa: ANN001
    """:func:`dkd_loss` on the shared RoIs, the sampled labels as the target classes."""
    rcn = ctx.rcn
    return dkd_loss(rcn.class_logits.float(), rcn.teacher_logits.float(), rcn.labels, settings.alpha,
                    settings.beta, settings.temperature)
