"""COCO box AP through faster-coco-eval (the reference algorithm in C++), plus strict input checks.

Scores come from the field's reference tool, never from a re-implementation: :func:`coco_evaluate` hands
the ground truth and detections to ``faster_coco_eval.COCOeval_faster`` (same numbers as pycocotools'
``COCOeval``; a test cross-checks both) and reads its ``stats`` and ``precision`` array.

Conventions
-----------
- Detections are COCO results entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in
  the ground truth's own (possibly non-contiguous) category ids.
- ``-1`` means "not defined": COCOeval's own value when an area range or class has no ground truth
  (e.g. ``APs`` on a set without small objects). It is kept as ``-1.0`` everywhere (metrics, per-class
  table, JSON) so numbers match the reference tools and JSON stays standard (no NaN).
- Crowd boxes (``iscrowd: 1``) are ignored as COCOeval does; the file's ``area`` decides the size bucket.
  VOC ``difficult`` (written as ``ignore`` by :func:`detdistill.data.convert.to_coco_dict`) is *not*
  ignored by COCO AP (COCOeval overrides ``ignore`` with ``iscrowd``); VOC mAP honours it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DetDistillError

#: The keys of :func:`evaluate_detections`, in COCOeval's ``stats`` order.
COCO_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
#: All 12 standard numbers (``stats[0:12]``), the 9 above plus AR per area range.
COCO_ALL_KEYS: tuple[str, ...] = COCO_KEYS + ("ARs", "ARm", "ARl")


class EvalInputError(DetDistillError):
    """Bad ground truth or detections: the message names the file (or source), the entry and the value."""


@dataclass
class CocoResult:
    """What one COCO evaluation produced.

    ``stats`` holds the 12 standard numbers under :data:`COCO_ALL_KEYS`. ``precision`` is COCOeval's
    ``eval['precision']`` array ``[T, R, K, A, M]`` (IoU thresholds × 101 recall points × classes × area
    ranges (all, small, medium, large) × max detections (1, 10, 100)); ``-1`` where a class has no ground
    truth. ``cat_ids``/``class_names`` index its ``K`` axis.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    cat_ids: list[int]
    class_names: list[str]
    num_gt: dict[int, int] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """The 9 headline numbers under :data:`COCO_KEYS`."""
        return {k: self.stats[k] for k in COCO_KEYS}

    def per_class(self) -> list[dict[str, Any]]:
        """Per-class AP table from the precision array (area ``all``, 100 detections).

        Each row: ``category_id``, ``name``, ``num_gt``, ``AP`` (IoU .50:.95), ``AP50``, ``AP75``; ``-1.0``
        where the class has no ground truth, like COCOeval's own summary.
        """
        rows = []
        t50 = _iou_index(self.iou_thrs, 0.5)
        t75 = _iou_index(self.iou_thrs, 0.75)
        for k, (cid, name) in enumerate(zip(self.cat_ids, self.class_names)):
            p = self.precision[:, :, k, 0, -1]
            rows.append({
                "category_id": int(cid),
                "name": name,
                "num_gt": int(self.num_gt.get(int(cid), 0)),
                "AP": _mean_defined(p),
                "AP50": _mean_defined(p[t50]),
                "AP75": _mean_defined(p[t75]),
            })
        return rows


def _iou_index(iou_thrs: np.ndarray, value: float) -> int:
    hits = np.where(np.isclose(iou_thrs, value))[0]
    if len(hits) == 0:
        raise EvalInputError(f"IoU threshold {value} is not among COCOeval's thresholds {iou_thrs.tolist()}")
    return int(hits[0])


def _mean_defined(values: np.ndarray) -> float:
    # COCOeval's own rule (_summarize): average the entries > -1, or -1 when none is defined.
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


# ------------------------------------------------------------------ reading and checking input
def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"{path}: not valid JSON ({exc})") from exc


def check_coco_gt(coco_gt: Any, source: str = "ground truth") -> dict[str, Any]:
    """Validate a COCO ground-truth dict (images, annotations, categories) and return it.

    Checks what evaluation relies on: the three lists exist, ids are integers, every annotation names a
    known image and category and has a finite ``bbox`` of 4 numbers with non-negative width and height.
    """
    if not isinstance(coco_gt, dict):
        raise EvalInputError(f"{source}: expected a COCO object with 'images', 'annotations' and 'categories', "
                             f"got a JSON {type(coco_gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco_gt.get(key), list):
            raise EvalInputError(f"{source}: field '{key}' is missing or not a list")
    image_ids = set()
    for i, img in enumerate(coco_gt["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise EvalInputError(f"{source}: images[{i}] has no integer 'id' (got {_short(img)})")
        image_ids.add(int(img["id"]))
    cat_ids = set()
    for i, cat in enumerate(coco_gt["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise EvalInputError(f"{source}: categories[{i}] has no integer 'id' (got {_short(cat)})")
        cat_ids.add(int(cat["id"]))
    if len(image_ids) != len(coco_gt["images"]):
        seen: set[int] = set()
        for i, img in enumerate(coco_gt["images"]):
            if int(img["id"]) in seen:
                raise EvalInputError(f"{source}: images[{i}] repeats id {img['id']}; image ids must be unique")
            seen.add(int(img["id"]))
    anns = coco_gt["annotations"]
    _check_annotation_ids(anns, source)
    if _all_valid(anns, ("image_id", "category_id", "bbox"), image_ids, cat_ids):
        return coco_gt
    for i, ann in enumerate(anns):
        where = f"{source}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise EvalInputError(f"{where} is not an object (got {_short(ann)})")
        if ann.get("image_id") not in image_ids:
            raise EvalInputError(f"{where}: field 'image_id' has value {ann.get('image_id')!r}, not an image id")
        if ann.get("category_id") not in cat_ids:
            raise EvalInputError(
                f"{where}: field 'category_id' has value {ann.get('category_id')!r}, not a category id")
        _check_bbox(ann.get("bbox"), where)
    return coco_gt


def _check_annotation_ids(anns: list[Any], source: str) -> None:
    """COCOeval matches ground truth by annotation ``id``: a missing one is a KeyError deep inside it, and a
    repeated one makes it match one box twice and the other never (AP 0.25 for perfect detections)."""
    seen: dict[int, int] = {}
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            continue  # named by the per-entry checks
        if "id" not in ann or not _is_int(ann["id"]):
            got = "has no 'id'" if "id" not in ann else f"field 'id' has value {ann['id']!r}"
            raise EvalInputError(f"{source}: annotations[{i}] {got}; every ground-truth annotation needs a unique "
                                 "integer id")
        first = seen.setdefault(int(ann["id"]), i)
        if first != i:
            raise EvalInputError(f"{source}: annotations[{i}] repeats id {ann['id']} of annotations[{first}]; "
                                 "annotation ids must be unique (COCOeval would match one box twice)")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float) and not crowd.is_integer():
            raise EvalInputError(f"{source}: annotations[{i}]: field 'iscrowd' has value {crowd!r}; expected 0 or 1")


def check_detections(detections: Any, coco_gt: dict[str, Any], source: str = "detections") -> list[dict[str, Any]]:
    """Validate COCO-format detections against ``coco_gt`` and return clean copies.

    Accepts a results list, or a COCO object whose ``annotations`` carry scores (what ``detdistill
    predict`` writes). Every entry must name an image and a category of ``coco_gt`` and have a finite
    ``bbox`` ``[x, y, w, h]`` with ``w, h >= 0`` and a finite ``score``; the error names the entry.
    The copies hold only the four fields, so the reference tools never mutate the caller's dicts.
    """
    if isinstance(detections, dict) and isinstance(detections.get("annotations"), list):
        detections = detections["annotations"]
    if not isinstance(detections, list):
        raise EvalInputError(f"{source}: expected a list of detections (COCO results format), "
                             f"got a JSON {type(detections).__name__}")
    image_ids = {int(img["id"]) for img in coco_gt["images"]}
    cat_ids = {int(cat["id"]) for cat in coco_gt["categories"]}
    if _all_valid(detections, ("image_id", "category_id", "bbox", "score"), image_ids, cat_ids):
        return [{"image_id": d["image_id"], "category_id": d["category_id"], "bbox": [float(v) for v in d["bbox"]],
                 "score": float(d["score"])} for d in detections]
    clean = []
    for i, det in enumerate(detections):
        where = f"{source}: entry {i}"
        if not isinstance(det, dict):
            raise EvalInputError(f"{where} is not an object (got {_short(det)})")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in det:
                raise EvalInputError(f"{where}: field '{key}' is missing")
        image_id, category_id, score = det["image_id"], det["category_id"], det["score"]
        if not _is_int(image_id) or int(image_id) not in image_ids:
            raise EvalInputError(f"{where}: field 'image_id' has value {image_id!r}, an image the ground truth "
                                 f"does not have")
        if not _is_int(category_id) or int(category_id) not in cat_ids:
            raise EvalInputError(f"{where}: field 'category_id' has value {category_id!r}; the ground truth's "
                                 f"categories are {sorted(cat_ids)}")
        if not _is_number(score) or not math.isfinite(float(score)):
            raise EvalInputError(f"{where}: field 'score' has value {score!r}; it must be a finite number")
        bbox = _check_bbox(det["bbox"], where)
        clean.append({"image_id": int(image_id), "category_id": int(category_id), "bbox": bbox,
                      "score": float(score)})
    return clean


_NUMBER_TYPES = {int, float}


def _all_valid(entries: list[Any], keys: tuple[str, ...], image_ids: set[int], cat_ids: set[int]) -> bool:
    """Vectorised pass of the per-entry rules; ``False`` sends the caller to the loop that names the bad entry.

    Evaluating 20k detections entry by entry in Python costs more than the C++ scoring itself, and real
    files are nearly always valid, so the common case takes this path.
    """
    try:
        if not all(type(e) is dict for e in entries):
            return False
        columns = {k: [e[k] for e in entries] for k in keys}
    except KeyError:
        return False
    if not {type(v) for v in columns["image_id"]} <= {int} or not set(columns["image_id"]) <= image_ids:
        return False
    if not {type(v) for v in columns["category_id"]} <= {int} or not set(columns["category_id"]) <= cat_ids:
        return False
    bboxes = columns["bbox"]
    if not all(type(b) is list and len(b) == 4 for b in bboxes):
        return False
    if not {type(v) for b in bboxes for v in b} <= _NUMBER_TYPES:
        return False
    arr = np.asarray(bboxes, np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all() or (arr[:, 2:] < 0).any():
        return False
    if "score" in columns:
        if not {type(v) for v in columns["score"]} <= _NUMBER_TYPES:
            return False
        if not np.isfinite(np.asarray(columns["score"], np.float64)).all():
            return False
    return True


def _check_bbox(bbox: Any, where: str) -> list[float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise EvalInputError(f"{where}: field 'bbox' has value {_short(bbox)}; expected [x, y, w, h] numbers")
    values = [float(v) for v in bbox]
    if not all(math.isfinite(v) for v in values):
        raise EvalInputError(f"{where}: field 'bbox' has non-finite value {values}")
    if values[2] < 0 or values[3] < 0:
        raise EvalInputError(f"{where}: field 'bbox' has negative width or height {values}")
    return values


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ scoring
def coco_evaluate(
    coco_gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    *,
    check: bool = True,
    source: str = "detections",
) -> CocoResult:
    """Score COCO-format ``detections`` against the COCO ground truth ``coco_gt`` with faster-coco-eval.

    ``check`` validates the detections first (see :func:`check_detections`); turn it off only for
    detections this package produced itself. Neither input is modified.

    Example:
        >>> gt = {"images": [{"id": 1, "width": 100, "height": 100}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20],
        ...                        "area": 400, "iscrowd": 0}],
        ...       "categories": [{"id": 7, "name": "cell"}]}
        >>> dets = [{"image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "score": 0.9}]
        >>> coco_evaluate(gt, dets).metrics["AP50"]
        1.0
    """
    from faster_coco_eval import COCO, COCOeval_faster

    dets = check_detections(list(detections), coco_gt, source) if check else [dict(d) for d in detections]
    # COCOeval writes 'ignore' (and loadRes writes area/id/segmentation) into the dicts it is given:
    # hand it copies so a caller's ground truth (VOC 'ignore' = difficult) survives for VOC mAP.
    gt = dict(coco_gt)
    gt["annotations"] = [dict(a) for a in coco_gt["annotations"]]
    quiet = _quiet
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt, print_function=quiet)
        coco_dt = coco.loadRes(dets)
        coco_dt.print_function = quiet
        evaluator = COCOeval_faster(coco, coco_dt, iouType="bbox", print_function=quiet)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {k: float(v) for k, v in zip(COCO_ALL_KEYS, evaluator.stats[: len(COCO_ALL_KEYS)])}
    cat_ids = [int(c) for c in evaluator.params.catIds]
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in coco_gt["categories"]}
    num_gt: dict[int, int] = {}
    for ann in coco_gt["annotations"]:
        if not ann.get("iscrowd", 0):
            num_gt[int(ann["category_id"])] = num_gt.get(int(ann["category_id"]), 0) + 1
    return CocoResult(
        stats=stats,
        precision=np.asarray(evaluator.eval["precision"]),
        recall=np.asarray(evaluator.eval["recall"]),
        iou_thrs=np.asarray(evaluator.params.iouThrs),
        rec_thrs=np.asarray(evaluator.params.recThrs),
        cat_ids=cat_ids,
        class_names=[names.get(c, str(c)) for c in cat_ids],
        num_gt=num_gt,
    )


def _quiet(*args: Any, **kwargs: Any) -> None:
    """A print function that prints nothing (the tools' progress chatter)."""


def evaluate_detections(coco_gt: dict[str, Any], detections: Sequence[dict[str, Any]]) -> dict[str, float]:
    """COCO box AP/AR of ``detections`` against ``coco_gt``: keys exactly :data:`COCO_KEYS`.

    ``-1.0`` where COCOeval reports an undefined number (no ground truth in that area range).
    For the per-class table and the precision array use :func:`coco_evaluate`.

    Example:
        >>> gt = {"images": [{"id": 1, "width": 64, "height": 64}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 40],
        ...                        "area": 1600, "iscrowd": 0}],
        ...       "categories": [{"id": 3, "name": "a"}]}
        >>> evaluate_detections(gt, [])["AP"]
        0.0
    """
    return coco_evaluate(coco_gt, detections).metrics


def read_eval_files(
    gt_path: str | Path, detections_path: str | Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read and validate a COCO ground-truth file and a detections file; errors name the file and entry."""
    gt_path, detections_path = Path(gt_path), Path(detections_path)
    coco_gt = check_coco_gt(load_json(gt_path), str(gt_path))
    detections = check_detections(load_json(detections_path), coco_gt, str(detections_path))
    return coco_gt, detections
