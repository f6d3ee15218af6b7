"""`detdistill evaluate` and `detdistill predict` end to end: files, checkpoint, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.cli import main
from detdistill.data import SyntheticShapes
from detdistill.data.convert import write_coco
from detdistill.eval.coco import COCO_KEYS

# Hand-computed: TP, FP, TP over 2 boxes -> COCO (51 + 50 * 2/3) / 101; VOC area 5/6.
AP_TP_FP_TP = (51 + 50 * 2 / 3) / 101

GT = {
    "info": {"description": "real-COCO-like: non-contiguous ids, crowd, file areas"},
    "images": [{"id": 42, "file_name": "a.jpg", "width": 100, "height": 100},
               {"id": 7, "file_name": "b.jpg", "width": 100, "height": 100}],
    "annotations": [
        {"id": 1, "image_id": 42, "category_id": 18, "bbox": [0, 0, 10, 10], "area": 80.5, "iscrowd": 0},
        {"id": 2, "image_id": 42, "category_id": 18, "bbox": [20, 20, 10, 10], "area": 90.0, "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 90, "bbox": [50, 50, 40, 40], "area": 1500.0, "iscrowd": 1,
         "segmentation": {"counts": [0, 10], "size": [100, 100]}},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}],
}
DETS = [
    {"image_id": 42, "category_id": 18, "bbox": [0, 0, 10, 10], "score": 0.9},
    {"image_id": 42, "category_id": 18, "bbox": [50, 50, 10, 10], "score": 0.8},
    {"image_id": 42, "category_id": 18, "bbox": [20, 20, 10, 10], "score": 0.7},
    {"image_id": 7, "category_id": 90, "bbox": [55, 55, 20, 20], "score": 0.95},  # on the crowd: ignored
]


@pytest.fixture
def files(tmp_path):
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(GT))
    dets.write_text(json.dumps(DETS))
    return gt, dets


def test_evaluate_from_files_coco(files, tmp_path, capsys):
    gt, dets = files
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt), "--detections", str(dets), "--json-out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(COCO_KEYS)
    assert metrics["AP"] == pytest.approx(AP_TP_FP_TP, abs=1e-12)
    assert metrics["AP50"] == pytest.approx(AP_TP_FP_TP, abs=1e-12)
    assert metrics["APm"] == -1.0 and metrics["AR1"] == pytest.approx(0.5) and metrics["AR100"] == 1.0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["AP", f"{AP_TP_FP_TP:.4f}"]
    assert printed[4].split()[:2] == ["APm", "-1"]
    assert any(line.split()[:2] == ["dog", "2"] for line in printed)


def test_evaluate_from_files_voc_and_plots(files, tmp_path, capsys):
    gt, dets = files
    out, plots = tmp_path / "voc.json", tmp_path / "plots"
    argv = ["evaluate", "--gt", str(gt), "--detections", str(dets), "--metric", "voc", "--json-out", str(out),
            "--plots", str(plots)]
    assert main(argv) == 0
    assert json.loads(out.read_text()) == {"mAP50": pytest.approx(5 / 6)}
    assert main(argv[:-4] + ["--use-07-metric", "--json-out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"mAP50": pytest.approx((6 + 5 * 2 / 3) / 11)}
    confusion = json.loads((plots / "confusion.json").read_text())
    # dog: 2 found; the far dog box is a false detection; the crowd absorbs the toothbrush detection
    assert confusion["names"] == ["background", "dog", "toothbrush"]
    assert confusion["matrix"] == [[0, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert (plots / "pr_dog.png").is_file() and not (plots / "pr_toothbrush.png").exists()


def _run_bad(tmp_path, capsys, detections, raw: str | None = None):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    dets = tmp_path / "bad.json"
    dets.write_text(raw if raw is not None else json.dumps(detections))
    assert main(["evaluate", "--gt", str(gt), "--detections", str(dets)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(dets) in err
    return err


def test_bad_detections_files(tmp_path, capsys):
    unknown_image = DETS[:1] + [dict(DETS[0], image_id=3)]
    assert "entry 1: field 'image_id' has value 3" in _run_bad(tmp_path, capsys, unknown_image)
    unknown_cat = [dict(DETS[0], category_id=1)]
    assert "entry 0: field 'category_id' has value 1; the ground truth's categories are [18, 90]" in _run_bad(
        tmp_path, capsys, unknown_cat)
    nan_box = [DETS[0], dict(DETS[0], bbox=[0, 0, math.inf, 4])]  # json.dumps writes Infinity
    assert "entry 1: field 'bbox' has non-finite value" in _run_bad(tmp_path, capsys, nan_box)
    assert "not valid JSON" in _run_bad(tmp_path, capsys, None, raw='[{"image_id": 42,')
    assert "expected a list of detections" in _run_bad(tmp_path, capsys, None, raw='"nope"')


def test_bad_ground_truth_and_usage(tmp_path, capsys, files):
    gt, dets = files
    missing = tmp_path / "nope.json"
    assert main(["evaluate", "--gt", str(missing), "--detections", str(dets)]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    bad_gt = tmp_path / "bad_gt.json"
    bad_gt.write_text(json.dumps({"images": [], "annotations": []}))
    assert main(["evaluate", "--gt", str(bad_gt), "--detections", str(dets)]) == 2
    assert f"{bad_gt}: field 'categories' is missing" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(gt)]) == 2
    assert "--gt and --detections go together" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "give either --checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from detdistill.models import build_detector, save_detector

    torch.manual_seed(0)
    model = build_detector("cpu_tiny", num_classes=7)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    ds = SyntheticShapes("val", num_images=3, seed=0)
    save_detector(path, model, ds.class_names, ds.category_ids)
    return path


def test_evaluate_checkpoint_on_synthetic_matches_files_path(checkpoint, tmp_path, capsys):
    dets, gt, out = tmp_path / "d.json", tmp_path / "g.json", tmp_path / "m.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", "synthetic", "--split", "val",
            "--num-images", "3", "--min-score", "0.0", "--save-detections", str(dets), "--save-gt", str(gt),
            "--json-out", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    from_checkpoint = json.loads(out.read_text())
    assert len(json.loads(dets.read_text())) > 0
    # the saved ground truth is exactly the dataset's COCO dict, and rescoring the files gives the same numbers
    write_coco(SyntheticShapes("val", num_images=3, seed=0), tmp_path / "ref.json")
    assert json.loads(gt.read_text()) == json.loads((tmp_path / "ref.json").read_text())
    assert main(["evaluate", "--gt", str(gt), "--detections", str(dets), "--json-out", str(out)]) == 0
    assert json.loads(out.read_text()) == from_checkpoint


def test_evaluate_checkpoint_class_mismatch(checkpoint, tmp_path, capsys):
    from detdistill.data.base import DetectionDataset
    from detdistill.eval.commands import evaluate_checkpoint

    other = DetectionDataset([], ["a", "b", "c", "d", "e", "f"], name="other")
    with pytest.raises(ValueError, match=r"tiny.pt: checkpoint classes \['square'.*differ from the dataset's"):
        evaluate_checkpoint(checkpoint, other)


def test_predict_writes_pngs_and_json_matching_the_model(checkpoint, tmp_path, capsys):
    from detdistill.models import load_detector

    ds = SyntheticShapes("val", num_images=3, seed=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(ds.render(i)).save(folder / f"img{i}.png")
    Image.fromarray(ds.render(2)).save(tmp_path / "single.png")
    out = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(checkpoint), "--images", str(folder), str(tmp_path / "single.png"),
            "--out", str(out), "--score-threshold", "0.0", "--nms", "0.3", "--size", "128", "--batch-size", "2"]
    assert main(argv) == 0
    doc = json.loads((out / "detections.json").read_text())
    assert [img["file_name"].split("/")[-1] for img in doc["images"]] == ["img0.png", "img1.png", "single.png"]
    assert [img["id"] for img in doc["images"]] == [1, 2, 3]
    for name in ("img0.png", "img1.png", "single.png"):
        with Image.open(out / name) as img:
            assert img.size == (160, 160) and img.mode == "RGB"
    # the same detections from the model configured by hand
    model = load_detector(checkpoint)
    model.roi_heads.score_thresh, model.roi_heads.nms_thresh = 0.0, 0.3
    model.transform.min_size, model.transform.max_size = (128,), 128
    with torch.no_grad():
        outs = model([torch.from_numpy(ds.render(i)).permute(2, 0, 1).float() / 255 for i in range(3)])
    expected = [(i + 1, b.tolist(), s) for i, o in enumerate(outs) for b, s in zip(o["boxes"], o["scores"].tolist())]
    got = [(a["image_id"], a["bbox"], a["score"]) for a in doc["annotations"]]
    assert len(got) == len(expected) > 0
    for (gi, gb, gs), (ei, eb, es) in zip(got, expected):
        assert gi == ei and gs == pytest.approx(es, abs=1e-5)
        np.testing.assert_allclose(gb, [eb[0], eb[1], eb[2] - eb[0], eb[3] - eb[1]], atol=1e-3)
    # its JSON is a COCO object with scores: `evaluate --detections` reads it against its own images
    ann_ids = [a["id"] for a in doc["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1)) and doc["categories"][0] == {"id": 1, "name": "square"}


def test_predict_bad_images(checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "folder has no images" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "x.png"),
                 "--out", str(tmp_path / "o"), "--nms", "1.5"]) == 2
    assert "no such image file or folder" in capsys.readouterr().err
