import pytest

from detdistill.data import DatasetError
from detdistill.data.yolo import read_yolo


def test_normalised_boxes_to_pixels_names_from_data_yaml(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["1 0.5 0.5 0.5 0.5", "0 0.25 0.75 0.1 0.2"], "width": 40, "height": 20},
                         "b": {"label": False}}, names=["cat", "dog"])
    ds = read_yolo(tmp_path, "train")
    assert ds.class_names == ["cat", "dog"] and ds.category_ids == [0, 1]
    image, t = ds[0]
    assert image.shape == (3, 20, 40)
    # cx*W ± w*W/2, cy*H ± h*H/2
    assert t["boxes"].flatten().tolist() == pytest.approx([10, 5, 30, 15, 8, 13, 12, 17], abs=1e-5)
    assert t["labels"].tolist() == [2, 1]
    assert ds[1][1]["boxes"].shape == (0, 4)  # no label file: a negative
    assert len(read_yolo(tmp_path)) == 2


def test_names_file_and_plain_folder(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["2 0.5 0.5 1 1"]}}, names=["x", "y", "z"], split=None, names_file=True)
    ds = read_yolo(tmp_path)
    assert ds.class_names == ["x", "y", "z"]
    assert ds[0][1]["boxes"].tolist() == [[0, 0, 40, 20]] and ds[0][1]["labels"].tolist() == [3]


def test_data_yaml_names_list_and_valid_alias(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["0 0.5 0.5 0.5 0.5"]}}, names=None, split="valid")
    (tmp_path / "data.yaml").write_text("names: [only]\nvalid: images/valid\n")
    assert len(read_yolo(tmp_path, "val")) == 1


def test_no_class_names_is_a_clear_error(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": []}}, names=None)
    with pytest.raises(DatasetError, match="no class names"):
        read_yolo(tmp_path)


def test_wrong_column_count_names_file_line_value(tmp_path, make):
    make.yolo(tmp_path, {"a": {"lines": ["0 0.5 0.5 0.5"]}}, names=["c"])
    with pytest.raises(DatasetError) as err:
        read_yolo(tmp_path, "train")
    assert "labels/train/a.txt" in str(err.value) and "line 1" in str(err.value) and "'0 0.5 0.5 0.5'" in str(err.value)
