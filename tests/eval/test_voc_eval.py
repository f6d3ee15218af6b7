"""VOC mAP: hand-computed AP, 11-point vs area, difficult boxes, the +1 pixel convention."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from detdistill.eval import voc as voc_mod
from detdistill.eval.voc import voc_ap, voc_evaluate, voc_map


def gt_dict(annotations, categories=((5, "cell"), (9, "platelet"))):
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "annotations": [dict(a, id=i, image_id=a.get("image_id", 1)) for i, a in enumerate(annotations, 1)],
            "categories": [{"id": c, "name": n} for c, n in categories]}


def det(bbox, score, category_id=5, image_id=1):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


A = {"category_id": 5, "bbox": [0, 0, 10, 10]}
B = {"category_id": 5, "bbox": [20, 20, 10, 10]}
TP_FP_TP = [det([0, 0, 10, 10], 0.9), det([50, 50, 10, 10], 0.8), det([20, 20, 10, 10], 0.7)]


def test_eleven_point_and_area_differ_on_hand_case():
    # recall 0.5, 0.5, 1 / precision 1, 1/2, 2/3.
    # area: 0.5 * 1 + 0.5 * 2/3 = 5/6.  11-point: t = 0..0.5 (6 points) -> 1, t = 0.6..1 (5) -> 2/3.
    area = voc_map(gt_dict([A, B]), TP_FP_TP)
    eleven = voc_map(gt_dict([A, B]), TP_FP_TP, use_07_metric=True)
    assert area == pytest.approx(5 / 6, abs=1e-12)
    assert eleven == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert eleven != pytest.approx(area)


def test_raw_curve_and_class_without_ground_truth():
    result = voc_evaluate(gt_dict([A, B]), TP_FP_TP)
    cell, platelet = result.classes
    np.testing.assert_allclose(cell.recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(cell.precision, [1.0, 0.5, 2 / 3])
    assert cell.num_gt == 2
    assert platelet.ap == -1.0 and platelet.num_gt == 0
    assert result.map == pytest.approx(5 / 6)  # the class without ground truth is not averaged in
    assert result.per_class()[1] == {"category_id": 9, "name": "platelet", "num_gt": 0, "AP50": -1.0}


def test_difficult_box_is_neither_true_nor_false_positive():
    hard = dict(A, ignore=1)  # how to_coco_dict writes VOC difficult
    # The top detection hits the difficult box: ignored. Then FP, then TP: precision 0 then 1/2 at recall 1.
    assert voc_map(gt_dict([hard, B]), TP_FP_TP) == pytest.approx(0.5)
    assert voc_map(gt_dict([hard, B]), TP_FP_TP, use_07_metric=True) == pytest.approx(0.5)
    # Missing a difficult box costs nothing.
    assert voc_map(gt_dict([dict(A, difficult=1), B]), [det([20, 20, 10, 10], 0.7)]) == pytest.approx(1.0)
    # Crowd boxes count as difficult too.
    assert voc_map(gt_dict([dict(A, iscrowd=1), B]), [det([20, 20, 10, 10], 0.7)]) == pytest.approx(1.0)


def test_duplicate_detection_is_false_positive_and_classes_are_separate():
    dets = [det([0, 0, 10, 10], 0.9), det([0, 0, 10, 10], 0.8), det([0, 0, 10, 10], 0.7, category_id=9)]
    result = voc_evaluate(gt_dict([A, {"category_id": 9, "bbox": [40, 40, 10, 10]}]), dets)
    # cell: TP, FP -> AP 1; platelet: one FP (wrong place) -> AP 0.
    assert [c.ap for c in result.classes] == [pytest.approx(1.0), 0.0]
    assert result.map == pytest.approx(0.5)


def test_detection_on_other_image_is_false_positive():
    dets = [det([0, 0, 10, 10], 0.9, image_id=2), det([0, 0, 10, 10], 0.8)]
    # FP then TP over one box: precision 1/2 at recall 1.
    assert voc_map(gt_dict([A]), dets) == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_like_the_devkit():
    # [0,0,10,5] against [0,0,10,10]: IoU exactly 0.5 -> a match (devkit: ovmax >= minoverlap).
    assert voc_map(gt_dict([A]), [det([0, 0, 10, 5], 0.9)]) == 1.0
    assert voc_map(gt_dict([A]), [det([0, 0, 10, 4.9], 0.9)]) == 0.0


def test_plus_one_pixel_convention():
    # Corners (0,0,2,2) and (1,0,3,2). Continuous: intersection 1x2 = 2, union 4 + 4 - 2 = 6 -> 1/3.
    # Devkit (+1): both 3x3 pixels, intersection 2x3 = 6, union 9 + 9 - 6 = 12 -> 1/2, a match.
    gt = gt_dict([{"category_id": 5, "bbox": [0, 0, 2, 2]}])
    dets = [det([1, 0, 2, 2], 0.9)]
    assert voc_map(gt, dets) == 0.0
    assert voc_map(gt, dets, plus_one=True) == 1.0


def test_voc_ap_definitions_directly():
    rec, prec = np.array([0.2, 0.4, 0.4, 0.8]), np.array([1.0, 1.0, 2 / 3, 0.8])
    # area: envelope 1 up to 0.4, then 0.8 up to 0.8, nothing after: 0.4 * 1 + 0.4 * 0.8 = 0.72.
    assert voc_ap(rec, prec) == pytest.approx(0.72)
    # 11-point: t = 0..0.4 (5 points) -> 1, t = 0.5..0.8 (4) -> 0.8, t = 0.9, 1.0 -> 0.
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((5 + 4 * 0.8) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_no_detections_and_no_ground_truth():
    assert voc_map(gt_dict([A]), []) == 0.0
    assert voc_map(gt_dict([]), []) == -1.0


def test_docstring_examples():
    assert doctest.testmod(voc_mod).failed == 0
