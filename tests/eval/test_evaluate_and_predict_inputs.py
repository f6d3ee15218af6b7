"""What evaluate / predict do with their inputs (gathered in issue 21): ground-truth ids, crowd flags, output folders, checkpoint fields."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.checks import CheckpointFieldError
from detdistill.cli import main
from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.eval.coco import EvalInputError, check_coco_gt
from detdistill.models import build_detector, checkpoint_payload, read_checkpoint, save_detector


def _gt(**ann):
    base = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}
    return {"images": [{"id": 1, "width": 8, "height": 8, "file_name": "a.png"}],
            "categories": [{"id": 1, "name": "a"}], "annotations": [{**base, **ann}]}


@pytest.mark.parametrize("ann, message", [
    ({"id": None}, r"annotations\[0\] field 'id' has value None"),
    ({"id": "x"}, r"annotations\[0\] field 'id' has value 'x'"),
    ({"iscrowd": None}, r"annotations\[0\]: field 'iscrowd' has value None; expected 0 or 1"),
    ({"iscrowd": 2}, r"field 'iscrowd' has value 2"),
])
def test_ground_truth_annotation_fields_are_named(ann, message):
    with pytest.raises(EvalInputError, match=message):
        check_coco_gt(_gt(**ann), "gt.json")


def test_annotation_without_id_and_repeated_ids_are_refused():
    gt = _gt()
    del gt["annotations"][0]["id"]
    with pytest.raises(EvalInputError, match=r"gt.json: annotations\[0\] has no 'id'"):
        check_coco_gt(gt, "gt.json")
    gt = _gt()
    gt["annotations"].append(dict(gt["annotations"][0]))
    with pytest.raises(EvalInputError, match=r"annotations\[1\] repeats id 1 of annotations\[0\]"):
        check_coco_gt(gt, "gt.json")
    gt = _gt()
    gt["images"].append(dict(gt["images"][0]))
    with pytest.raises(EvalInputError, match=r"images\[1\] repeats id 1"):
        check_coco_gt(gt, "gt.json")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_detector(tmp_path / "m.pt", build_detector("cpu_tiny", 7, min_size=64, max_size=64),
                         list(SYNTHETIC_CLASS_NAMES))


def test_predict_refuses_a_non_empty_out_folder_unless_overwrite(tmp_path, checkpoint, capsys):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["predict", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "p")]
    assert main(args) == 0
    assert main(args) == 2
    assert "folder is not empty" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_predict_on_a_dataset_without_files_keeps_its_ids(tmp_path, checkpoint):
    from detdistill.data import SyntheticShapes
    from detdistill.eval.commands import predict_checkpoint

    data = SyntheticShapes("val", num_images=2, seed=3)
    doc = predict_checkpoint(checkpoint, data, tmp_path / "p", progress=False)
    assert [img["id"] for img in doc["images"]] == [r.image_id for r in data.records]
    assert json.loads((tmp_path / "p" / "detections.json").read_text())["images"] == doc["images"]


@pytest.mark.parametrize("field, value, message", [
    (("model_spec", "num_classes"), "7", "'model_spec.num_classes' has value '7'"),
    (("model_spec", "name"), 3, "'model_spec.name' has value 3"),
    (("model_spec", "kwargs"), {"max_size": 0}, "'model_spec.kwargs.max_size' has value 0"),
    (("metadata", "input"), {"min_size": [-5]}, "'metadata.input.min_size' has value [-5]"),
    (("category_ids",), [1, 2], "'category_ids' has value [1, 2]"),
    (("class_names",), "abc", "'class_names' has value 'abc'"),
])
def test_tampered_checkpoint_fields_are_named(tmp_path, field, value, message):
    payload = checkpoint_payload(build_detector("cpu_tiny", 7), list(SYNTHETIC_CLASS_NAMES))
    node = payload
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointFieldError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_checkpoint(tmp_path / "x.pt")


def test_models_says_which_model_it_is_measuring(capsys):
    assert main(["models", "--names", "cpu_tiny", "--runs", "1", "--image-size", "64"]) == 0
    captured = capsys.readouterr()
    assert "measuring cpu_tiny (1/1" in captured.err and "| cpu_tiny |" in captured.out
