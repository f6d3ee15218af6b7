"""Folder-level predict with bad images: `--on-bad-image repair` (default) decodes a truncated file as far as it
goes and lists it, `skip` lists and counts the skipped
files and writes complete outputs for the rest; `stop` names the file and writes nothing; no stop, however it
happens, leaves a half-written output folder (outputs are staged in a hidden folder and moved into place)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.cli import main
from detdistill.data import SYNTHETIC_CLASS_NAMES, DatasetError
from detdistill.eval.predict import predict_images
from detdistill.models import build_detector, save_detector


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_detector(tmp_path / "m.pt", build_detector("cpu_tiny", 7, min_size=64, max_size=64),
                         list(SYNTHETIC_CLASS_NAMES))


@pytest.fixture
def folder(tmp_path):
    """a.png, c.png good; b.png truncated (its header reads, its pixels do not); d.png not an image at all."""
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"{name}.png")
    raw = (images / "b.png").read_bytes()
    (images / "b.png").write_bytes(raw[:len(raw) // 2])
    (images / "d.png").write_bytes(b"not a png")
    return images


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


def test_skip_lists_and_counts_the_bad_files_and_completes_the_rest(checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(out),
                 "--batch-size", "2", "--on-bad-image", "skip"]) == 0
    summary = capsys.readouterr().out
    assert "on 2 images" in summary and "2 skipped (cannot be decoded)" in summary
    assert f"skipped {folder / 'b.png'}: cannot decode image" in summary and f"{folder / 'd.png'}" in summary
    doc = json.loads((out / "detections.json").read_text())
    assert [img["file_name"] for img in doc["images"]] == [str(folder / "a.png"), str(folder / "c.png")]
    assert [s["file_name"] for s in doc["skipped"]] == [str(folder / "b.png"), str(folder / "d.png")]
    assert [s["id"] for s in doc["skipped"]] == [2, 4] and "cannot decode image" in doc["skipped"][0]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "detections.json"]
    assert _leftovers(tmp_path) == []


def test_repair_decodes_the_truncated_file_as_far_as_it_goes_and_lists_it(checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "on 3 images" in summary and "1 skipped (cannot be decoded)" in summary
    assert f"repaired (decoded as far as it goes) {folder / 'b.png'}: cannot decode image" in summary
    doc = json.loads((out / "detections.json").read_text())
    assert [r["file_name"] for r in doc["repaired"]] == [str(folder / "b.png")]
    assert [img["file_name"] for img in doc["images"]][1] == str(folder / "b.png")
    assert doc["images"][1]["width"] == 48 and doc["images"][1]["height"] == 40
    assert [s["file_name"] for s in doc["skipped"]] == [str(folder / "d.png")]


def test_stop_names_the_file_and_writes_nothing(checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(out),
                 "--on-bad-image", "stop"]) != 0
    err = capsys.readouterr().err
    assert f"{folder / 'b.png'}: cannot " in err and "nothing was written; --on-bad-image skip" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_every_image_bad_is_an_error_not_an_empty_result(checkpoint, folder, tmp_path, capsys):
    for name in ("a.png", "c.png"):
        (folder / name).unlink()
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(tmp_path / "p"),
                 "--on-bad-image", "skip"]) != 0
    assert "no image could be decoded (2 skipped" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_an_interruption_midway_leaves_the_output_folder_as_it_was(folder, tmp_path):
    (folder / "b.png").unlink()
    (folder / "d.png").unlink()
    out = tmp_path / "pred"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls = []

    def model(images):
        calls.append(len(images))
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]

    paths = sorted(folder.iterdir())
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        predict_images(model, paths, out, ["x"], batch_size=1, device="cpu", progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _leftovers(tmp_path) == []  # a.png not there yet
    interrupt = False
    doc = predict_images(model, paths, out, ["x"], batch_size=1, device="cpu", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "detections.json", "keep.txt"]
    assert len(doc["images"]) == 2 and doc["skipped"] == []


def test_a_bad_choice_is_named():
    with pytest.raises(DatasetError, match="--on-bad-image: value 'ignore'"):
        predict_images(lambda x: x, ["a.png"], "o", ["x"], on_bad_image="ignore")


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(folder, tmp_path):
    (folder / "b.png").unlink()
    (folder / "d.png").unlink()
    dead = tmp_path / ".pred.partial-999999999"  # no such process
    dead.mkdir()
    (dead / "a.png").write_bytes(b"half")

    def model(images):
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]

    predict_images(model, sorted(folder.iterdir()), tmp_path / "pred", ["x"], device="cpu", progress=False)
    assert _leftovers(tmp_path) == [] and (tmp_path / "pred" / "detections.json").is_file()
