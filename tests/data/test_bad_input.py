"""The bad-input corpus: for each defect, the outcome (error or counted skip/clip/drop) and a message that
names the file, the field and the value. No case may surface a PIL, XML, JSON or torch traceback: every
error here is a DatasetError (a ValueError the CLI prints as one line)."""


import numpy as np
import pytest
from PIL import Image

from detdistill.cli import main
from detdistill.data import DatasetError
from detdistill.data.coco import read_coco
from detdistill.data.validate import check_images, read_image_size
from detdistill.data.voc import read_voc
from detdistill.data.yolo import read_yolo


def _voc_one(tmp_path, make, objects, **item):
    return make.voc(tmp_path, {"img": {"objects": objects, **item}})


def _error(fn, *parts):
    with pytest.raises(DatasetError) as err:
        fn()
    msg = str(err.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# --- box defects governed by --on-bad-box ------------------------------------------------------------
@pytest.mark.parametrize("coords, reason, value", [
    ((20, 2, 10, 12), "inverted", "(20, 2, 10, 12)"),
    ((5, 5, 5, 9), "zero_area", "(5, 5, 5, 9)"),
    (("nan", 1, 4, 4), "non_finite", "(nan, 1, 4, 4)"),
    ((1, 1, "inf", 4), "non_finite", "(1, 1, inf, 4)"),
])
def test_voc_bad_box_errors_or_counted_skip(tmp_path, make, coords, reason, value):
    root = _voc_one(tmp_path, make, [("a", *coords), ("a", 1, 1, 8, 8)])
    _error(lambda: read_voc(root), "Annotations/img.xml", "object[0].bndbox", value)
    ds = read_voc(root, on_bad_box="skip")
    assert dict(ds.skips.counts) == {reason: 1}
    assert ds[0][1]["boxes"].tolist() == [[1, 1, 8, 8]]
    assert value in ds.skips.examples[reason][0]


def test_coco_infinite_bbox(tmp_path, make):
    path = make.coco(tmp_path, [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, float("inf"), 3]}],
                     [{"id": 1, "name": "c"}])
    _error(lambda: read_coco(path), "train.json", "annotations[0].bbox", "inf")
    assert dict(read_coco(path, on_bad_box="skip").skips.counts) == {"non_finite": 1}


def test_unknown_class_name(tmp_path, make):
    root = _voc_one(tmp_path, make, [("lion", 1, 1, 5, 5), ("cat", 2, 2, 6, 6)])
    _error(lambda: read_voc(root, class_names=["cat"]), "img.xml", "object[0].name", "'lion'")
    ds = read_voc(root, class_names=["cat"], on_bad_box="skip")
    assert dict(ds.skips.counts) == {"unknown_class": 1} and ds[0][1]["labels"].tolist() == [1]


def test_yolo_label_index_out_of_range(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["3 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.5 0.5"]}}, names=["x", "y"])
    _error(lambda: read_yolo(tmp_path, "train"), "labels/train/a.txt", "line 1 class", "value 3")
    ds = read_yolo(tmp_path, "train", on_bad_box="skip")
    assert dict(ds.skips.counts) == {"label_out_of_range": 1} and ds[0][1]["labels"].tolist() == [1]


def test_yolo_nan_value(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["0 nan 0.5 0.2 0.2"]}}, names=["x"])
    _error(lambda: read_yolo(tmp_path, "train"), "a.txt", "line 1", "'0 nan 0.5 0.2 0.2'")


# --- clipped and dropped in both modes -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["error", "skip"])
def test_partly_outside_clipped_wholly_outside_dropped(tmp_path, make, mode):
    root = _voc_one(tmp_path, make, [("a", -4, 2, 40, 12), ("a", 50, 30, 60, 40), ("a", 1, 1, 3, 3)])
    ds = read_voc(root, on_bad_box=mode)
    assert ds[0][1]["boxes"].tolist() == [[0, 2, 32, 12], [1, 1, 3, 3]]  # image is 32x24
    assert dict(ds.skips.counts) == {"clipped": 1, "outside": 1}
    assert "object[0].bndbox" in ds.skips.examples["clipped"][0] and "(-4, 2, 40, 12)" in ds.skips.examples["clipped"][0]
    assert "object[1].bndbox" in ds.skips.examples["outside"][0]


# --- structural defects: always an error ---------------------------------------------------------------
def test_missing_image_file(tmp_path, make):
    ds = read_voc(_voc_one(tmp_path, make, [("a", 1, 1, 5, 5)], write_image=False))
    _error(lambda: ds[0], "JPEGImages/img.png", "not found")
    assert check_images(ds) == [f"{tmp_path / 'JPEGImages' / 'img.png'}: image file not found"]


def test_truncated_image(tmp_path, make):
    root = _voc_one(tmp_path, make, [("a", 1, 1, 5, 5)], ext=".jpg")
    path = root / "JPEGImages" / "img.jpg"
    path.write_bytes(path.read_bytes()[:100])
    _error(lambda: read_voc(root)[0], str(path), "cannot decode image")


def test_not_an_image(tmp_path, make):
    root = _voc_one(tmp_path, make, [("a", 1, 1, 5, 5)])
    (root / "JPEGImages" / "img.png").write_text("hello")
    _error(lambda: read_voc(root)[0], "img.png", "cannot decode image")


def test_annotated_size_disagrees_with_image(tmp_path, make):
    root = _voc_one(tmp_path, make, [("a", 1, 1, 5, 5)])
    (root / "Annotations" / "img.xml").write_text(make.voc_xml("img.png", 64, 24, [("a", 1, 1, 5, 5)]))
    _error(lambda: read_voc(root)[0], "img.png", "width=64", "width=32")


def test_malformed_xml(tmp_path, make):
    root = _voc_one(tmp_path, make, [])
    (root / "Annotations" / "img.xml").write_text("<annotation><size>")
    _error(lambda: read_voc(root), "Annotations/img.xml", "malformed XML")


def test_non_numeric_coordinate(tmp_path, make):
    root = _voc_one(tmp_path, make, [("a", 1, "abc", 5, 5)])
    _error(lambda: read_voc(root), "img.xml", "object[0].bndbox.ymin", "'abc'")


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    _error(lambda: read_coco(path), "broken.json", "malformed JSON")


def test_empty_dataset(tmp_path, make):
    make.voc(tmp_path, {"a": {}}, splits={"train": []})
    _error(lambda: read_voc(tmp_path, "train"), str(tmp_path), "empty dataset", "'train'")
    path = make.coco(tmp_path / "c", [], [], [{"id": 1, "name": "x"}])
    _error(lambda: read_coco(path), "train.json", "empty dataset")


# --- not defects -------------------------------------------------------------------------------------
def test_image_without_boxes_is_a_negative(tmp_path, make):
    ds = read_voc(make.voc(tmp_path, {"neg": {"objects": []}, "pos": {"objects": [("a", 1, 1, 4, 4)]}}))
    assert [t["boxes"].shape[0] for _, t in (ds[0], ds[1])] == [0, 1] and ds.skips.total == 0


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the stored 40x20 image displays as 20x40
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif)
    assert read_image_size(path) == (20, 40)


def test_voc_size_missing_read_from_image_and_counted(tmp_path, make):
    ds = read_voc(_voc_one(tmp_path, make, [("a", 1, 1, 5, 5)], size_in_xml=False))
    assert (ds.records[0].width, ds.records[0].height) == (32, 24)
    assert dict(ds.skips.counts) == {"size_from_image": 1}


# --- the CLI prints one line, never a traceback -------------------------------------------------------
def test_cli_prints_one_line_for_bad_input(tmp_path, make, capsys):
    root = _voc_one(tmp_path, make, [("a", 5, 5, 5, 9)])
    assert main(["data", "convert", str(root), "--to", "coco", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("detdistill data: error: ") and "object[0].bndbox" in err[-1] and "Traceback" not in "".join(err)


def test_cli_check_images_lists_corrupt_files(tmp_path, make, capsys):
    root = make.voc(tmp_path, {"ok": {"objects": [("a", 1, 1, 5, 5)]}, "bad": {"objects": []}})
    (root / "JPEGImages" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["data", "stats", str(root), "--check-images", "--out", str(tmp_path / "s.png")]) == 1  # problems found: nonzero, as linters do
    out = capsys.readouterr().out
    assert "image check: 1 problems" in out and "bad.png: cannot decode image" in out
