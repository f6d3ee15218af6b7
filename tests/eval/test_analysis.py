"""Error analysis: confusion matrix with background (hand-counted), per-class table, PR curve and PNG files."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
from PIL import Image

from detdistill.eval import analysis
from detdistill.eval.analysis import confusion_matrix, format_table, write_analysis
from detdistill.eval.coco import coco_evaluate


def gt_dict(annotations):
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "annotations": [dict(a, id=i, image_id=a.get("image_id", 1), area=a["bbox"][2] * a["bbox"][3],
                                 iscrowd=a.get("iscrowd", 0))
                            for i, a in enumerate(annotations, 1)],
            "categories": [{"id": 10, "name": "square"}, {"id": 20, "name": "circle"}]}


def det(bbox, score, category_id, image_id=1):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


GT = gt_dict([
    {"category_id": 10, "bbox": [0, 0, 10, 10]},    # found as square
    {"category_id": 10, "bbox": [20, 0, 10, 10]},   # found as circle (confusion)
    {"category_id": 20, "bbox": [40, 0, 10, 10]},   # missed
    {"category_id": 20, "bbox": [0, 0, 10, 10], "image_id": 2},  # found as circle
    {"category_id": 10, "bbox": [60, 60, 30, 30], "image_id": 2, "iscrowd": 1},  # crowd: absorbs
])
DETS = [
    det([0, 0, 10, 10], 0.9, 10),
    det([0, 0, 10, 10], 0.85, 10),     # duplicate of a matched box: a false detection
    det([20, 0, 10, 10], 0.8, 20),
    det([80, 80, 10, 10], 0.7, 20),    # on nothing: false detection
    det([40, 0, 10, 10], 0.3, 20),     # below the score threshold: the box counts as missed
    det([0, 0, 10, 10], 0.9, 20, image_id=2),
    det([62, 62, 25, 25], 0.95, 10, image_id=2),  # inside the crowd region: ignored
    det([61, 61, 26, 26], 0.94, 20, image_id=2),  # second one on the crowd: also ignored
]


def test_confusion_matrix_hand_counted():
    matrix, names = confusion_matrix(GT, DETS, iou_threshold=0.5, score_threshold=0.5)
    assert names == ["background", "square", "circle"]
    # rows truth, columns prediction, 0 = background
    assert matrix.tolist() == [
        [0, 1, 1],   # false detections: the duplicate square, the circle on nothing
        [0, 1, 1],   # square: one right, one called circle
        [1, 0, 1],   # circle: one missed, one right
    ]


def test_confusion_matrix_threshold_and_difficult():
    matrix, _ = confusion_matrix(GT, DETS, score_threshold=0.0)
    assert matrix[2].tolist() == [0, 0, 2]  # the low-score circle now finds its box
    hard = gt_dict([{"category_id": 10, "bbox": [0, 0, 10, 10], "ignore": 1}])
    matrix, _ = confusion_matrix(hard, [])
    assert matrix.sum() == 0  # a missed difficult box is not a miss


def test_per_class_table_text():
    result = coco_evaluate(GT, DETS)
    rows = result.per_class()
    text = format_table(rows).splitlines()
    assert text[0].split() == ["name", "num_gt", "AP", "AP50", "AP75"]
    assert text[1].split()[:2] == ["square", "2"] and text[2].split()[:2] == ["circle", "2"]
    assert float(text[1].split()[3]) == pytest.approx(rows[0]["AP50"], abs=5e-5)
    assert format_table([{"name": "x", "AP": -1.0}], ("name", "AP")).splitlines()[1].split() == ["x", "-"]


def test_write_analysis_files(tmp_path):
    result = coco_evaluate(GT, DETS)
    out = write_analysis(GT, DETS, result, tmp_path, score_threshold=0.5)
    assert sorted(p.name for p in out["pr_curves"]) == ["pr_circle.png", "pr_square.png"]
    for path in [*out["pr_curves"], tmp_path / "confusion.png"]:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] >= 200
    saved = json.loads((tmp_path / "confusion.json").read_text())
    assert saved["matrix"] == out["confusion"].tolist() == [[0, 1, 1], [0, 1, 1], [1, 0, 1]]
    rows = json.loads((tmp_path / "per_class.json").read_text())
    assert [r["category_id"] for r in rows] == [10, 20]
    # the PR curve plotted is COCOeval's: its mean is the class AP50
    t = int(np.where(np.isclose(result.iou_thrs, 0.5))[0][0])
    assert result.precision[t, :, 0, 0, -1].mean() == pytest.approx(rows[0]["AP50"])


def test_docstring_examples():
    assert doctest.testmod(analysis).failed == 0
