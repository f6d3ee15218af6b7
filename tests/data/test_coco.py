import json
import re

import numpy as np
import pytest

from detdistill.data import DatasetError
from detdistill.data.base import RecordTable
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


def _write(tmp_path, doc, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _doc(**ann_fields):
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], **ann_fields}
    return {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16}], "annotations": [ann],
            "categories": [{"id": 1, "name": "cat"}]}


@pytest.mark.parametrize("field, value", [("ignore", "0"), ("ignore", "1"), ("ignore", 2), ("iscrowd", None),
                                          ("iscrowd", "1"), ("iscrowd", 0.5)])
def test_flags_that_are_not_0_or_1_are_refused_naming_the_field(tmp_path, field, value):
    path = _write(tmp_path, _doc(**{field: value}))
    with pytest.raises(DatasetError, match=rf"bad\.json: field 'annotations\[0\]\.{field}' has value {re.escape(repr(value))}"):
        read_coco(path)


def test_boolean_and_integer_flags_are_read(tmp_path):
    ds = read_coco(_write(tmp_path, _doc(ignore=True, iscrowd=False)))
    assert ds.get_target(0)["difficult"].tolist() == [True] and ds.get_target(0)["iscrowd"].tolist() == [0]


def test_overflowing_width_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_doc()).replace('"width": 16', '"width": 1e400'))
    with pytest.raises(DatasetError, match=r"bad\.json: field 'images\[0\]\.width' has value inf: expected a finite"):
        read_coco(path)


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DatasetError, match=r"deep\.json: malformed JSON \(arrays or objects nested too deeply"):
        read_coco(path)


def test_non_utf8_json_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(_doc()).replace("a.png", "\u00e9.png").encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.json: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        read_coco(path)


def test_duplicate_annotation_ids_are_a_reported_problem(tmp_path):
    from detdistill.data.coco import duplicate_annotation_ids
    from detdistill.data.stats import dataset_stats, format_stats

    doc = _doc()
    doc["annotations"] += [dict(doc["annotations"][0], bbox=[5, 5, 3, 3]), dict(doc["annotations"][0], id=2)]
    ds = read_coco(_write(tmp_path, doc))
    assert ds.records[0].num_boxes == 3  # kept: training does not use the ids
    stats = dataset_stats(ds)
    assert stats.problems == {"duplicate_annotation_id": 1}
    assert "field 'annotations[1].id' has value 1: duplicate of annotations[0].id" in format_stats(stats)
    assert duplicate_annotation_ids(doc["annotations"]) == [(1, 1, 0)]


def test_a_missing_first_image_does_not_send_every_lookup_to_the_wrong_folder(tmp_path, make):
    from detdistill.data.validate import check_images

    images = [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 6} for i in range(4)]
    path = make.coco(tmp_path, images, [], [{"id": 1, "name": "cat"}])
    (tmp_path / "images" / "0.png").unlink()
    ds = read_coco(path)
    assert ds.root == tmp_path / "images"
    assert check_images(ds) == [f"{tmp_path / 'images' / '0.png'}: image file not found"]


def test_errors_in_later_entries_still_name_the_first_bad_entry(tmp_path):
    doc = _doc()
    doc["images"] += [{"id": 2, "file_name": "b.png", "width": 16}, {"id": 3, "width": 16, "height": 4}]
    with pytest.raises(DatasetError, match=r"field 'images\[1\]\.height' is missing"):
        read_coco(_write(tmp_path, doc))
    doc = _doc()
    doc["annotations"] += [dict(doc["annotations"][0], image_id=7), dict(doc["annotations"][0], bbox=[1, 2, 3])]
    with pytest.raises(DatasetError, match=r"field 'annotations\[1\]\.image_id' has value 7: no such image"):
        read_coco(_write(tmp_path, doc))
    doc = _doc()
    doc["annotations"] += [dict(doc["annotations"][0], bbox=[1, "2", 3, 4])]
    with pytest.raises(DatasetError, match=r"field 'annotations\[1\]\.bbox' has value \[1, '2', 3, 4\]"):
        read_coco(_write(tmp_path, doc))
    doc["annotations"][1]["bbox"] = [1, 1, 0, 4]
    doc["annotations"].append(dict(doc["annotations"][0], bbox=[2, 2, 3, -1]))
    with pytest.raises(DatasetError, match=r"field 'annotations\[1\]\.bbox' has value \[1, 1, 0, 4\]: zero-area"):
        read_coco(_write(tmp_path, doc))


def test_data_stats_on_a_null_iscrowd_prints_one_line(tmp_path, capsys):
    from detdistill.cli import main

    path = _write(tmp_path, _doc(iscrowd=None))
    assert main(["data", "stats", str(path), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "field 'annotations[0].iscrowd' has value None" in err[0]


def test_huge_integers_are_one_line_errors(tmp_path):
    text = json.dumps(_doc())
    path = tmp_path / "bad.json"
    path.write_text(text.replace('"width": 16', '"width": 1' + "0" * 400))
    with pytest.raises(DatasetError, match=r"field 'images\[0\]\.width' has value 10{400}: expected a finite"):
        read_coco(path)
    path.write_text(text.replace('"bbox": [1, 1, 4, 4]', '"bbox": [1, 1, 4, 1' + "0" * 400 + "]"))
    with pytest.raises(DatasetError, match=r"field 'annotations\[0\]\.bbox' has value \[1, 1, 4, 10{400}\]"):
        read_coco(path)
    path.write_text(text.replace('"category_id": 1', '"category_id": 1' + "0" * 30))
    with pytest.raises(DatasetError, match=r"field 'annotations\[0\]\.category_id' has value 10{30}: outside"):
        read_coco(path, on_bad_box="skip")


def test_column_duplicate_search_agrees_with_the_per_entry_one():
    import numpy as np

    from detdistill.data.coco import _duplicates, duplicate_annotation_ids

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 40, 200)
    valid = rng.uniform(size=200) < 0.8
    anns = [{"id": int(i)} if v else {"id": "x"} for i, v in zip(ids, valid)]
    assert _duplicates(ids, valid) == duplicate_annotation_ids(anns) and len(duplicate_annotation_ids(anns)) > 50


def test_any_key_order_and_layout_reads_the_same(tmp_path, make):
    """The streaming parse (annotations as arrays while parsing) and the whole-document fallback agree."""
    from detdistill.data.coco import _NotStreamable, _stream_coco

    path = _fixture(tmp_path, make)
    doc = json.loads(path.read_text())
    reference = read_coco(path)
    variants = {
        "reordered.json": json.dumps({"annotations": doc["annotations"], "categories": doc["categories"],
                                      "images": doc["images"]}),
        "indented.json": json.dumps(doc, indent=3),
        "repeated_key.json": json.dumps(doc)[:-1] + ', "images": ' + json.dumps(doc["images"]) + "}",
    }
    for name, text in variants.items():
        (tmp_path / "annotations" / name).write_text(text)
        ds = read_coco(tmp_path / "annotations" / name)
        assert all(np.array_equal(getattr(ds.records, k), getattr(reference.records, k))
                   for k in RecordTable.__slots__), name
    with pytest.raises(_NotStreamable):
        _stream_coco(path, variants["repeated_key.json"])
    assert isinstance(_stream_coco(path, variants["indented.json"])["images"], list)


@pytest.mark.parametrize("chunk_chars", [1, 7, 40, 150, 10**9])
def test_streamed_chunks_cut_anywhere_read_the_same(tmp_path, monkeypatch, chunk_chars):
    """Cuts at a nested '}, {' or one inside a string must never split an annotation."""
    import detdistill.data.coco as coco

    images = [{"id": i, "file_name": f"{i}.png", "width": 50, "height": 40} for i in range(5)]
    anns = [{"id": k, "image_id": k % 5, "category_id": 1 + k % 2, "bbox": [k % 7, 1.5, 3 + k % 4, 2],
             "note": "a}, {b" if k % 3 == 0 else "", "parts": [{"p": 1}, {"q": [k]}], "iscrowd": int(k % 9 == 0)}
            for k in range(60)]
    path = _write(tmp_path, {"images": images, "annotations": anns,
                             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    monkeypatch.setattr(coco, "_CHUNK", 4)
    monkeypatch.setattr(coco, "_CHUNK_CHARS", chunk_chars)
    ds = coco.read_coco(path)
    assert ds.records.num_boxes.tolist() == [12] * 5
    expected = sorted(anns, key=lambda a: a["image_id"])
    assert ds.records.boxes[:, 0].tolist() == [a["bbox"][0] for a in expected]
    assert ds.records.iscrowd.tolist() == [a["iscrowd"] for a in expected]
    assert ds.records.labels.tolist() == [a["category_id"] for a in expected]


def test_column_reader_matches_a_per_annotation_loop_on_a_random_file(tmp_path, monkeypatch):
    """Random defects (outside, partial, zero-area, inverted, unknown class), mixed int/float coordinates,
    crowd and ignore flags: the array reader gives what a plain loop over the file gives."""
    import detdistill.data.coco as coco

    rng = np.random.default_rng(3)
    images = [{"id": int(i), "file_name": f"{i}.jpg", "width": int(rng.integers(20, 60)),
               "height": int(rng.integers(20, 60))} for i in rng.permutation(500)[:40]]
    anns = []
    for k in range(400):
        x, y, w, h = (float(v) for v in np.round(rng.uniform(-15, 60, 4), 1))
        if k % 5 == 0:
            x, w = int(x), int(abs(w))
        ann = {"id": k, "image_id": images[int(rng.integers(0, 40))]["id"], "category_id": int(rng.integers(1, 5)),
               "bbox": [x, y, w, h], "iscrowd": int(rng.uniform() < 0.1), "ignore": bool(rng.uniform() < 0.1)}
        if k % 3:
            ann["area"] = float(rng.uniform(1, 99))
        anns.append(ann)
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]  # category 4 is unknown
    path = _write(tmp_path, {"images": images, "annotations": anns, "categories": cats})
    monkeypatch.setattr(coco, "_CHUNK_CHARS", 3000)
    ds = coco.read_coco(path, on_bad_box="skip")

    expected = {im["id"]: [] for im in images}
    counts = {}
    for ann in anns:
        x, y, w, h = ann["bbox"]
        im = next(i for i in images if i["id"] == ann["image_id"])
        x1, y1, x2, y2 = x, y, x + w, y + h
        if ann["category_id"] == 4:
            reason = "unknown_class"
        elif x2 < x1 or y2 < y1:
            reason = "inverted"
        elif x2 == x1 or y2 == y1:
            reason = "zero_area"
        elif x1 >= im["width"] or y1 >= im["height"] or x2 <= 0 or y2 <= 0:
            reason = "outside"
        else:
            reason = None
            c = [max(x1, 0), max(y1, 0), min(x2, im["width"]), min(y2, im["height"])]
            clipped = max(-x1, -y1, x2 - im["width"], y2 - im["height"]) > 0.01
            if clipped:
                counts["clipped"] = counts.get("clipped", 0) + 1
            area = (c[2] - c[0]) * (c[3] - c[1]) if clipped or "area" not in ann else ann["area"]
            expected[im["id"]].append((c, ann["category_id"], ann["iscrowd"], ann["ignore"], area))
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    assert dict(ds.skips.counts) == counts and set(counts) >= {"unknown_class", "outside", "clipped"}
    for i, im in enumerate(images):
        rec, want = ds.records[i], expected[im["id"]]
        assert rec.image_id == im["id"] and (rec.width, rec.height) == (im["width"], im["height"])
        assert np.allclose(rec.boxes, np.array([w[0] for w in want], np.float32).reshape(-1, 4))
        assert rec.labels.tolist() == [w[1] for w in want] and rec.iscrowd.tolist() == [w[2] for w in want]
        assert rec.difficult.tolist() == [w[3] for w in want]
        assert np.allclose(rec.area, [w[4] for w in want], rtol=1e-5)
