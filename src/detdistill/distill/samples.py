"""The student's samples and supervised losses: torchvision's RPN and RoI-head training steps, opened up.

``rpn.forward`` and ``roi_heads.forward`` sample internally and hide which anchors and RoIs they used; the
terms need those samples. :func:`rpn_samples` and :func:`roi_samples` run the same parts of the student
(head, anchor generator, box coder, proposal filter, matcher, sampler, RoI pool, box head, predictor) in
torchvision's order and return the samples with the four supervised losses, computed as torchvision computes
them (``fastrcnn_loss`` is torchvision's own).

Only the *supervised* images (labelled, or pseudo-labelled by the teacher) are matched and sampled, as a
batch of those images alone would be: the same samples, random draws and normalisers. Images without targets
get no RPN samples here, and RoI rows only when a term reads them on such images (``unlabelled_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers


@dataclass
class RPNStep:
    """The student's RPN on a batch: outputs on every anchor, its samples and torchvision's two RPN losses."""

    objectness: Tensor
    """Every anchor of the batch, flattened."""
    deltas: Tensor
    anchors: list[Tensor]
    anchors_per_level: list[int]
    proposals: list[Tensor]
    """Per image, the filtered proposals (sorted by score)."""
    sampled: Tensor
    """Indices of the sampled anchors of the supervised images, positives first."""
    positive: Tensor
    regression_targets: Tensor
    num_sampled: int
    loss_objectness: Tensor
    loss_rpn_box_reg: Tensor

    @property
    def per_image(self) -> int:
        """Anchors per image (one batch canvas: every image has the same anchors)."""
        return int(self.anchors[0].shape[0])


@dataclass
class RoIStep:
    """The student's RoI head on its sampled RoIs: outputs per RoI row and torchvision's two RoI losses.

    ``class_logits`` and ``box_regression`` are None when no RoI was pooled (no supervised image and no term
    reads RoIs on the others); ``row_images`` gives each row's image."""

    rois: list[Tensor]
    labels: list[Tensor]
    regression_targets: list[Tensor]
    class_logits: Tensor | None
    box_regression: Tensor | None
    row_images: Tensor | None
    loss_classifier: Tensor
    loss_box_reg: Tensor


def rpn_samples(rpn: RegionProposalNetwork, image_list: ImageList, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]], supervised: list[bool]) -> RPNStep:
    """The student's RPN outputs, proposals, samples and losses (torchvision's ``RegionProposalNetwork``)."""
    levels = list(features.values())
    objectness, deltas = rpn.head(levels)
    anchors = rpn.anchor_generator(image_list, levels)
    num_images = len(anchors)
    num_anchors_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)
    boxes, _ = rpn.filter_proposals(proposals, objectness, image_list.image_sizes, num_anchors_per_level)

    sup = [i for i, ok in enumerate(supervised) if ok]
    per_image = int(anchors[0].shape[0])
    sup_anchors = [anchors[i] for i in sup]
    labels_s, matched_s = rpn.assign_targets_to_anchors(sup_anchors, [targets[i] for i in sup])
    regression_s = rpn.box_coder.encode(matched_s, sup_anchors) if sup else ()
    pos_masks, neg_masks = rpn.fg_bg_sampler(labels_s)
    empty = torch.zeros(0, dtype=torch.int64, device=objectness.device)
    pos = torch.cat([empty] + [torch.where(m)[0] + i * per_image for m, i in zip(pos_masks, sup)])
    neg = torch.cat([empty] + [torch.where(m)[0] + i * per_image for m, i in zip(neg_masks, sup)])
    sampled = torch.cat([pos, neg], dim=0)
    objectness = objectness.flatten()
    by_image = {i: k for k, i in enumerate(sup)}
    labels = torch.cat([labels_s[by_image[i]] if i in by_image else anchors[i].new_zeros(per_image)
                        for i in range(num_images)], dim=0)
    regression_targets = torch.cat([regression_s[by_image[i]] if i in by_image else anchors[i].new_zeros(per_image, 4)
                                    for i in range(num_images)], dim=0)
    num_sampled = sampled.numel()
    if num_sampled:
        # torchvision's RPN losses, on exactly these samples.
        box_loss = F.smooth_l1_loss(deltas[pos], regression_targets[pos], beta=1 / 9, reduction="sum") / num_sampled
        cls_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
    else:  # no supervised image in the batch
        box_loss, cls_loss = deltas.sum() * 0.0, objectness.sum() * 0.0
    return RPNStep(objectness, deltas, anchors, num_anchors_per_level, boxes, sampled, pos, regression_targets,
                   num_sampled, cls_loss, box_loss)


def roi_samples(heads: RoIHeads, image_list: ImageList, features: dict[str, Tensor], proposals: list[Tensor],
                targets: list[dict[str, Tensor]], supervised: list[bool], unlabelled_rows: bool) -> RoIStep:
    """The RoI head's losses on the supervised images' sampled RoIs (torchvision's ``RoIHeads``); with
    ``unlabelled_rows``, the student's top proposals of the other images join the pooled rows (no ground truth
    to sample against; ``filter_proposals`` sorted them by score)."""
    num_images = len(proposals)
    sup = [i for i, ok in enumerate(supervised) if ok]
    rois = [p[:0] for p in proposals]
    labels = [torch.zeros(0, dtype=torch.int64, device=p.device) for p in proposals]
    regression_targets = [p.new_zeros(0, 4) for p in proposals]
    if sup:
        sampled, _, labels_s, regression_s = heads.select_training_samples([proposals[i] for i in sup],
                                                                           [targets[i] for i in sup])
        for k, i in enumerate(sup):
            rois[i], labels[i], regression_targets[i] = sampled[k], labels_s[k], regression_s[k]
    if unlabelled_rows:
        top = heads.fg_bg_sampler.batch_size_per_image
        for i in range(num_images):
            if not supervised[i]:
                rois[i] = proposals[i][:top]
                labels[i] = torch.zeros(len(rois[i]), dtype=torch.int64, device=rois[i].device)
                regression_targets[i] = rois[i].new_zeros(len(rois[i]), 4)
    if not sup and not unlabelled_rows:
        zero = sum(f.sum() for f in features.values()) * 0.0
        return RoIStep(rois, labels, regression_targets, None, None, None, zero, zero)
    box_features = heads.box_head(heads.box_roi_pool(features, rois, image_list.image_sizes))
    class_logits, box_regression = heads.box_predictor(box_features)
    device = class_logits.device
    row_images = torch.repeat_interleave(torch.arange(num_images, device=device),
                                         torch.tensor([len(r) for r in rois], device=device))
    if len(sup) == num_images:
        cls_loss, box_loss = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
    elif sup:
        rows = torch.tensor(supervised, device=device)[row_images]
        cls_loss, box_loss = fastrcnn_loss(class_logits[rows], box_regression[rows], [labels[i] for i in sup],
                                           [regression_targets[i] for i in sup])
    else:
        cls_loss = box_loss = class_logits.sum() * 0.0
    return RoIStep(rois, labels, regression_targets, class_logits, box_regression, row_images, cls_loss, box_loss)
