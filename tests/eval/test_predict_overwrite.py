"""`predict --overwrite` into a folder holding an earlier prediction replaces it: the earlier run's drawn
images that the new run does not write are removed, files the predictions never wrote are kept."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.cli import main
from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.models import build_detector, save_detector


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_detector(tmp_path / "m.pt", build_detector("cpu_tiny", 7, min_size=64, max_size=64),
                         list(SYNTHETIC_CLASS_NAMES))


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")
    return folder


def test_overwrite_removes_the_earlier_predictions_drawn_images(checkpoint, tmp_path, capsys):
    out = tmp_path / "pred"
    first = _images(tmp_path / "first", ["cat", "dog", "owl"])
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(first), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat.png", "detections.json", "dog.png", "owl.png"]
    (out / "notes.txt").write_text("mine")  # not written by a prediction: kept
    second = _images(tmp_path / "second", ["dog", "eel"])
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(second), "--out", str(out),
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "dog.png", "eel.png", "notes.txt"]
    doc = json.loads((out / "detections.json").read_text())
    assert [img["drawn"] for img in doc["images"]] == ["dog.png", "eel.png"]
