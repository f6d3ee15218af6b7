import json

import pytest

from detdistill.data import DatasetError
from detdistill.data.coco import find_coco_json, read_coco

CATS = [{"id": 12, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def _fixture(tmp_path, make):
    images = [{"id": 40, "file_name": "a.png", "width": 30, "height": 20},
              {"id": 9, "file_name": "neg.png", "width": 16, "height": 16}]
    anns = [
        {"id": 1, "image_id": 40, "category_id": 7, "bbox": [1, 2, 10, 5], "area": 33.5, "iscrowd": 0},
        {"id": 2, "image_id": 40, "category_id": 12, "bbox": [0, 0, 30, 20], "area": 600, "iscrowd": 1},
        {"id": 3, "image_id": 40, "category_id": 3, "bbox": [5, 5, 2, 2], "ignore": 1},
    ]
    return make.coco(tmp_path, images, anns, CATS)


def test_noncontiguous_ids_map_to_contiguous_labels_and_back(tmp_path, make):
    ds = read_coco(_fixture(tmp_path, make))
    assert ds.category_ids == [3, 7, 12] and ds.class_names == ["cat", "dog", "zebra"]
    assert ds.num_classes == 4 and ds.category_id_to_label() == {3: 1, 7: 2, 12: 3}
    image, t = ds[0]
    assert image.shape == (3, 20, 30) and t["image_id"].item() == 40
    assert t["boxes"].tolist() == [[1, 2, 11, 7], [0, 0, 30, 20], [5, 5, 7, 7]]
    assert t["labels"].tolist() == [2, 3, 1]
    assert [ds.label_to_category_id(lb) for lb in t["labels"].tolist()] == [7, 12, 3]
    assert t["iscrowd"].tolist() == [0, 1, 0]
    assert t["difficult"].tolist() == [False, False, True]
    assert t["area"].tolist() == [33.5, 600.0, 4.0]  # the file's area where given, else the box area


def test_image_without_annotations_is_kept_as_negative(tmp_path, make):
    ds = read_coco(_fixture(tmp_path, make))
    assert len(ds) == 2 and ds[1][1]["boxes"].shape == (0, 4) and ds[1][1]["image_id"].item() == 9


def test_class_names_restrict_and_reorder(tmp_path, make):
    path = _fixture(tmp_path, make)
    with pytest.raises(DatasetError, match=r"annotations\[2\]\.category_id' has value 3"):
        read_coco(path, class_names=["zebra", "dog"])
    ds = read_coco(path, class_names=["zebra", "dog"], on_bad_box="skip")
    assert ds.category_ids == [12, 7] and ds[0][1]["labels"].tolist() == [2, 1]
    assert dict(ds.skips.counts) == {"unknown_class": 1} and dict(ds.skips.removed_by_class) == {"cat": 1}


def test_split_json_lookup(tmp_path):
    for n in ("instances_train2017", "instances_trainval2017", "val"):
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"{n}.json").write_text(json.dumps({}))
    assert find_coco_json(tmp_path, "train").name == "instances_train2017.json"
    assert find_coco_json(tmp_path, "trainval").name == "instances_trainval2017.json"
    assert find_coco_json(tmp_path, "val").name == "val.json"
    with pytest.raises(DatasetError, match="no annotation file for split 'test'"):
        find_coco_json(tmp_path, "test")
    with pytest.raises(DatasetError, match="3 annotation files"):
        find_coco_json(tmp_path, None)


def test_missing_required_field_is_named(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 4}], "categories": []}))
    with pytest.raises(DatasetError, match=r"x\.json: field 'images\[0\]\.height' is missing"):
        read_coco(path)


def test_crowd_boxes_are_left_out_of_training_targets_but_kept_for_evaluation(tmp_path, make):
    from detdistill.data import build_loader
    from detdistill.data.convert import to_coco_dict

    ds = read_coco(_fixture(tmp_path, make))
    eval_targets = next(iter(build_loader(ds, 2, train=False)))[1]
    assert eval_targets[0]["iscrowd"].tolist() == [0, 1, 0]  # evaluation loaders see the crowd box
    [target] = next(iter(build_loader(_only_first(ds), 1, train=True)))[1]
    assert target["boxes"].tolist() == [[1, 2, 11, 7], [5, 5, 7, 7]] and target["iscrowd"].tolist() == [0, 0]
    assert target["labels"].tolist() == [2, 1] and target["area"].tolist() == [33.5, 4.0]
    assert [a["iscrowd"] for a in to_coco_dict(ds)["annotations"]] == [0, 1, 0]  # COCO AP ignores it


def _only_first(ds):
    import copy

    one = copy.copy(ds)
    one.records = ds.records[:1]
    return one
