"""The distillation losses of Chen et al., "Learning Efficient Object Detection Models with Knowledge
Distillation" (NIPS 2017), as small pure functions.

Conventions shared by every function here:

* Each returns a scalar tensor. Gradients reach the student's inputs only: teacher tensors (and
  regression targets) are detached inside, so a caller cannot leak gradient into the teacher by mistake.
* ``normalizer`` (where present) is what the per-sample sum is divided by. It defaults to N, the number
  of rows given, i.e. the mean. Pass the paper's sample batch size when it differs from N: the bounded
  regression loss is summed over the positive samples only but, like torchvision's smooth-L1 box loss, is
  divided by the number of *all* sampled anchors / RoIs. It may be a Python number or a 0-dim tensor
  (detached; a tensor's value is read once on the host for validation). With N > 0 it must be > 0,
  else ``ValueError``: dividing by zero or a negative count is a caller bug, not something to hide.
* N = 0 (no samples, e.g. no positive RoIs in the batch) returns a zero scalar that is still connected to
  the student's graph, whatever the normalizer, so ``backward()`` works and never sees NaN.
* Logits and deltas are expected to be finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "weighted_soft_cross_entropy",
    "weighted_soft_binary_cross_entropy",
    "bounded_regression_loss",
    "bound_active_fraction",
    "hint_loss",
    "classification_distillation_loss",
    "regression_distillation_loss",
]

Normalizer = float | int | Tensor | None


def _check_same_shape(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student shape {tuple(student.shape)} does not match teacher shape {tuple(teacher.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _zero_with_graph(student: Tensor) -> Tensor:
    # Only called when the student tensor is empty, so its sum is exactly 0 (no inf * 0 = NaN risk).
    return student.sum() * 0.0


def _normalize(total: Tensor, n: int, normalizer: Normalizer) -> Tensor:
    if normalizer is None:
        return total / n
    if isinstance(normalizer, Tensor):
        if normalizer.dim() != 0:
            raise ValueError(f"normalizer tensor must be 0-dim, got shape {tuple(normalizer.shape)}")
        value = float(normalizer.detach())
        divisor: float | Tensor = normalizer.detach().to(total.dtype)
    else:
        value = float(normalizer)
        divisor = value
    if not value > 0:  # also rejects NaN
        raise ValueError(f"normalizer must be > 0 when there are samples (N={n}), got {value}")
    return total / divisor


def weighted_soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    class_weights: Tensor | Sequence[float],
    temperature: float = 1.0,
    normalizer: Normalizer = None,
) -> Tensor:
    r"""Class-weighted soft cross-entropy of the student against the teacher (the RCN soft loss).

    .. math::
        L = \frac{1}{\text{normalizer}} \sum_i \sum_c w_c \cdot \mathrm{softmax}(t_i/T)_c
            \cdot \left(-\log \mathrm{softmax}(s_i/T)_c\right)

    No :math:`T^2` factor is applied (the paper uses none).

    Args:
        student_logits: N×C student logits, column 0 = background. Receives the gradient.
        teacher_logits: N×C teacher logits; detached.
        class_weights: length-C weights w_c. Paper default: w_0 = 1.5 (background), w_c = 1 otherwise.
        temperature: T > 0. Paper default 1 (higher T helped on MNIST-like tasks, not on detection).
        normalizer: divisor of the sum over rows; default N (the mean over rows). See module docstring.

    Returns:
        Scalar loss; zero connected to the student's graph when N = 0.
    """
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must be N×C, got shape {tuple(student_logits.shape)}")
    _check_same_shape(student_logits, teacher_logits, "weighted_soft_cross_entropy")
    _check_temperature(temperature)
    weights = torch.as_tensor(class_weights, dtype=student_logits.dtype, device=student_logits.device)
    num_classes = student_logits.shape[1]
    if weights.dim() != 1 or weights.shape[0] != num_classes:
        raise ValueError(
            f"class_weights must have length C={num_classes} (logits shape {tuple(student_logits.shape)}), "
            f"got shape {tuple(weights.shape)}"
        )
    n = student_logits.shape[0]
    if n == 0:
        return _zero_with_graph(student_logits)
    p_teacher = torch.softmax(teacher_logits.detach() / temperature, dim=1)
    # log_softmax, not log(softmax): stays finite for logits of ±100.
    log_q_student = F.log_softmax(student_logits / temperature, dim=1)
    total = -(weights * p_teacher * log_q_student).sum()
    return _normalize(total, n, normalizer)


def weighted_soft_binary_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    background_weight: float,
    foreground_weight: float = 1.0,
    temperature: float = 1.0,
    normalizer: Normalizer = None,
) -> Tensor:
    r"""Class-weighted soft binary cross-entropy on sigmoid objectness logits (the RPN soft loss).

    With :math:`p_i = \sigma(t_i/T)` (teacher) and :math:`q_i = \sigma(s_i/T)` (student):

    .. math::
        L = \frac{1}{\text{normalizer}} \sum_i -\left[ w_{fg}\, p_i \log q_i
            + w_{bg}\, (1 - p_i) \log(1 - q_i) \right]

    This is exactly :func:`weighted_soft_cross_entropy` on the 2-column logits ``[0, z]`` with weights
    ``[w_bg, w_fg]``, i.e. the paper's 2-way RPN softmax. The logs are computed from the logits as
    ``logsigmoid(±s/T)``, never as the log of a sigmoid, so logits of ±100 stay finite.

    Args:
        student_logits: one objectness logit per anchor, any shape (usually N or N×1); every element is
            one sample. Receives the gradient.
        teacher_logits: same shape; detached.
        background_weight: w_bg. Paper default 1.5 (required here so the caller states it).
        foreground_weight: w_fg. Paper default 1.
        temperature: T > 0. Paper default 1.
        normalizer: divisor of the sum over anchors; default N = number of elements.

    Returns:
        Scalar loss; zero connected to the student's graph when N = 0.
    """
    _check_same_shape(student_logits, teacher_logits, "weighted_soft_binary_cross_entropy")
    _check_temperature(temperature)
    n = student_logits.numel()
    if n == 0:
        return _zero_with_graph(student_logits)
    scaled_student = student_logits / temperature
    p_teacher = torch.sigmoid(teacher_logits.detach() / temperature)
    per_sample = -(
        foreground_weight * p_teacher * F.logsigmoid(scaled_student)
        + background_weight * (1.0 - p_teacher) * F.logsigmoid(-scaled_student)
    )
    return _normalize(per_sample.sum(), n, normalizer)


def _bound_active_mask(
    student_deltas: Tensor, teacher_deltas: Tensor, target_deltas: Tensor, margin: float, what: str
) -> tuple[Tensor, Tensor]:
    """Validate, then return (a, active) with a_i = ‖s_i − y_i‖² (with graph) and active_i = a_i + m > b_i."""
    for name, t in (("student_deltas", student_deltas), ("teacher_deltas", teacher_deltas),
                    ("target_deltas", target_deltas)):
        if t.dim() != 2 or t.shape[1] != 4:
            raise ValueError(f"{name} must be N×4 box deltas, got shape {tuple(t.shape)}")
    _check_same_shape(student_deltas, teacher_deltas, what)
    if target_deltas.shape != student_deltas.shape:
        raise ValueError(
            f"{what}: student shape {tuple(student_deltas.shape)} does not match "
            f"target shape {tuple(target_deltas.shape)}"
        )
    target = target_deltas.detach()
    student_err = (student_deltas - target).pow(2).sum(dim=1)
    with torch.no_grad():
        teacher_err = (teacher_deltas.detach() - target).pow(2).sum(dim=1)
        # Strict '>' as in the paper: a student exactly at the bound gets no extra loss.
        active = student_err.detach() + margin > teacher_err
    return student_err, active


def bounded_regression_loss(
    student_deltas: Tensor,
    teacher_deltas: Tensor,
    target_deltas: Tensor,
    margin: float = 0.0,
    normalizer: Normalizer = None,
) -> Tensor:
    r"""Teacher-bounded L2 regression loss L_b, per sample.

    With :math:`a_i = \lVert s_i - y_i \rVert_2^2` and :math:`b_i = \lVert t_i - y_i \rVert_2^2`:

    .. math::
        L_b = \frac{1}{\text{normalizer}} \sum_i a_i \cdot [\,a_i + m > b_i\,]

    The teacher is an upper bound, never a target: while the student's error (plus the margin) exceeds the
    teacher's, the student is pulled toward the ground truth y; once it beats the teacher by the margin its
    sample contributes neither loss nor gradient. The comparison is per sample (per anchor / RoI), never on
    batch means.

    Args:
        student_deltas: N×4 student box deltas for the samples with a regression target (the positives).
            Receives the gradient.
        teacher_deltas: N×4 teacher deltas for the same samples; detached.
        target_deltas: N×4 ground-truth deltas, encoded the same way; detached.
        margin: m. Paper default 0.
        normalizer: divisor of the sum; default N (the positives). To follow torchvision's box-loss
            convention pass the number of all sampled anchors / RoIs instead.

    Returns:
        Scalar loss; zero connected to the student's graph when N = 0.
    """
    student_err, active = _bound_active_mask(
        student_deltas, teacher_deltas, target_deltas, margin, "bounded_regression_loss"
    )
    n = student_deltas.shape[0]
    if n == 0:
        return _zero_with_graph(student_deltas)
    total = (student_err * active.to(student_err.dtype)).sum()
    return _normalize(total, n, normalizer)


def bound_active_fraction(
    student_deltas: Tensor,
    teacher_deltas: Tensor,
    target_deltas: Tensor,
    margin: float = 0.0,
) -> Tensor:
    """Share of samples on which the bounded loss is active, a_i + m > b_i (for logging; no gradient).

    Same inputs and margin (paper default 0) as :func:`bounded_regression_loss`. Returns a 0-dim float
    tensor in [0, 1]; 0 when N = 0 (no samples, so none active).
    """
    with torch.no_grad():
        _, active = _bound_active_mask(
            student_deltas, teacher_deltas, target_deltas, margin, "bound_active_fraction"
        )
        if active.numel() == 0:
            return torch.zeros((), dtype=student_deltas.dtype, device=student_deltas.device)
        return active.to(student_deltas.dtype).mean()


def hint_loss(adapted_student_feature: Tensor, teacher_feature: Tensor, kind: str = "l2") -> Tensor:
    r"""Hint loss between the adapted student (guided) feature V and the teacher's hint feature Z.

    .. math::
        L_{hint}^{l2} = \frac{1}{|Z|} \sum (V - Z)^2, \qquad
        L_{hint}^{l1} = \frac{1}{|Z|} \sum |V - Z|

    The paper writes sums (:math:`\lVert V - Z \rVert_2^2`, :math:`\lVert V - Z \rVert_1`); the mean over
    all |Z| elements is used so that its weight γ (paper default 0.5, applied by the caller) does not
    depend on the feature map's size or the batch size.

    Args:
        adapted_student_feature: V, the student's guided feature after the adaptation layer. Receives the
            gradient.
        teacher_feature: Z, same shape; detached.
        kind: ``"l2"`` (paper default) or ``"l1"`` (the paper's alternative).

    Returns:
        Scalar loss; zero connected to the student's graph when the features are empty.
    """
    if adapted_student_feature.shape != teacher_feature.shape:
        raise ValueError(
            f"hint_loss: adapted student feature shape {tuple(adapted_student_feature.shape)} does not match "
            f"teacher feature shape {tuple(teacher_feature.shape)}"
        )
    if kind not in ("l2", "l1"):
        raise ValueError(f"hint_loss kind must be 'l2' or 'l1', got {kind!r}")
    if adapted_student_feature.numel() == 0:
        return _zero_with_graph(adapted_student_feature)
    diff = adapted_student_feature - teacher_feature.detach()
    return diff.pow(2).mean() if kind == "l2" else diff.abs().mean()


def classification_distillation_loss(hard_loss: Tensor, soft_loss: Tensor | None, mu: float = 0.5) -> Tensor:
    r"""Combine the hard (ground-truth) and soft (teacher) classification losses.

    .. math::
        L_{cls} = \mu \cdot L_{hard} + (1 - \mu) \cdot L_{soft}

    With ``soft_loss=None`` (soft distillation switched off) this returns ``hard_loss`` itself, weight 1
    rather than μ, so that switching every term off is exactly ordinary Faster R-CNN training.

    Args:
        hard_loss: scalar cross-entropy against the ground-truth labels.
        soft_loss: scalar weighted soft cross-entropy against the teacher, or None.
        mu: μ in [0, 1]. Paper default 0.5.
    """
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must be in [0, 1], got {mu}")
    if soft_loss is None:
        return hard_loss
    return mu * hard_loss + (1.0 - mu) * soft_loss


def regression_distillation_loss(
    smooth_l1_loss: Tensor, bounded_loss: Tensor | None, nu: float = 0.5
) -> Tensor:
    r"""Combine the ordinary smooth-L1 box loss with the teacher-bounded L2 loss.

    .. math::
        L_{reg} = L_{smoothL1}(R_s, y) + \nu \cdot L_b(R_s, R_t, y)

    With ``bounded_loss=None`` (switched off) this returns ``smooth_l1_loss`` itself. For the sum to mean
    what the paper's objective means, both terms should share one normalizer (see the module docstring).

    Args:
        smooth_l1_loss: scalar smooth-L1 loss of the student against the ground-truth deltas.
        bounded_loss: scalar :func:`bounded_regression_loss`, or None.
        nu: ν >= 0. Paper default 0.5.
    """
    if not nu >= 0.0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    if bounded_loss is None:
        return smooth_l1_loss
    return smooth_l1_loss + nu * bounded_loss
