"""Messages that used to name the wrong thing or nothing: each now names the file (and field) and the real
reason. KITTI labels that are all DontCare, a COCO image with an empty file name, a YOLO set of only
unsupported images, a plain-pickle `.pt` (no torch warning leaks either)."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill.data import DatasetError
from detdistill.data.coco import read_coco
from detdistill.data.kitti import read_kitti
from detdistill.data.yolo import read_yolo
from detdistill.errors import CheckpointError, DetDistillError
from detdistill.utils import safe_torch_load


def _image(path, width=32, height=24):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
    return path


def _kitti_line(typ):
    return f"{typ} 0.00 0 -1.57 1 1 9 9 1.5 1.6 3.9 1.0 1.5 20.0 -1.5\n"


def _message(exc_type, fn):
    with pytest.raises(exc_type) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_kitti_labels_that_are_all_dontcare_say_so_and_name_the_folder(tmp_path):
    root = tmp_path
    (root / "label_2").mkdir()
    for stem, n in (("000", 1), ("001", 2)):
        _image(root / "image_2" / f"{stem}.png")
        (root / "label_2" / f"{stem}.txt").write_text(_kitti_line("DontCare") * n)
    message = _message(DatasetError, lambda: read_kitti(root))
    assert message.startswith(f"{root / 'label_2'}: every label is DontCare (3 lines in 2 files)")
    assert "num_classes" not in message
    message = _message(DatasetError, lambda: read_kitti(root, class_map={"Car": "car"}))
    assert "every label is DontCare or mapped to None by class_map" in message


def test_a_coco_image_with_an_empty_file_name_names_the_file_image_id_and_field(tmp_path):
    _image(tmp_path / "images" / "a.png", 20, 20)
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 20},
                                           {"id": 7, "file_name": "", "width": 20, "height": 20}],
                                "annotations": [], "categories": [{"id": 1, "name": "c"}]}))
    message = _message(DatasetError, lambda: read_coco(path))
    assert message.startswith(f"{path}: field 'images[1].file_name' of image id 7 has value ''")
    assert "an empty file name names no image" in message and "not found" not in message


def test_a_yolo_set_of_only_gif_images_counts_them_instead_of_no_images(tmp_path):
    root = tmp_path
    (root / "data.yaml").write_text("names: [cat]\ntrain: images/train\n")
    gifs = root / "images" / "train"
    for name in ("a", "b"):
        gifs.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(gifs / f"{name}.gif")
    message = _message(DatasetError, lambda: read_yolo(root, "train"))
    assert "no images found for split 'train'; 2 unsupported .gif files skipped" in message
    assert f"{gifs / 'a.gif'}: not a supported image type" in message


def test_a_plain_pickle_pt_is_named_as_such_without_a_torch_warning(tmp_path):
    path = tmp_path / "weights.pt"
    with open(path, "wb") as fh:
        pickle.dump({"conv.weight": [[1.0, 2.0]]}, fh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (torch's pickle-protocol one names site-packages) fails
        message = _message(CheckpointError, lambda: safe_torch_load(path))
    assert issubclass(CheckpointError, DetDistillError)
    assert message.startswith(f"{path}: a plain Python pickle (pickle.dump), not a torch checkpoint")
    assert "site-packages" not in message


def test_torch_files_old_and_new_still_load(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "new.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name in ("new.pt", "old.pt"):
        assert torch.equal(safe_torch_load(tmp_path / name)["w"], torch.ones(2))


def test_the_cli_prints_the_plain_pickle_reason_for_a_checkpoint(tmp_path, capsys):
    from detdistill.cli import main

    path = tmp_path / "m.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}}))
    assert main(["evaluate", "--checkpoint", str(path), "--data", "synthetic", "--num-images", "2"]) != 0
    captured = capsys.readouterr()
    assert f"{path}: a plain Python pickle" in captured.err and "site-packages" not in captured.err
