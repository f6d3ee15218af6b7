import json

import numpy as np

from detdistill.cli import main
from detdistill.data import open_dataset
from detdistill.data.stats import dataset_stats, format_stats, size_bucket
from detdistill.data.voc import read_voc


def test_size_buckets_use_coco_bounds():
    assert size_bucket(np.array([0, 1023.9, 1024, 9215.9, 9216, 1e6])).tolist() == [0, 0, 1, 1, 2, 2]


def test_fixture_counts_buckets_negatives_and_removed(tmp_path, make):
    root = make.voc(tmp_path, {
        "a": {"width": 200, "height": 150, "objects": [("cat", 0, 0, 10, 10), ("cat", 0, 0, 40, 40),
                                                        ("dog", 0, 0, 100, 100), ("dog", 5, 5, 5, 9)]},
        "b": {"objects": []},
    })
    stats = dataset_stats(read_voc(root, on_bad_box="skip"))
    assert (stats.images, stats.negatives, stats.boxes, stats.removed, stats.annotated) == (2, 1, 3, 1, 4)
    cat, dog = stats.classes
    assert (cat.boxes, cat.small, cat.medium, cat.large, cat.images) == (2, 1, 1, 0, 1)
    assert (dog.boxes, dog.removed, dog.annotated, dog.large) == (1, 1, 2, 1)
    assert (stats.boxes_per_image_min, stats.boxes_per_image_mean, stats.boxes_per_image_max) == (0, 1.5, 3)
    assert stats.problems == {"zero_area": 1}
    text = format_stats(stats)
    assert "zero_area: 1" in text and "(5, 5, 5, 9)" in text


def test_bccd_and_raccoon_match_their_readmes(real_data, tmp_path, capsys):
    bccd = dataset_stats(open_dataset(real_data / "bccd", on_bad_box="skip"))
    assert (bccd.images, bccd.annotated, bccd.removed) == (364, 4888, 2)
    assert {c.name: c.annotated for c in bccd.classes} == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    assert (bccd.boxes_per_image_min, round(bccd.boxes_per_image_mean, 1), bccd.boxes_per_image_max) == (1, 13.4, 30)
    assert bccd.problems == {"zero_area": 2}
    png, js = tmp_path / "r.png", tmp_path / "r.json"
    assert main(["data", "stats", str(real_data / "raccoon"), "--out", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "200 images (0 without boxes), 217 boxes annotated" in out and "problems found: none" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert (data["images"], data["annotated"], data["classes"][0]["name"]) == (200, 217, "raccoon")
