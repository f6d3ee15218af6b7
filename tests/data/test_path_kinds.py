"""A path of the wrong kind: where a reader expects a file, something that exists but is not a regular file (a
folder, a FIFO, a broken link) is an error naming the path and its kind, never read as absent or as empty."""

import os

import pytest

from detdistill.data import DatasetError
from detdistill.data.base import load_rgb_image, optional_file, path_kind, require_file
from detdistill.data.coco import read_coco
from detdistill.data.kitti import read_kitti
from detdistill.data.voc import read_voc
from detdistill.data.yolo import read_yolo


def _error(fn, *parts):
    with pytest.raises(DatasetError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


def test_path_kind_tells_files_folders_links_and_fifos_apart(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "fifo")
    assert [path_kind(tmp_path / n) for n in ("f", "d", "link", "fifo", "none", "f/under")] == \
        ["file", "folder", "broken link", "FIFO", "missing", "missing"]
    assert optional_file(tmp_path / "f", "x") and not optional_file(tmp_path / "none", "x")
    _error(lambda: optional_file(tmp_path / "d", "label file"), f"{tmp_path / 'd'}: label file is a folder")
    _error(lambda: require_file(tmp_path / "fifo", "image file"), "image file is a FIFO, not a regular file")
    _error(lambda: require_file(tmp_path / "none", "image file"), "image file not found")


def test_a_yolo_label_path_that_is_a_folder_is_an_error_not_a_background_image(tmp_path, make):
    root = make.yolo(tmp_path, {"a": {"lines": ["0 0.5 0.5 0.2 0.2"]}, "b": {"label": False}}, ["cat"])
    (root / "labels" / "train" / "b.txt").mkdir()
    _error(lambda: read_yolo(root, "train"), f"{root / 'labels' / 'train' / 'b.txt'}: label file is a folder")


def test_a_yolo_data_yaml_or_classes_file_that_is_a_folder_is_named(tmp_path, make):
    root = make.yolo(tmp_path, {"a": {"lines": []}}, ["cat"], names_file=True)
    (root / "data.yaml").mkdir()
    _error(lambda: read_yolo(root, "train"), "data.yaml: dataset config is a folder")
    (root / "data.yaml").rmdir()
    (root / "classes.txt").unlink()
    (root / "classes.txt").mkdir()
    _error(lambda: read_yolo(root, "train"), "classes.txt: class names file is a folder")


def test_voc_annotation_split_and_image_paths_of_the_wrong_kind(tmp_path, make):
    root = make.voc(tmp_path, {"a": {"objects": [("x", 1, 1, 8, 8)]}}, splits={"train": ["a"]})
    (root / "Annotations" / "b.xml").mkdir()
    _error(lambda: read_voc(root), f"{root / 'Annotations' / 'b.xml'}: annotation file is a folder")
    (root / "Annotations" / "b.xml").rmdir()
    (root / "ImageSets" / "Main" / "val.txt").mkdir()
    _error(lambda: read_voc(root, "val"), "val.txt: split file is a folder")
    (root / "JPEGImages" / "a.png").unlink()
    (root / "JPEGImages" / "a.png").symlink_to(root / "gone.png")
    ds = read_voc(root, "train")  # the size comes from the XML; decoding names the link
    _error(lambda: ds[0], "a.png: image file is a broken link")


def test_coco_annotation_file_and_image_of_the_wrong_kind(tmp_path, make):
    path = make.coco(tmp_path, [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}], [],
                     [{"id": 1, "name": "c"}])
    ds = read_coco(path)
    (tmp_path / "images" / "a.png").unlink()
    (tmp_path / "images" / "a.png").mkdir()
    _error(lambda: ds[0], f"{tmp_path / 'images' / 'a.png'}: image file is a folder")
    _error(lambda: load_rgb_image(tmp_path / "images"), "image file is a folder")
    other = tmp_path / "annotations" / "val.json"
    other.mkdir()
    _error(lambda: read_coco(other), f"{other}: annotation file is a folder")


def test_kitti_label_and_image_of_the_wrong_kind(tmp_path, make):
    root = make.kitti(tmp_path, {"000": {"lines": [make.kitti_line("Car", 1, 1, 9, 9)]}})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("000\n001\n")
    (root / "label_2" / "001.txt").mkdir()
    _error(lambda: read_kitti(root, "train"), "001.txt: label file is a folder")
    (root / "label_2" / "001.txt").rmdir()
    (root / "image_2" / "000.png").unlink()
    (root / "image_2" / "000.png").mkdir()
    _error(lambda: read_kitti(root), "000.png: image file is a folder")


def test_a_yolo_split_entry_of_the_wrong_kind_is_named(tmp_path, make):
    root = make.yolo(tmp_path, {"a": {"lines": []}}, ["cat"])
    os.mkfifo(root / "val_list")
    (root / "data.yaml").write_text("names: [cat]\ntrain: images/train\nval: val_list\n")
    _error(lambda: read_yolo(root, "val"), "field 'val' has value", "val_list': is a FIFO, expected an image folder")
