import numpy as np
import pytest
import torch

from detdistill.data import DatasetError
from detdistill.data.voc import read_voc


def test_voc_fixture_boxes_labels_difficult_splits_and_class_order(tmp_path, make):
    make.voc(tmp_path, {
        "a": {"objects": [("dog", 1, 2, 10, 12), ("cat", 3, 4, 20, 22, 1)]},
        "b": {"objects": [("cat", 0, 0, 32, 24)]},
        "c": {"objects": [("zebra", 5, 5, 9, 9)]},  # only in test, yet it fixes the label order of train
    }, splits={"train": ["b", "a"], "test": ["c"]})
    train = read_voc(tmp_path, "train")
    assert train.class_names == ["cat", "dog", "zebra"] == read_voc(tmp_path, "test").class_names
    assert [r.file_name for r in train.records] == ["JPEGImages/b.png", "JPEGImages/a.png"]
    image, target = train[1]
    assert image.shape == (3, 24, 32)
    assert target["boxes"].tolist() == [[1, 2, 10, 12], [3, 4, 20, 22]]
    assert target["labels"].tolist() == [2, 1]
    assert target["difficult"].tolist() == [False, True]
    assert target["area"].tolist() == [9 * 10, 17 * 18]
    assert target["image_id"].item() == 1 and train.skips.total == 0
    assert len(read_voc(tmp_path)) == 3


def test_voc_grayscale_rgba_palette_decode_to_rgb(tmp_path, make):
    items = {m: {"mode": m, "objects": [("x", 1, 1, 5, 5)]} for m in ("L", "RGBA", "P")}
    ds = read_voc(make.voc(tmp_path, items))
    for i, mode in enumerate(ds.records):
        image, _ = ds[i]
        assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    gray = ds[[r.file_name for r in ds.records].index("JPEGImages/L.png")][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_voc_raccoon_layout_and_given_class_names(tmp_path, make):
    make.voc(tmp_path, {"r-1": {"objects": [("raccoon", 2, 3, 8, 9)]}, "r-2": {}},
             splits={"train": ["r-2", "r-1"]}, layout="raccoon")
    ds = read_voc(tmp_path, "train", class_names=["background_thing", "raccoon"])
    assert ds.class_names == ["background_thing", "raccoon"]
    assert [t["labels"].tolist() for _, t in (ds[0], ds[1])] == [[], [2]]


def test_voc_missing_split_file_names_it(tmp_path, make):
    make.voc(tmp_path, {"a": {}}, splits={"train": ["a"]})
    with pytest.raises(DatasetError, match=r"ImageSets/Main/val\.txt.*'val'.*\['train'\]"):
        read_voc(tmp_path, "val")


def test_bccd_splits_classes_and_zero_area_boxes(real_data):
    root = real_data / "bccd"
    sizes = {s: len(read_voc(root, s, on_bad_box="skip")) for s in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 205, "val": 87, "trainval": 292, "test": 72}
    ds = read_voc(root, on_bad_box="skip")
    assert ds.class_names == ["Platelets", "RBC", "WBC"]
    assert ds.summary()["classes"] == {"Platelets": 361, "RBC": 4153, "WBC": 372}
    assert dict(ds.skips.counts) == {"zero_area": 2}
    assert dict(ds.skips.removed_by_class) == {"RBC": 2}
    with pytest.raises(DatasetError) as err:
        read_voc(root, "val")
    msg = str(err.value)
    assert "BloodImage_00338.xml" in msg and "object[12].bndbox" in msg and "(504, 337, 504, 337)" in msg


def test_raccoon_train_test_and_grayscale(real_data):
    root = real_data / "raccoon"
    train, test = read_voc(root, "train"), read_voc(root, "test")
    assert (len(train), train.summary()["boxes"]) == (160, 173)
    assert (len(test), test.summary()["boxes"]) == (40, 44)
    idx = [r.file_name for r in train.records + test.records].index("images/raccoon-150.jpg")
    ds, i = (train, idx) if idx < len(train) else (test, idx - len(train))
    image, target = ds[i]
    assert image.shape[0] == 3 and tuple(target["orig_size"].tolist()) == tuple(image.shape[1:])
    assert np.all(np.concatenate([r.labels for r in train.records]) == 1)
