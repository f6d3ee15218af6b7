import pytest

from detdistill.data import DatasetError
from detdistill.data.kitti import read_kitti


def _fixture(tmp_path, make):
    return make.kitti(tmp_path, {
        "000000": {"lines": [make.kitti_line("Car", 1.5, 2, 20, 25), make.kitti_line("DontCare", 0, 0, 10, 10),
                             make.kitti_line("Pedestrian", 30, 3, 40, 29)]},
        "000001": {"lines": [make.kitti_line("Van", 5, 5, 15, 15), make.kitti_line("Misc", 1, 1, 4, 4)]},
    })


def test_dontcare_ignored_every_type_its_own_class(tmp_path, make):
    ds = read_kitti(_fixture(tmp_path, make))
    assert ds.class_names == ["Car", "Misc", "Pedestrian", "Van"]
    image, t = ds[0]
    assert image.shape == (3, 30, 50)
    assert t["boxes"].tolist() == [[1.5, 2, 20, 25], [30, 3, 40, 29]] and t["labels"].tolist() == [1, 3]
    assert ds.skips.total == 0


def test_class_map_merges_and_ignores(tmp_path, make):
    cmap = {"Car": "car", "Van": "car", "Pedestrian": "person", "Misc": None}
    ds = read_kitti(_fixture(tmp_path, make), class_map=cmap)
    assert ds.class_names == ["car", "person"]
    assert [ds[i][1]["labels"].tolist() for i in range(2)] == [[1, 2], [1]]


def test_type_missing_from_class_map(tmp_path, make):
    root = _fixture(tmp_path, make)
    with pytest.raises(DatasetError) as err:
        read_kitti(root, class_map={"Car": "car", "Pedestrian": "person", "Misc": None})
    assert "label_2/000001.txt" in str(err.value) and "line 1 type" in str(err.value) and "'Van'" in str(err.value)
    ds = read_kitti(root, class_map={"Car": "car", "Pedestrian": "person", "Misc": None}, on_bad_box="skip")
    assert dict(ds.skips.counts) == {"unknown_class": 1} and ds[1][1]["labels"].tolist() == []


def test_split_list(tmp_path, make):
    root = _fixture(tmp_path, make)
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "val.txt").write_text("000001\n")
    ds = read_kitti(root, "val")
    assert len(ds) == 1 and ds.records[0].file_name == "image_2/000001.png"
