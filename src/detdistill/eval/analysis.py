"""Error analysis after scoring: per-class table, precision–recall curves, a confusion matrix with background.

Nothing here is on the timed path: call these after :func:`~detdistill.eval.inference.evaluate_model` or
:func:`~detdistill.eval.coco.coco_evaluate` returned. Plots use matplotlib's Agg backend (no display).

The confusion matrix is the picture of the paper's main concern, background/foreground confusion: index
0 is *background* (the labels' convention), rows are the truth and columns the prediction, so row 0
counts false detections (a detection matched to no object) and column 0 missed objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .coco import CocoResult

BACKGROUND = "background"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ("name", "num_gt", "AP", "AP50", "AP75")
                 ) -> str:
    """A fixed-width text table of per-class rows (``-1`` printed as ``-``: no ground truth)."""
    cols = [c for c in columns if any(c in r for r in rows)] or list(columns)

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if value == -1.0 else f"{value:.4f}"
        return str(value)

    table = [[c for c in cols]] + [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
                     for line in table)


def _xyxy(bbox: Sequence[float]) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h], np.float64)


def _iou_matrix(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        # COCO's rule for crowd regions: overlap is measured against the detection's own area.
        union = np.where(crowd[None, :], area_a[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def confusion_matrix(
    coco_gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
) -> tuple[np.ndarray, list[str]]:
    """``(matrix, names)``: a ``(K+1)×(K+1)`` count matrix, index 0 background, rows truth, columns prediction.

    Per image, detections with ``score >= score_threshold`` are taken in decreasing score; each is matched,
    regardless of class, to the still-unmatched ground-truth box with the highest IoU ≥ ``iou_threshold``
    (so a right box with the wrong class lands off the diagonal). Unmatched detections count in row 0,
    unmatched boxes in column 0. Boxes marked ``iscrowd``/``ignore``/``difficult`` absorb the detections that
    overlap them and are never counted as missed; overlap with a crowd box is intersection over the
    detection's area, as in COCOeval. Categories are in ``coco_gt['categories']`` order.

    Example:
        >>> gt = {"images": [{"id": 1}], "categories": [{"id": 4, "name": "a"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 10]}]}
        >>> m, names = confusion_matrix(gt, [{"image_id": 1, "category_id": 4, "bbox": [50, 50, 5, 5],
        ...                                   "score": 0.9}])
        >>> names, m.tolist()
        (['background', 'a'], [[0, 1], [1, 0]])
    """
    cats = [int(c["id"]) for c in coco_gt["categories"]]
    index = {cid: k + 1 for k, cid in enumerate(cats)}
    names = [BACKGROUND] + [str(c.get("name", c["id"])) for c in coco_gt["categories"]]
    matrix = np.zeros((len(cats) + 1, len(cats) + 1), np.int64)
    gts: dict[int, list[dict[str, Any]]] = {}
    for ann in coco_gt["annotations"]:
        gts.setdefault(int(ann["image_id"]), []).append(ann)
    dets: dict[int, list[dict[str, Any]]] = {}
    for d in detections:
        if d["score"] >= score_threshold:
            dets.setdefault(int(d["image_id"]), []).append(d)
    for image_id in sorted(set(gts) | set(dets)):
        g = gts.get(image_id, [])
        d = sorted(dets.get(image_id, []), key=lambda x: -x["score"])
        g_boxes = np.array([_xyxy(a["bbox"]) for a in g]).reshape(-1, 4)
        d_boxes = np.array([_xyxy(x["bbox"]) for x in d]).reshape(-1, 4)
        ignored = np.array([bool(a.get("iscrowd", 0) or a.get("ignore", 0) or a.get("difficult", 0))
                            for a in g], bool)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in g], bool)
        ious = _iou_matrix(d_boxes, g_boxes, crowd)
        matched = np.zeros(len(g), bool)
        for i, dt in enumerate(d):
            candidates = np.where(~matched & (ious[i] >= iou_threshold))[0] if len(g) else np.zeros(0, int)
            pred = index[int(dt["category_id"])]
            if len(candidates) == 0:
                matrix[0, pred] += 1
                continue
            j = int(candidates[np.argmax(ious[i, candidates])])
            # Ignored boxes are never marked matched: like a COCO crowd they absorb every overlapping detection.
            if not ignored[j]:
                matched[j] = True
                matrix[index[int(g[j]["category_id"])], pred] += 1
        for j in np.where(~matched & ~ignored)[0]:
            matrix[index[int(g[j]["category_id"])], 0] += 1
    return matrix, names


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def plot_pr_curves(result: CocoResult, out_dir: str | Path, iou: float = 0.5) -> list[Path]:
    """One PNG per class: COCOeval's interpolated precision against its 101 recall points at ``iou``.

    Curves come from ``result.precision`` (area ``all``, 100 detections); classes without ground truth are
    skipped. Returns the written paths (``pr_<class>.png``).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = int(np.where(np.isclose(result.iou_thrs, iou))[0][0])
    paths = []
    for k, (cid, name) in enumerate(zip(result.cat_ids, result.class_names)):
        precision = result.precision[t, :, k, 0, -1]
        if np.all(precision == -1):
            continue
        ap = float(precision.mean())
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=100)
        ax.plot(result.rec_thrs, precision, lw=1.5)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{name} (id {cid}): AP@{iou:.2f} = {ap:.3f}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"pr_{_slug(name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix (counts, rows truth, columns prediction) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * n, 1.0 + 0.6 * n), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion (0 = background)")
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if top and matrix[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_analysis(
    coco_gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    result: CocoResult,
    out_dir: str | Path,
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    per_class: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``per_class.json``, ``per_class.txt``, PR curve PNGs and ``confusion.png``/``.json`` to ``out_dir``."""
    import json

    from ..utils import atomic_write_text

    out_dir = Path(out_dir)
    rows = list(per_class) if per_class is not None else result.per_class()
    atomic_write_text(json.dumps(rows, indent=2), out_dir / "per_class.json")
    atomic_write_text(format_table(rows) + "\n", out_dir / "per_class.txt")
    curves = plot_pr_curves(result, out_dir)
    matrix, names = confusion_matrix(coco_gt, detections, iou_threshold=iou_threshold,
                                     score_threshold=score_threshold)
    atomic_write_text(json.dumps({"names": names, "matrix": matrix.tolist(), "rows": "true",
                                  "columns": "predicted", "iou_threshold": iou_threshold,
                                  "score_threshold": score_threshold}, indent=2), out_dir / "confusion.json")
    picture = plot_confusion_matrix(matrix, names, out_dir / "confusion.png",
                                    title=f"confusion @IoU {iou_threshold}, score >= {score_threshold}")
    return {"per_class": rows, "pr_curves": curves, "confusion": matrix, "names": names,
            "confusion_png": picture}
