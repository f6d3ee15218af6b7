"""What the terms read: filled once per step by the Distiller from the shared samples and the one teacher pass."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class RPNSamples:
    """Both RPN heads on the student's anchors (the teacher's anchors are checked to be the same).

    ``objectness``/``deltas``: student, every anchor of the batch (flattened; ``deltas`` N×4);
    ``teacher_*``: the same anchors, detached. ``sampled``/``positive``: indices of the anchors the student's
    sampler chose (positives first); ``regression_targets``: the ground-truth deltas of every anchor.
    ``num_sampled``: the normaliser torchvision divides its RPN box loss by.
    """

    objectness: Tensor
    deltas: Tensor
    teacher_objectness: Tensor
    teacher_deltas: Tensor
    sampled: Tensor
    positive: Tensor
    regression_targets: Tensor
    num_sampled: int


@dataclass
class RCNSamples:
    """Both RoI heads on the student's sampled RoIs (ground-truth boxes included).

    ``class_logits`` R×C, ``box_regression`` R×4C (student); ``teacher_*`` the same RoIs pooled on the
    teacher's features, detached; ``labels`` (0 = background) and ``regression_targets`` per RoI;
    ``class_weights`` the paper's w_c (background ``distill.background_weight``).
    """

    class_logits: Tensor
    box_regression: Tensor
    teacher_logits: Tensor
    teacher_regression: Tensor
    labels: Tensor
    regression_targets: Tensor
    class_weights: Tensor


@dataclass
class FeaturePair:
    """One paired level: the student's feature after this term's adaptation layer, and the teacher's."""

    teacher_level: str
    student_level: str
    stride: int
    adapted: Tensor
    teacher: Tensor
    anchors: list[Tensor] | None = None
    """Per image, the student's anchors of this level as H×W×A×4 (only for terms that read anchors)."""


@dataclass
class TermContext:
    """Everything a term may read; a field is None (or empty) when no active term reads it."""

    rpn: RPNSamples | None = None
    rcn: RCNSamples | None = None
    features: list[FeaturePair] = field(default_factory=list)
    gt_boxes: list[Tensor] = field(default_factory=list)
    """Per image, its ground-truth boxes (x1, y1, x2, y2) on the batch canvas (after the transform)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Extra per-step statistics a term may add (logged with the losses' values)."""
