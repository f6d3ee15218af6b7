"""The pre-flight image check: every bad file reported together before step 1, the verdicts cached by size
and mtime (a second check decodes nothing), and data.on_bad_image honoured by the dataset's own decoding: a
truncated JPEG trains to the end under repair (counted) and stops the run before step 1 under error."""

import json
import logging
import warnings

import pytest
from PIL import Image

from detdistill.config import load_config
from detdistill.data import image_check, open_dataset
from detdistill.data.image_check import BadImageError, check_images
from detdistill.engine.run import train_detector


def _voc(root, make, n=4, truncate=None, garbage=None):
    """n JPEGs in annots/ + images/; `truncate`: the index whose file loses its last 20 bytes."""
    for k in range(n):
        path = make.image(root / "images" / f"im{k}.jpg", 48, 40, seed=k)
        (root / "annots").mkdir(parents=True, exist_ok=True)
        (root / "annots" / f"im{k}.xml").write_text(make.voc_xml(f"im{k}.jpg", 48, 40, [("cat", 4, 4, 30, 30)]))
        if k == truncate:
            path.write_bytes(path.read_bytes()[:-20])
        if k == garbage:
            path.write_bytes(b"\xff\xd8 not a jpeg at all")
    return root


def test_every_bad_file_is_named_at_once_under_error(tmp_path, make):
    ds = open_dataset(_voc(tmp_path, make, truncate=1, garbage=3))
    with pytest.raises(BadImageError) as err:
        check_images([ds], "error")
    text = str(err.value)
    assert text.startswith("2 of 4 images cannot be used (data.on_bad_image=error), found before step 1")
    assert "im1.jpg: cannot decode image (image file is truncated" in text and "im3.jpg: cannot decode image (cannot identify image file" in text


def test_repair_keeps_the_truncated_file_and_skip_leaves_it_out_both_counted(tmp_path, make, caplog):
    root = _voc(tmp_path, make, truncate=1, garbage=3)
    ds = open_dataset(root)
    with caplog.at_level(logging.WARNING, logger="detdistill.data"):
        report = check_images([ds], "repair")
    assert (len(report.repaired), len(report.skipped), len(ds)) == (1, 1, 3)
    assert "im1.jpg" in report.repaired[0] and "im3.jpg" in report.skipped[0]
    assert any("repaired" in r.getMessage() and "im1.jpg" in r.getMessage() for r in caplog.records)
    k = [ds.image_path(i).name for i in range(len(ds))].index("im1.jpg")
    assert ds[k][0].shape == (3, 40, 48)  # the dataset decodes it as far as it goes
    with pytest.raises(Exception, match="truncated"):  # ... for that image only: Pillow's switch is off again
        Image.open(ds.image_path(k)).load()
    skipped = open_dataset(root)
    report = check_images([skipped], "skip")
    assert (len(report.repaired), len(report.skipped), len(skipped)) == (0, 2, 2)


def test_a_second_check_is_served_from_the_cache_and_a_changed_file_is_decoded_again(tmp_path, make, monkeypatch):
    root = _voc(tmp_path / "data", make, n=5, truncate=2)
    first = check_images([open_dataset(root)], "repair", cache_dir=tmp_path / "cache")
    assert (first.checked, first.decoded) == (5, 5) and len(first.repaired) == 1
    calls = []
    real = image_check.verdict
    monkeypatch.setattr(image_check, "verdict", lambda p: calls.append(p) or real(p))
    ds = open_dataset(root)
    second = check_images([ds], "repair", cache_dir=tmp_path / "cache")
    assert calls == [] and (second.decoded, second.cached) == (0, 5)
    assert len(second.repaired) == 1 and len(ds.repaired_images) == 1  # the verdict, not only "seen", is cached
    make.image(root / "images" / "im2.jpg", 48, 40, seed=9)  # the truncated file replaced by a good one
    third = check_images([open_dataset(root)], "repair", cache_dir=tmp_path / "cache")
    assert [p.name for p in calls] == ["im2.jpg"] and third.decoded == 1 and third.repaired == []
    cache_files = list((tmp_path / "cache" / "image-check").glob("*.json"))
    assert len(cache_files) == 1 and json.loads(cache_files[0].read_text())["version"] == 1


def test_a_size_disagreeing_with_the_annotation_is_found_before_step_1(tmp_path, make):
    root = _voc(tmp_path, make, n=2)
    (root / "annots" / "im0.xml").write_text(make.voc_xml("im0.jpg", 50, 40, [("cat", 4, 4, 30, 30)]))
    with pytest.raises(BadImageError, match=r"im0.jpg: annotated size \(width=50, height=40\) disagrees"):
        check_images([open_dataset(root)], "error")


def test_corrupt_exif_is_one_line_naming_the_image_once(tmp_path, caplog):
    import struct

    import numpy as np

    # One IFD entry (Make, 100 ASCII bytes) whose data lies past the end: Pillow warns on every decode.
    tiff = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, 100, 0x1000)
            + struct.pack("<I", 0))
    path = tmp_path / "exif.jpg"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(path, exif=b"Exif\x00\x00" + tiff)
    from detdistill.data.base import load_rgb_image

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a raw Pillow UserWarning would fail here
        with caplog.at_level(logging.WARNING, logger="detdistill.data"):
            load_rgb_image(path)
            load_rgb_image(path)
    lines = [r.getMessage() for r in caplog.records if "EXIF" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0]


TINY = ["model.name=cpu_tiny", "train.max_steps=2", "train.batch_size=2", "train.eval_every=0", "train.progress=false",
        "train.checkpoint_every=0", "model.overrides={min_size: 64, max_size: 64}", "data.val_split=null",
        "data.test_split=null", "data.auto_split=[1.0, 0.0, 0.0]"]


def test_a_truncated_jpeg_trains_to_the_end_under_repair_and_stops_before_step_1_under_error(tmp_path, make):
    root = _voc(tmp_path / "data", make, n=4, truncate=1)  # 2 steps x 2 images: every image is decoded
    out = tmp_path / "run"
    summary = train_detector(load_config(None, TINY + [f"data.source={root}", f"train.out_dir={out}"]),
                             log=lambda m: None)
    assert summary.steps == 2
    record = json.loads((out / "image_check.json").read_text())
    assert record["checked"] == 4 and len(record["repaired"]) == 1 and "im1.jpg" in record["repaired"][0]
    assert (out / "splits" / "train.txt").read_text().count(".jpg") == 4
    stopped = tmp_path / "stopped"
    with pytest.raises(BadImageError, match=r"1 of 4 images cannot be used.*im1.jpg: cannot decode image"):
        train_detector(load_config(None, TINY + [f"data.source={root}", f"train.out_dir={stopped}",
                                                 "data.on_bad_image=error"]), log=lambda m: None)
    assert not (stopped / "metrics.jsonl").exists() and not (stopped / "last.pt").exists()


def test_data_stats_check_images_says_which_files_a_run_would_repair_or_leave_out(tmp_path, make, capsys):
    from detdistill.cli import main

    root = _voc(tmp_path / "data", make, truncate=1, garbage=3)
    assert main(["data", "stats", str(root), "--check-images", "--out", str(tmp_path / "s.png")]) == 1
    out = capsys.readouterr().out
    assert "image check: 2 problems" in out
    assert "im3.jpg: cannot decode image" in out
    assert "im1.jpg: cannot decode image (image file is truncated" in out and "(repairable: data.on_bad_image=repair" in out


def test_a_dataset_opened_by_a_relative_path_decodes_what_the_check_decided(tmp_path, make, monkeypatch):
    _voc(tmp_path / "data", make, truncate=1, garbage=3)
    monkeypatch.chdir(tmp_path)
    ds = open_dataset("data")
    report = check_images([ds], "repair")
    assert report.repaired_files == ["data/images/im1.jpg"] and report.skipped_files == ["data/images/im3.jpg"]
    assert len(ds) == 3 and all(ds[i][0].shape == (3, 40, 48) for i in range(3))
