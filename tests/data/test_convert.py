import json

import numpy as np
import pytest
import torch

from detdistill.cli import main
from detdistill.data import SyntheticShapes, open_dataset
from detdistill.data.convert import convert_dataset, to_coco_dict
from detdistill.data.voc import read_voc
from detdistill.data.yolo import read_yolo


def _by_name(ds):
    """(boxes, class names, difficult) per image stem: label order may differ between formats."""
    out = {}
    for rec in ds.records:
        stem = rec.file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        out[stem] = (rec.boxes, [ds.class_names[i - 1] for i in rec.labels], rec.difficult.tolist())
    return out


def test_voc_to_coco_to_voc_is_exact(tmp_path, make):
    src = read_voc(make.voc(tmp_path / "src", {
        "a": {"objects": [("dog", 1, 2, 10, 12), ("cat", 3, 4, 20, 22, 1)], "ext": ".jpg"},
        "b": {"objects": []}, "c": {"objects": [("cat", 0, 0, 32, 24)]}}, splits={"train": ["a", "b", "c"]}),
        "train")
    convert_dataset(src, "coco", tmp_path / "coco")
    coco = open_dataset(tmp_path / "coco", "train")
    convert_dataset(coco, "voc", tmp_path / "voc")
    back = read_voc(tmp_path / "voc", "train")
    a, b = _by_name(src), _by_name(back)
    assert a.keys() == b.keys() == {"a", "b", "c"}
    for k in a:
        assert np.array_equal(a[k][0], b[k][0]) and a[k][1:] == b[k][1:]
    assert back.class_names == src.class_names == coco.class_names
    assert torch.equal(back[0][0], src[0][0])  # images copied byte for byte


def test_yolo_to_coco_to_yolo_within_a_pixel(tmp_path, make):
    make.yolo(tmp_path / "src", {
        "a": {"lines": ["1 0.5 0.5 0.5 0.5", "0 0.123457 0.654321 0.2 0.1"], "width": 37, "height": 23},
        "b": {"lines": ["0 0.9 0.9 0.2 0.2"]}}, names=["cat", "dog"])
    src = read_yolo(tmp_path / "src", "train")
    convert_dataset(src, "coco", tmp_path / "coco")
    coco = open_dataset(tmp_path / "coco", "train")
    assert coco.category_ids == [0, 1]
    convert_dataset(coco, "yolo", tmp_path / "yolo")
    back = read_yolo(tmp_path / "yolo", "train")
    a, b = _by_name(src), _by_name(back)
    assert a.keys() == b.keys()
    for k in a:
        assert np.abs(a[k][0] - b[k][0]).max() < 1.0 and a[k][1] == b[k][1]
    assert back.skips.total == 0


def test_synthetic_exports_to_coco_and_voc(tmp_path):
    syn = SyntheticShapes("val", num_images=3, seed=1)
    convert_dataset(syn, "coco", tmp_path / "coco")
    data = json.loads((tmp_path / "coco" / "annotations" / "val.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(syn.class_names)
    assert len(data["annotations"]) == sum(r.num_boxes for r in syn.records)
    coco = open_dataset(tmp_path / "coco", "val")
    convert_dataset(syn, "voc", tmp_path / "voc")
    voc = open_dataset(tmp_path / "voc", "val", class_names=list(syn.class_names))
    def u8(x):  # the two decoders divide by 255 differently; compare the bytes
        return x.mul(255).round().byte()

    for i in range(3):
        assert torch.equal(u8(coco[i][0]), u8(syn[i][0])) and torch.equal(u8(voc[i][0]), u8(syn[i][0]))  # lossless
        assert torch.allclose(coco[i][1]["boxes"], syn[i][1]["boxes"])
        assert torch.allclose(voc[i][1]["boxes"], syn[i][1]["boxes"], atol=1e-3)  # 3 decimals in XML
        assert torch.equal(voc[i][1]["labels"], syn[i][1]["labels"])


def test_to_coco_dict_keeps_its_contract():
    syn = SyntheticShapes("test", num_images=1, seed=0)
    d = to_coco_dict(syn)
    rec = syn.records[0]
    x1, y1, x2, y2 = rec.boxes[0].tolist()
    assert d["images"] == [{"id": 0, "file_name": "test_000000.png", "width": 160, "height": 160}]
    assert d["annotations"][0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert d["annotations"][0]["category_id"] == int(rec.labels[0])


def test_multi_split_yolo_folder_and_cli(tmp_path, make, capsys):
    src = make.voc(tmp_path / "src", {"a": {"objects": [("x", 1, 1, 9, 9)]}, "b": {"objects": [("y", 2, 2, 8, 8)]}},
                   splits={"train": ["a"], "test": ["b"]})
    for split in ("train", "test"):
        assert main(["data", "convert", str(src), "--split", split, "--to", "yolo", "--out", str(tmp_path / "y")]) == 0
    assert "converted 1 images, 1 boxes to yolo" in capsys.readouterr().out
    assert [len(read_yolo(tmp_path / "y", s)) for s in ("train", "test")] == [1, 1]
    assert read_yolo(tmp_path / "y").class_names == ["x", "y"]


def test_bccd_test_split_to_coco(real_data, tmp_path):
    src = read_voc(real_data / "bccd", "test")
    convert_dataset(src, "coco", tmp_path)
    data = json.loads((tmp_path / "annotations" / "test.json").read_text())
    assert (len(data["images"]), len(data["annotations"])) == (72, 945)
    coco = open_dataset(tmp_path, "test")
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(src.records, coco.records))
