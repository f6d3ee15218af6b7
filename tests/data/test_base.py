import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.data import DatasetError, DetectionDataset, ImageRecord, load_rgb_image


def test_record_target_fields_and_dtypes():
    rec = ImageRecord(image_id=3, file_name="a.png", width=20, height=10, boxes=[[1, 2, 5, 8]], labels=[2],
                      difficult=[True])
    t = rec.target()
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert t["area"].tolist() == [24.0] and t["iscrowd"].tolist() == [0] and t["difficult"].tolist() == [True]
    assert t["orig_size"].tolist() == [10, 20] and int(t["image_id"]) == 3


def test_record_label_count_mismatch_names_file_and_field():
    with pytest.raises(DatasetError, match=r"a\.png.*'labels'"):
        ImageRecord(image_id=0, file_name="a.png", width=4, height=4, boxes=[[0, 0, 1, 1]], labels=[1, 2])


def test_grayscale_and_palette_images_decode_to_rgb(tmp_path):
    Image.fromarray(np.full((6, 8), 200, np.uint8), "L").save(tmp_path / "g.png")
    Image.fromarray(np.zeros((6, 8), np.uint8), "L").convert("P").save(tmp_path / "p.png")
    for name in ("g.png", "p.png"):
        img = load_rgb_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == (8, 6)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((6, 8, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb_image(tmp_path / "r.jpg").size == (6, 8)


def test_missing_corrupt_and_mismatched_images_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="missing.png: image file not found"):
        load_rgb_image(tmp_path / "missing.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="bad.jpg: cannot decode"):
        load_rgb_image(tmp_path / "bad.jpg")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    ds = DetectionDataset([ImageRecord(0, "ok.png", width=9, height=6)], ["thing"], root=tmp_path)
    with pytest.raises(DatasetError, match=r"ok.png: annotated size \(width=9, height=6\).*width=8"):
        ds[0]


def test_dataset_maps_labels_to_source_category_ids(tmp_path):
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    ds = DetectionDataset([ImageRecord(0, "ok.png", 8, 6, boxes=[[0, 0, 2, 2]], labels=[2])], ["cat", "dog"],
                          category_ids=[17, 18], root=tmp_path)
    image, target = ds[0]
    assert image.shape == (3, 6, 8) and float(image.max()) == 0.0
    assert ds.label_to_category_id(2) == 18 and ds.category_id_to_label() == {17: 1, 18: 2}
    assert ds.num_classes == 3 and ds.summary()["classes"] == {"cat": 0, "dog": 1}


def _records():
    return [ImageRecord(5, "a/ü.png", 20, 10, boxes=[[1, 2, 5, 8], [0, 0, 3, 3]], labels=[2, 1], iscrowd=[0, 1],
                        difficult=[True, False], area=[7.5, 9.0]),
            ImageRecord(9, "neg.png", 8, 6),
            ImageRecord(11, "c.png", 30, 40, boxes=[[3, 3, 9, 9]], labels=[1])]


def test_record_table_round_trips_records_and_targets():
    from detdistill.data.base import RecordTable

    records = _records()
    table = RecordTable.from_records(records)
    assert len(table) == 3 and table.num_boxes.tolist() == [2, 0, 1] and table.box_image_index.tolist() == [0, 0, 2]
    for rec, got in zip(records, table):
        assert (got.image_id, got.file_name, got.width, got.height) == (rec.image_id, rec.file_name, rec.width,
                                                                       rec.height)
        for key in ("boxes", "labels", "iscrowd", "difficult", "area"):
            assert np.array_equal(getattr(got, key), getattr(rec, key)) and getattr(got, key).dtype == getattr(rec, key).dtype
        direct, made = table.target(records.index(rec)), rec.target()
        assert direct.keys() == made.keys()
        assert all(torch.equal(direct[k], made[k]) and direct[k].dtype == made[k].dtype for k in made)
    assert table[-1].image_id == 11
    with pytest.raises(IndexError):
        table[3]


def test_record_table_slices_and_takes_into_tables():
    from detdistill.data.base import RecordTable

    table = RecordTable.from_records(_records())
    head, picked = table[:2], table.take([2, 0])
    assert isinstance(head, RecordTable) and [r.image_id for r in head] == [5, 9]
    assert [r.file_name for r in picked] == ["c.png", "a/ü.png"] and picked.num_boxes.tolist() == [1, 2]
    assert picked[1].boxes.tolist() == [[1, 2, 5, 8], [0, 0, 3, 3]] and picked[1].iscrowd.tolist() == [0, 1]
    assert [r.image_id for r in head + picked] == [5, 9, 11, 5]


def test_dataset_holds_a_table_and_training_drops_crowd_boxes():
    from detdistill.data.base import RecordTable, without_crowd

    ds = DetectionDataset(_records(), ["cat", "dog"])
    assert isinstance(ds.records, RecordTable) and ds.summary()["classes"] == {"cat": 2, "dog": 1}
    ds.records = ds.records[:1]
    assert len(ds) == 1
    target = ds.get_target(0)
    assert target["iscrowd"].tolist() == [0, 1]  # evaluation and reports still see the crowd box
    train = without_crowd(target)
    assert train["boxes"].tolist() == [[1, 2, 5, 8]] and train["labels"].tolist() == [2]
    assert train["iscrowd"].tolist() == [0] and train["area"].tolist() == [7.5] and train["difficult"].tolist() == [True]
    assert torch.equal(train["orig_size"], target["orig_size"])
