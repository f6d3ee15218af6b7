"""Unlabelled images in a distillation batch (``data.unlabeled``; a target with ``labelled = False``), as one unit.

* :meth:`UnlabelledImages.label`: which images are supervised, and the teacher's boxes of the others — as
  their hard targets with ``distill.pseudo_label_score``, else for the GT-box masks of ``hint_fgfi``/``fgd``
  (detections above :data:`TEACHER_BOX_SCORE`). Returns new targets; the batch's are not changed.
* :meth:`UnlabelledImages.sample_anchors`: the RPN soft term's anchors on images without targets, with the
  teacher's objectness as the oracle (its positives first, the rest random background).
* :func:`labelled_view`: what a ``needs_labels`` term (bounded regression, GT-box imitation) reads: the
  samples of the labelled images alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList

from ..data.base import PER_BOX_KEYS
from .terms import RPNSamples, TermContext

TEACHER_BOX_SCORE = 0.5
"""Score above which the teacher's detections stand in for the ground-truth boxes of an unlabelled image in
the masks of ``hint_fgfi`` and ``fgd`` (when ``distill.pseudo_label_score`` is not set)."""


@dataclass
class Labelling:
    """A batch's targets after the teacher labelled its unlabelled images."""

    targets: list[dict[str, Tensor]]
    supervised: list[bool]
    """Per image: the supervised losses run on it (labelled, or pseudo-labelled by the teacher)."""
    teacher_boxes: dict[int, Tensor] = field(default_factory=dict)
    """Per unlabelled image, the teacher's boxes that stand in for its ground truth in the GT-box masks."""
    stats: dict[str, float] = field(default_factory=dict)


class UnlabelledImages:
    """The teacher's part on images without labels: pseudo-labels, mask boxes and RPN anchor samples.

    ``reads``: what the terms that also see unlabelled images read (only those samples are made for them)."""

    def __init__(self, teacher: FasterRCNN, pseudo_label_score: float | None, reads: set[str]) -> None:
        self.teacher, self.pseudo_label_score, self.reads = teacher, pseudo_label_score, reads

    @torch.no_grad()
    def teacher_detections(self, image_list: ImageList, t_feats: dict[str, Tensor],
                           idx: list[int]) -> list[dict[str, Tensor]]:
        """The teacher's detections (canvas coordinates) on images ``idx`` of the batch, from its features."""
        index = torch.tensor(idx, device=image_list.tensors.device)
        sub = ImageList(image_list.tensors.index_select(0, index), [image_list.image_sizes[i] for i in idx])
        feats = {k: v.index_select(0, index) for k, v in t_feats.items()}
        proposals, _ = self.teacher.rpn(sub, feats)
        detections, _ = self.teacher.roi_heads(feats, proposals, sub.image_sizes)
        return detections

    def label(self, image_list: ImageList, t_feats: dict[str, Tensor], targets: list[dict[str, Tensor]],
              labelled: list[bool]) -> Labelling:
        """Supervised images and teacher boxes of a batch whose images ``labelled`` says have labels."""
        unlabelled = [i for i, ok in enumerate(labelled) if not ok]
        out = Labelling(list(targets), list(labelled))
        if not unlabelled:
            return out
        pseudo = self.pseudo_label_score
        out.stats["unlabelled_images"] = float(len(unlabelled))
        if pseudo is None and "gt_boxes" not in self.reads:
            return out
        threshold = TEACHER_BOX_SCORE if pseudo is None else float(pseudo)
        found = 0
        for i, det in zip(unlabelled, self.teacher_detections(image_list, t_feats, unlabelled)):
            chosen = det["scores"] >= threshold
            found += int(chosen.sum())
            if pseudo is None:
                out.teacher_boxes[i] = det["boxes"][chosen]
            else:
                rest = {k: v for k, v in targets[i].items() if k not in PER_BOX_KEYS}
                out.targets[i] = {**rest, "boxes": det["boxes"][chosen], "labels": det["labels"][chosen]}
                out.supervised[i] = True
        out.stats["teacher_boxes_per_unlabelled"] = found / len(unlabelled)
        return out

    @staticmethod
    def sample_anchors(rpn: RPNSamples, supervised: list[bool], per_image: int, sampler) -> RPNSamples:  # noqa: ANN001
        """``rpn`` with the anchors of images without targets added to ``sampled``: ``sampler``'s sizes (the
        student's), the teacher as the oracle (objectness > 0.5 positive, most confident first; the rest
        random). Call it after every supervised sample is drawn, so theirs use the RNG as a batch of them alone."""
        size, fraction = sampler.batch_size_per_image, sampler.positive_fraction
        picked = []
        for i, sup in enumerate(supervised):
            if sup:
                continue
            teacher = rpn.teacher_objectness[i * per_image:(i + 1) * per_image]
            positive = torch.where(teacher > 0)[0]
            if positive.numel() > int(size * fraction):
                positive = positive[teacher[positive].topk(int(size * fraction)).indices]
            negative = torch.where(teacher <= 0)[0]
            count = min(negative.numel(), size - positive.numel())
            negative = negative[torch.randperm(negative.numel(), device=negative.device)[:count]]
            picked += [positive + i * per_image, negative + i * per_image]
        extra = torch.cat(picked)
        return replace(rpn, sampled=torch.cat([rpn.sampled, extra]), num_sampled=rpn.num_sampled + extra.numel())


def labelled_view(ctx: TermContext, labelled: list[bool], per_image: int, rcn_images: Tensor | None) -> TermContext:
    """``ctx`` restricted to the labelled images: what a ``needs_labels`` term reads (stats shared)."""
    view = replace(ctx)
    if ctx.rpn is not None:
        lab = torch.tensor(labelled, device=ctx.rpn.sampled.device)
        r = ctx.rpn
        sampled = r.sampled[lab[r.sampled // per_image]]
        view.rpn = replace(r, sampled=sampled, positive=r.positive[lab[r.positive // per_image]],
                           num_sampled=int(sampled.numel()))
    if ctx.rcn is not None and rcn_images is not None:
        rows = torch.tensor(labelled, device=rcn_images.device)[rcn_images]
        r = ctx.rcn
        view.rcn = replace(r, class_logits=r.class_logits[rows], box_regression=r.box_regression[rows],
                           teacher_logits=r.teacher_logits[rows], teacher_regression=r.teacher_regression[rows],
                           labels=r.labels[rows], regression_targets=r.regression_targets[rows])
    view.gt_boxes = [b for b, ok in zip(ctx.gt_boxes, labelled) if ok]
    return view
