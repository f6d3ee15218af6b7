"""Pascal VOC mAP: the devkit's ``voc_eval`` algorithm on COCO-format inputs.

Per class, detections are taken in decreasing score (ties keep input order); each is matched to the
ground-truth box of that class in its image with the highest IoU. IoU ≥ ``iou_threshold`` (the devkit's
``ovmax >= minoverlap``) on a not-yet-matched box is a true positive, on an already-matched one a false
positive; a best match that is ``difficult`` makes the detection neither. Everything else is a false
positive. Recall is over the non-difficult boxes.

Two AP definitions: ``use_07_metric=True`` is VOC2007's 11-point interpolation (mean of the max precision
at recall ≥ 0, 0.1, …, 1); ``False`` is the area under the monotone precision envelope (VOC2010+).
``plus_one=True`` measures boxes the old devkit way: corners are inclusive pixel indices, so a box's width
is x2 − x1 + 1 (and an intersection's too), for comparing with published VOC devkit numbers; the default
(off) is continuous coordinates, width x2 − x1, like COCO and torchvision. The corners are the COCO
``bbox``'s ``(x, y, x + w, y + h)`` either way.

Ground truth is a COCO dict: ``ignore`` (what :func:`detdistill.data.convert.to_coco_dict` writes for VOC
``difficult``), ``difficult`` and ``iscrowd`` all mark a box as difficult. A class without any
non-difficult box has AP ``-1.0`` (undefined, as in COCOeval) and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .coco import check_detections


@dataclass
class VocClassResult:
    """One class: its AP, the number of non-difficult boxes, and the raw recall/precision per detection."""

    category_id: int
    name: str
    ap: float
    num_gt: int
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)


@dataclass
class VocResult:
    """VOC mAP and the per-class results (in the ground truth's category order)."""

    map: float
    classes: list[VocClassResult]
    iou_threshold: float
    use_07_metric: bool
    plus_one: bool

    def per_class(self) -> list[dict[str, Any]]:
        """Rows ``category_id``, ``name``, ``num_gt``, ``AP50`` (``-1.0`` without ground truth)."""
        return [{"category_id": c.category_id, "name": c.name, "num_gt": c.num_gt, "AP50": c.ap}
                for c in self.classes]


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a recall/precision curve (detections in decreasing score order), as the devkit computes it.

    Example:
        >>> voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
        0.8333333333333333
        >>> round(voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), use_07_metric=True), 6)
        0.848485
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            above = precision[recall >= t]
            ap += (float(above.max()) if above.size else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _iou(box: np.ndarray, boxes: np.ndarray, plus_one: bool) -> np.ndarray:
    one = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + one, 0.0)
    ih = np.maximum(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + one, 0.0)
    inter = iw * ih
    area_box = (box[2] - box[0] + one) * (box[3] - box[1] + one)
    areas = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    union = area_box + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _xyxy(bbox: Sequence[float]) -> list[float]:
    # The corners are the file's own (x1, y1, x2, y2); plus_one only changes how widths are measured
    # from them (the devkit reads x2 as an inclusive pixel index, so the width is x2 - x1 + 1).
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def voc_evaluate(
    coco_gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    plus_one: bool = False,
    check: bool = True,
    source: str = "detections",
) -> VocResult:
    """VOC mAP of COCO-format ``detections`` against the COCO ground truth ``coco_gt``.

    Example:
        >>> gt = {"images": [{"id": 1}], "categories": [{"id": 5, "name": "cell"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10]}]}
        >>> voc_evaluate(gt, [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10], "score": 1}]).map
        1.0
    """
    dets = check_detections(list(detections), coco_gt, source) if check else list(detections)
    gt_by_class: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    grouped: dict[tuple[int, int], tuple[list[list[float]], list[bool]]] = {}
    for ann in coco_gt["annotations"]:
        key = (int(ann["category_id"]), int(ann["image_id"]))
        boxes, hard = grouped.setdefault(key, ([], []))
        boxes.append(_xyxy(ann["bbox"]))
        hard.append(bool(ann.get("ignore", 0) or ann.get("difficult", 0) or ann.get("iscrowd", 0)))
    for (cid, iid), (boxes, hard) in grouped.items():
        gt_by_class.setdefault(cid, {})[iid] = (np.asarray(boxes, np.float64).reshape(-1, 4),
                                                np.asarray(hard, bool))
    dets_by_class: dict[int, list[dict[str, Any]]] = {}
    for det in dets:
        dets_by_class.setdefault(int(det["category_id"]), []).append(det)

    classes = []
    for cat in coco_gt["categories"]:
        cid = int(cat["id"])
        images = gt_by_class.get(cid, {})
        num_gt = int(sum((~hard).sum() for _, hard in images.values()))
        matched = {iid: np.zeros(len(hard), bool) for iid, (_, hard) in images.items()}
        cls_dets = dets_by_class.get(cid, [])
        order = np.argsort(-np.asarray([d["score"] for d in cls_dets], np.float64), kind="stable")
        tp = np.zeros(len(cls_dets))
        fp = np.zeros(len(cls_dets))
        for rank, j in enumerate(order):
            det = cls_dets[j]
            entry = images.get(int(det["image_id"]))
            if entry is None or len(entry[0]) == 0:
                fp[rank] = 1
                continue
            boxes, hard = entry
            ious = _iou(np.asarray(_xyxy(det["bbox"])), boxes, plus_one)
            best = int(np.argmax(ious))
            if ious[best] >= iou_threshold:
                if hard[best]:
                    continue
                if not matched[int(det["image_id"])][best]:
                    tp[rank] = 1
                    matched[int(det["image_id"])][best] = True
                else:
                    fp[rank] = 1
            else:
                fp[rank] = 1
        # Detections matched to difficult boxes count as neither: drop them from the curve.
        keep = (tp + fp) > 0
        tp_c, fp_c = np.cumsum(tp[keep]), np.cumsum(fp[keep])
        if num_gt == 0:
            ap, rec, prec = -1.0, np.zeros(0), np.zeros(0)
        else:
            rec = tp_c / num_gt
            prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
            ap = voc_ap(rec, prec, use_07_metric)
        classes.append(VocClassResult(cid, str(cat.get("name", cid)), float(ap), num_gt, rec, prec))
    defined = [c.ap for c in classes if c.ap > -1]
    mean = float(np.mean(defined)) if defined else -1.0
    return VocResult(mean, classes, iou_threshold, use_07_metric, plus_one)


def voc_map(
    coco_gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    plus_one: bool = False,
) -> float:
    """VOC mAP@``iou_threshold`` (mean over classes with ground truth); see :func:`voc_evaluate`.

    Example:
        >>> gt = {"images": [{"id": 1}], "categories": [{"id": 5, "name": "cell"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10]}]}
        >>> voc_map(gt, [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 4], "score": 1}])
        0.0
    """
    return voc_evaluate(coco_gt, detections, iou_threshold=iou_threshold, use_07_metric=use_07_metric,
                        plus_one=plus_one).map
