"""COCO AP through faster-coco-eval: hand-computed cases, crowd, area, id remapping, bad input."""

from __future__ import annotations

import contextlib
import copy
import doctest
import io
import math

import numpy as np
import pytest

from detdistill.eval import coco as coco_mod
from detdistill.eval.coco import (
    COCO_ALL_KEYS, COCO_KEYS, EvalInputError, check_coco_gt, coco_evaluate, evaluate_detections,
)

# COCO interpolates precision at 101 recall points; with the curve TP, FP, TP over 2 ground truths the
# envelope is 1 for recall <= 0.5 (51 points) and 2/3 above (50 points).
AP_TP_FP_TP = (51 * 1.0 + 50 * (2.0 / 3.0)) / 101


def gt_dict(annotations, categories=((5, "cell"), (9, "platelet")), images=((1, 100, 100),)):
    anns = []
    for i, a in enumerate(annotations, start=1):
        x, y, w, h = a["bbox"]
        anns.append({"id": i, "image_id": a.get("image_id", 1), "category_id": a["category_id"],
                     "bbox": list(a["bbox"]), "area": a.get("area", w * h), "iscrowd": a.get("iscrowd", 0)})
    return {"images": [{"id": i, "width": w, "height": h, "file_name": f"{i}.png"} for i, w, h in images],
            "annotations": anns,
            "categories": [{"id": c, "name": n} for c, n in categories]}


def det(bbox, score, category_id=5, image_id=1):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


TWO_GT = gt_dict([{"category_id": 5, "bbox": [0, 0, 10, 10]}, {"category_id": 5, "bbox": [20, 20, 10, 10]}])
THREE_DETS = [det([0, 0, 10, 10], 0.9), det([50, 50, 10, 10], 0.8), det([20, 20, 10, 10], 0.7)]


def test_hand_computed_ap_one_image_two_gt_three_detections():
    m = evaluate_detections(TWO_GT, THREE_DETS)
    assert list(m) == list(COCO_KEYS)
    # Exact boxes: the same TP/FP/TP curve at every IoU threshold.
    for key in ("AP", "AP50", "AP75", "APs"):
        assert m[key] == pytest.approx(AP_TP_FP_TP, abs=1e-12)
    assert m["APm"] == -1.0 and m["APl"] == -1.0  # no medium/large ground truth: COCOeval's -1
    assert m["AR1"] == pytest.approx(0.5)  # one detection per image: the top one, 1 of 2 found
    assert m["AR10"] == pytest.approx(1.0) and m["AR100"] == pytest.approx(1.0)


def test_inputs_are_not_mutated():
    gt = copy.deepcopy(TWO_GT)
    gt["annotations"][0]["ignore"] = 1  # VOC difficult as to_coco_dict writes it
    dets = copy.deepcopy(THREE_DETS)
    before_gt, before_dets = copy.deepcopy(gt), copy.deepcopy(dets)
    coco_evaluate(gt, dets)
    assert gt == before_gt and dets == before_dets


def test_detections_in_order_of_score_not_of_input():
    shuffled = [THREE_DETS[2], THREE_DETS[0], THREE_DETS[1]]
    assert evaluate_detections(TWO_GT, shuffled)["AP"] == pytest.approx(AP_TP_FP_TP, abs=1e-12)


def test_crowd_box_absorbs_detections_instead_of_false_positive():
    anns = [{"category_id": 5, "bbox": [0, 0, 10, 10]},
            {"category_id": 5, "bbox": [50, 50, 40, 40], "iscrowd": 1}]
    dets = [det([55, 55, 10, 10], 0.9), det([0, 0, 10, 10], 0.8)]
    # Inside the crowd region the top detection is ignored: precision 1 at recall 1.
    assert evaluate_detections(gt_dict(anns), dets)["AP"] == pytest.approx(1.0)
    # The same box without the crowd flag is a ground truth the 10x10 detection misses (IoU 1/16):
    # FP then TP over 2 ground truths -> precision 1/2 up to recall 1/2, then nothing.
    anns[1]["iscrowd"] = 0
    m = evaluate_detections(gt_dict(anns), dets)
    assert m["AP50"] == pytest.approx((51 * 0.5) / 101, abs=1e-12)


def test_area_field_decides_size_bucket():
    # Box B is 10x10 but its file area says medium (as COCO's segmentation areas can).
    gt = gt_dict([{"category_id": 5, "bbox": [0, 0, 10, 10]},
                  {"category_id": 5, "bbox": [20, 20, 10, 10], "area": 5000.0}])
    m = evaluate_detections(gt, THREE_DETS)
    # small: A found (TP), the far box FP after it -> AP 1; B and its detection are out of range.
    assert m["APs"] == pytest.approx(1.0)
    # medium: only B and its detection count; the far 10x10 detection is small, so ignored.
    assert m["APm"] == pytest.approx(1.0)
    assert m["APl"] == -1.0


def test_non_contiguous_category_ids_and_per_class_table():
    gt = gt_dict([{"category_id": 5, "bbox": [0, 0, 10, 10]}, {"category_id": 9, "bbox": [20, 20, 10, 10]}])
    dets = [det([0, 0, 10, 10], 0.9, 5), det([20, 20, 10, 10], 0.8, 5), det([20, 20, 10, 10], 0.7, 9)]
    result = coco_evaluate(gt, dets)
    rows = {r["category_id"]: r for r in result.per_class()}
    assert rows[5]["name"] == "cell" and rows[5]["num_gt"] == 1
    assert rows[5]["AP"] == pytest.approx(1.0)  # TP then FP: envelope 1 up to recall 1
    assert rows[9]["AP"] == pytest.approx(1.0)
    # The id 9 detection named with a contiguous label (2) would be an unknown category.
    with pytest.raises(EvalInputError, match=r"entry 0: field 'category_id' has value 2"):
        evaluate_detections(gt, [det([0, 0, 1, 1], 0.5, 2)])


def test_class_without_ground_truth_is_minus_one_in_table():
    result = coco_evaluate(TWO_GT, THREE_DETS)
    rows = {r["category_id"]: r for r in result.per_class()}
    assert rows[9] == {"category_id": 9, "name": "platelet", "num_gt": 0, "AP": -1.0, "AP50": -1.0,
                       "AP75": -1.0}
    assert rows[5]["AP50"] == pytest.approx(AP_TP_FP_TP, abs=1e-12)


def test_no_detections_scores_zero():
    m = evaluate_detections(TWO_GT, [])
    assert m["AP"] == 0.0 and m["AR100"] == 0.0 and m["APm"] == -1.0


def _fixture(seed: int = 0):
    """A messy set: 6 images, 3 non-contiguous categories, crowds, jittered detections, distinct scores."""
    rng = np.random.default_rng(seed)
    images = [(i, 200, 150) for i in range(1, 7)]
    anns, dets = [], []
    scores = iter(rng.permutation(1000)[:200] / 1000.0 + 0.0005)
    for img, _, _ in images:
        for _ in range(rng.integers(1, 6)):
            cat = int(rng.choice([3, 7, 42]))
            w, h = rng.uniform(5, 90, 2)
            x, y = rng.uniform(0, 100), rng.uniform(0, 60)
            crowd = int(rng.random() < 0.1)
            anns.append({"image_id": img, "category_id": cat, "bbox": [x, y, w, h], "iscrowd": crowd})
            for _ in range(rng.integers(0, 3)):
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                dets.append(det([x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)],
                                float(next(scores)), int(rng.choice([cat, cat, 3])), img))
        for _ in range(2):
            dets.append(det([*rng.uniform(0, 120, 2), *rng.uniform(3, 40, 2)], float(next(scores)),
                            int(rng.choice([3, 7, 42])), img))
    return gt_dict(anns, categories=((3, "a"), (7, "b"), (42, "c")), images=images), dets


def test_matches_pycocotools_on_all_twelve_numbers():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = _fixture()
    ours = coco_evaluate(gt, dets).stats
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert list(ours) == list(COCO_ALL_KEYS)
    np.testing.assert_allclose([ours[k] for k in COCO_ALL_KEYS], ev.stats, rtol=0, atol=1e-12)
    assert 0.0 < ours["AP"] < 1.0  # the fixture is neither trivial nor empty


def test_tool_prints_are_silenced(capsys):
    evaluate_detections(TWO_GT, THREE_DETS)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 99, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 0.5},
     r"dets.json: entry 1: field 'image_id' has value 99"),
    ({"image_id": 1, "category_id": 6, "bbox": [0, 0, 1, 1], "score": 0.5},
     r"dets.json: entry 1: field 'category_id' has value 6; the ground truth's categories are \[5, 9\]"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, math.nan, 1, 1], "score": 0.5},
     r"dets.json: entry 1: field 'bbox' has non-finite value"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, 0, math.inf, 1], "score": 0.5},
     r"dets.json: entry 1: field 'bbox' has non-finite value"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, 0, 1], "score": 0.5},
     r"dets.json: entry 1: field 'bbox' has value \[0, 0, 1\]"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, 0, -1, 1], "score": 0.5},
     r"dets.json: entry 1: field 'bbox' has negative width"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1], "score": math.nan},
     r"dets.json: entry 1: field 'score' has value nan"),
    ({"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}, r"dets.json: entry 1: field 'score' is missing"),
    ("oops", r"dets.json: entry 1 is not an object"),
])
def test_bad_detections_name_the_entry(bad, message):
    with pytest.raises(EvalInputError, match=message):
        coco_evaluate(TWO_GT, [THREE_DETS[0], bad], source="dets.json")


def test_bad_ground_truth_names_the_field():
    with pytest.raises(EvalInputError, match=r"gt.json: field 'categories' is missing"):
        check_coco_gt({"images": [], "annotations": []}, "gt.json")
    gt = copy.deepcopy(TWO_GT)
    gt["annotations"][1]["image_id"] = 4
    with pytest.raises(EvalInputError, match=r"gt.json: annotations\[1\]: field 'image_id' has value 4"):
        check_coco_gt(gt, "gt.json")


def test_docstring_examples():
    assert doctest.testmod(coco_mod).failed == 0


def test_fast_and_entrywise_checks_agree():
    from detdistill.eval.coco import check_detections

    gt, dets = _fixture()
    fast = check_detections(dets, gt)  # plain JSON types: the vectorised path
    # tuples and numpy scalars miss the vectorised path and go through the per-entry loop
    slow_input = [dict(d, bbox=tuple(d["bbox"]), score=np.float32(d["score"]), image_id=np.int64(d["image_id"]))
                  for d in dets]
    slow = check_detections(slow_input, gt)
    assert [d["image_id"] for d in slow] == [d["image_id"] for d in fast]
    np.testing.assert_allclose([d["bbox"] for d in slow], [d["bbox"] for d in fast])
    np.testing.assert_allclose([d["score"] for d in slow], [d["score"] for d in fast], rtol=1e-6)
    assert all(type(d["image_id"]) is int and type(d["bbox"][0]) is float for d in fast + slow)
    with pytest.raises(EvalInputError, match=r"entry 3: field 'bbox' has value"):
        check_detections(dets[:3] + [dict(dets[3], bbox=[True, 0, 1, 1])], gt)
