"""Where on a feature map the objects are: ground-truth-box masks at a level's stride, FGFI's anchor mask,
FGD's area-weighted masks, and the masked imitation distance they weight. Pure tensor functions."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_iou


def box_cells(box: Tensor, stride: float, height: int, width: int) -> tuple[int, int, int, int]:
    """Cells ``[r0, r1) × [c0, c1)`` of an H×W map at ``stride`` that a box (x1, y1, x2, y2, canvas pixels)
    overlaps: cell (r, c) covers pixels ``[c·s, (c+1)·s) × [r·s, (r+1)·s)``; at least one cell per box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    c0 = min(max(int(math.floor(x1 / stride)), 0), width - 1)
    r0 = min(max(int(math.floor(y1 / stride)), 0), height - 1)
    c1 = min(max(int(math.ceil(x2 / stride)), c0 + 1), width)
    r1 = min(max(int(math.ceil(y2 / stride)), r0 + 1), height)
    return r0, r1, c0, c1


def gt_box_mask(boxes: list[Tensor], stride: float, height: int, width: int, device=None) -> Tensor:  # noqa: ANN001
    """N×H×W float mask, 1 on the cells any of the image's ground-truth boxes overlaps."""
    mask = torch.zeros(len(boxes), height, width, device=device)
    for n, image_boxes in enumerate(boxes):
        for box in image_boxes:
            r0, r1, c0, c1 = box_cells(box, stride, height, width)
            mask[n, r0:r1, c0:c1] = 1.0
    return mask


def fgfi_mask(anchors: list[Tensor], boxes: list[Tensor], psi: float = 0.5) -> Tensor:
    """FGFI's fine-grained imitation mask (Wang et al. 2019), N×H×W.

    For each ground-truth box, the IoU with every anchor of the level; the box's threshold is ψ × its best
    anchor IoU; a location is imitated when one of its A anchors passes the threshold (``>``) of some box.

    Args:
        anchors: per image, the level's anchors as H×W×A×4.
        boxes: per image, G×4 ground-truth boxes (same coordinates as the anchors).
        psi: ψ, the threshold's share of each box's best IoU (authors: 0.5).
    """
    masks = []
    for level_anchors, image_boxes in zip(anchors, boxes):
        h, w, a, _ = level_anchors.shape
        if image_boxes.numel() == 0:
            masks.append(torch.zeros(h, w, device=level_anchors.device))
            continue
        iou = box_iou(image_boxes.to(level_anchors.dtype), level_anchors.reshape(-1, 4))  # G × HWA
        threshold = psi * iou.max(dim=1, keepdim=True).values
        passed = (iou > threshold).reshape(-1, h, w, a)
        masks.append(passed.any(dim=3).any(dim=0).float())
    return torch.stack(masks)


def fgd_masks(boxes: list[Tensor], stride: float, height: int, width: int, device=None) -> tuple[Tensor, Tensor]:  # noqa: ANN001
    """FGD's foreground and background masks (Yang et al. 2022), each N×H×W.

    Foreground: ``1 / (h_b · w_b)`` on the cells of box b (its area in cells; the largest value where boxes
    overlap); background: 1 where no box is, divided by the image's number of background cells.
    """
    fg = torch.zeros(len(boxes), height, width, device=device)
    for n, image_boxes in enumerate(boxes):
        for box in image_boxes:
            r0, r1, c0, c1 = box_cells(box, stride, height, width)
            area = 1.0 / ((r1 - r0) * (c1 - c0))
            fg[n, r0:r1, c0:c1] = torch.clamp(fg[n, r0:r1, c0:c1], min=area)
    bg = (fg == 0).float()
    bg = bg / bg.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
    return fg, bg


def masked_imitation(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    r"""``Σ_{n,h,w} M_{nhw} Σ_c (S_{nchw} − T_{nchw})² / (2 · max(Σ M, 1))`` — FGFI's normalisation: the mean
    over imitated locations of half the squared distance summed over channels (0 with graph on an empty mask).

    Args:
        student: N×C×H×W adapted student feature (receives the gradient).
        teacher: N×C×H×W teacher feature (detached).
        mask: N×H×W weights (0/1 for FGFI and the ground-truth-box mask).
    """
    if student.shape != teacher.shape or mask.shape != (student.shape[0], *student.shape[2:]):
        raise ValueError(f"masked_imitation: shapes student {tuple(student.shape)}, teacher "
                         f"{tuple(teacher.shape)}, mask {tuple(mask.shape)} do not pair")
    distance = (student - teacher.detach()).pow(2).sum(dim=1)
    return (distance * mask).sum() / (2.0 * mask.sum().clamp(min=1.0))
