import pytest

from detdistill.data import DatasetError, SyntheticShapes, detect_format, open_dataset


def test_detects_each_format(tmp_path, make):
    make.voc(tmp_path / "voc", {"a": {"objects": [("x", 1, 1, 4, 4)]}})
    make.voc(tmp_path / "racc", {"a": {"objects": [("x", 1, 1, 4, 4)]}}, splits={"train": ["a"]}, layout="raccoon")
    make.yolo(tmp_path / "yolo", {"a": {"lines": ["0 0.5 0.5 0.2 0.2"]}}, names=["x"])
    make.kitti(tmp_path / "kitti", {"0": {"lines": [make.kitti_line("Car", 1, 1, 5, 5)]}})
    json_path = make.coco(tmp_path / "coco", [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], [],
                          [{"id": 1, "name": "x"}])
    expected = {"voc": "voc", "racc": "voc", "yolo": "yolo", "kitti": "kitti", "coco": "coco"}
    assert {k: detect_format(tmp_path / k) for k in expected} == expected
    assert detect_format(json_path) == "coco" and detect_format("synthetic:hard") == "synthetic"
    assert [len(open_dataset(tmp_path / k, "train" if k in ("racc", "yolo", "coco") else None)) for k in expected] \
        == [1, 1, 1, 1, 1]


def test_ambiguous_and_unknown_are_clear_errors(tmp_path, make):
    make.voc(tmp_path, {"a": {}})
    (tmp_path / "data.yaml").write_text("names: [x]\n")
    with pytest.raises(DatasetError, match="ambiguous dataset format, looks like voc and yolo"):
        open_dataset(tmp_path)
    assert len(open_dataset(tmp_path, format="voc")) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: unknown dataset format"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere: dataset path not found"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="field 'on_bad_box' has value 'maybe'"):
        open_dataset(tmp_path, on_bad_box="maybe")


def test_synthetic_source_and_preset():
    ds = open_dataset("synthetic", num_images=2, seed=5)
    assert isinstance(ds, SyntheticShapes) and ds.split == "train" and ds.seed == 5 and ds.skips.total == 0
    hard = open_dataset("synthetic:hard", "val", num_images=1)
    assert hard.config.max_objects == 10 and hard.split == "val"


def test_real_raccoon_opens_by_split(real_data):
    ds = open_dataset(real_data / "raccoon", split="train")
    assert (len(ds), ds.class_names, ds.num_classes) == (160, ["raccoon"], 2)
    assert len(open_dataset(real_data / "bccd", split="test")) == 72
