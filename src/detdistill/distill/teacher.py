"""The one teacher seam: where the Distiller gets the teacher's student-independent outputs of a batch.

A :class:`TeacherSource` answers ``teacher_outputs(image_list, targets, need_rpn)`` with
:class:`TeacherOutputs`. Two stand behind it: :class:`LiveTeacher` runs the frozen teacher's backbone and RPN
head on the batch canvas, and :class:`~detdistill.distill.teacher_cache.TeacherCache` reads what a live teacher
computed once per (image, flip). The Distiller is given its source when it is built; the teacher's RoI head
never sits behind the seam (it runs on the student's sampled RoIs, pooled from ``features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList


@dataclass
class TeacherOutputs:
    """What the terms read from the teacher that does not depend on the student.

    ``features``: the teacher's FPN levels on the batch canvas; ``objectness``/``deltas``: its RPN head's
    per-level outputs (None when no RPN term is on).
    """

    features: dict[str, Tensor] = field(default_factory=dict)
    objectness: list[Tensor] | None = None
    deltas: list[Tensor] | None = None


@runtime_checkable
class TeacherSource(Protocol):
    """Gives the teacher's outputs of a batch: ``need_rpn`` asks for the RPN head's outputs too."""

    def teacher_outputs(self, image_list: ImageList, targets: list[dict[str, Tensor]],
                        need_rpn: bool) -> TeacherOutputs: ...


class LiveTeacher:
    """The frozen teacher itself, run on the student's batch canvas (a plain object: it registers nothing)."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher

    @torch.no_grad()
    def teacher_outputs(self, image_list: ImageList, targets: list[dict[str, Tensor]],  # noqa: ARG002
                        need_rpn: bool) -> TeacherOutputs:
        features = self.teacher.backbone(image_list.tensors)
        out = TeacherOutputs(features=features)
        if need_rpn:
            out.objectness, out.deltas = self.teacher.rpn.head(list(features.values()))
        return out
