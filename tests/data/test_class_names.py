"""Class-name sets that disagree with themselves: every reader reports repeated names, names differing only in
case and a YOLO `nc` that does not count the names under "problems found", each naming the file and field;
training refuses repeats and case-only differences."""

import pytest
import yaml

from detdistill.cli import main
from detdistill.config import load_config
from detdistill.data import DatasetError
from detdistill.data.coco import read_coco
from detdistill.data.kitti import read_kitti
from detdistill.data.validate import check_training_classes
from detdistill.data.voc import read_voc
from detdistill.data.yolo import read_yolo
from detdistill.engine.run import open_datasets


def _coco_two_cats(tmp_path, make):
    return make.coco(tmp_path, [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                      {"id": 2, "image_id": 1, "category_id": 7, "bbox": [2, 2, 5, 5]}],
                     [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "cat"}])


def test_two_coco_categories_with_one_name_are_a_problem_naming_both_fields(tmp_path, make):
    ds = read_coco(_coco_two_cats(tmp_path, make))
    assert dict(ds.skips.counts) == {"duplicate_class_name": 1}
    example = ds.skips.examples["duplicate_class_name"][0]
    assert "train.json: field 'categories[2].name' has value 'cat'" in example and "categories[0].name" in example


def test_voc_names_differing_only_in_case_are_a_problem_naming_the_file(tmp_path, make):
    root = make.voc(tmp_path, {"a": {"objects": [("RBC", 1, 1, 8, 8)]}, "b": {"objects": [("rbc", 2, 2, 9, 9)]}})
    ds = read_voc(root)
    assert ds.class_names == ["RBC", "rbc"] and dict(ds.skips.counts) == {"class_name_case": 1}
    example = ds.skips.examples["class_name_case"][0]
    assert "b.xml: field 'object[0].name' has value 'rbc': differs only in case from 'RBC'" in example
    assert "a.xml" in example


@pytest.mark.parametrize("nc", [3, "2"])
def test_yolo_nc_that_does_not_count_the_names_is_a_problem(tmp_path, make, nc):
    root = make.yolo(tmp_path, {"a": {"lines": ["0 0.5 0.5 0.2 0.2"]}}, ["cat", "dog"])
    cfg = yaml.safe_load((root / "data.yaml").read_text())
    (root / "data.yaml").write_text(yaml.safe_dump({**cfg, "nc": nc}))
    ds = read_yolo(root, "train")
    assert dict(ds.skips.counts) == {"nc_mismatch": 1}
    assert f"data.yaml: field 'nc' has value {nc!r} but field 'names' lists 2 class names" in \
        ds.skips.examples["nc_mismatch"][0]
    (root / "data.yaml").write_text(yaml.safe_dump({**cfg, "nc": 2}))
    assert not read_yolo(root, "train").skips


def test_yolo_and_kitti_repeats_name_their_source(tmp_path, make):
    root = make.yolo(tmp_path / "y", {"a": {"lines": ["0 0.5 0.5 0.2 0.2"]}}, ["cat", "dog", "cat"], names_file=True)
    ds = read_yolo(root, "train")
    assert "classes.txt: name 3 has value 'cat': the same class name as" in ds.skips.examples["duplicate_class_name"][0]
    kitti = make.kitti(tmp_path / "k", {"000": {"lines": [make.kitti_line("Car", 1, 1, 9, 9)]},
                                        "001": {"lines": [make.kitti_line("car", 2, 2, 8, 8)]}})
    ds = read_kitti(kitti)
    assert "001.txt: field 'line 1 type' has value 'car': differs only in case from 'Car'" in \
        ds.skips.examples["class_name_case"][0]


def test_data_stats_lists_them_under_problems_found(tmp_path, make, capsys):
    path = _coco_two_cats(tmp_path, make)
    main(["data", "stats", str(path), "--out", str(tmp_path / "s.png")])
    out = capsys.readouterr().out
    assert "problems found: none" not in out
    assert "  duplicate_class_name: 1" in out and "field 'categories[2].name' has value 'cat'" in out


def test_training_refuses_repeated_and_case_only_class_names(tmp_path, make):
    with pytest.raises(DatasetError, match=r"class names repeat.*categories\[2\]\.name"):
        check_training_classes(read_coco(_coco_two_cats(tmp_path / "c", make)))
    root = make.voc(tmp_path / "v", {"a": {"objects": [("RBC", 1, 1, 8, 8)]}, "b": {"objects": [("rbc", 2, 2, 9, 9)]}},
                    splits={"train": ["a", "b"]})
    cfg = load_config(None, [f"data.source={root}", "data.val_split=null", "data.test_split=null"])
    with pytest.raises(DatasetError, match=r"class names differ only in case.*b\.xml: field 'object\[0\]\.name'"):
        open_datasets(cfg)
    check_training_classes(read_voc(root, class_names=["RBC"], on_bad_box="skip"))  # one name: trains
