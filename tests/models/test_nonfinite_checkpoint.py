"""Non-finite weights: loading a checkpoint or a weights file whose tensors hold NaN or inf refuses, once, with
the count of such tensors and the first one's name (a NaN model otherwise scores AP 0 and predicts nothing)."""

from __future__ import annotations

import pytest
import torch

from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.checks import NonFiniteCheckpointError, check_finite_weights
from detdistill.errors import DetDistillError
from detdistill.models import build_detector, load_detector, read_checkpoint, save_detector
from detdistill.utils import atomic_torch_save


@pytest.fixture()
def damaged(tmp_path):
    torch.manual_seed(0)
    model = build_detector("cpu_tiny", 7, min_size=64, max_size=64)
    path = save_detector(tmp_path / "nan.pt", model, list(SYNTHETIC_CLASS_NAMES))
    ckpt = read_checkpoint(path)
    keys = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point()]
    second, fifth = keys[1], keys[4]
    ckpt["state_dict"][second].view(-1)[:3] = float("nan")
    ckpt["state_dict"][fifth].view(-1)[0] = float("inf")
    atomic_torch_save(ckpt, path)
    return path, second, ckpt["state_dict"]


def test_load_detector_refuses_nan_and_inf_weights_naming_count_and_first_tensor(damaged):
    path, first, _ = damaged
    with pytest.raises(NonFiniteCheckpointError) as info:
        load_detector(path)
    message = str(info.value)
    assert isinstance(info.value, DetDistillError) and "\n" not in message
    assert message.startswith(f"{path}: 2 of ") and f"(first: '{first}', 3 of " in message


def test_a_plain_state_dict_with_nan_is_refused_too(damaged, tmp_path):
    _, first, state = damaged
    weights = tmp_path / "state.pt"
    torch.save(state, weights)
    with pytest.raises(NonFiniteCheckpointError, match=f"{weights}: 2 of .*first: '{first}'"):
        build_detector("cpu_tiny", 7, min_size=64, max_size=64, weights=str(weights))


def test_finite_weights_and_integer_buffers_pass():
    check_finite_weights({"w": torch.ones(3), "n": torch.tensor(7), "big": torch.tensor([6.0e4], dtype=torch.float16)},
                         "x.pt")
    with pytest.raises(NonFiniteCheckpointError, match="x.pt: 1 of 2 weight tensors .*first: 'b', 1 of 2 values"):
        check_finite_weights({"a": torch.ones(2), "b": torch.tensor([1.0, -float("inf")])}, "x.pt")


def test_evaluate_and_predict_exit_with_the_message_not_ap_zero(damaged, tmp_path, capsys):
    from PIL import Image

    from detdistill.cli import main

    path, first, _ = damaged
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(path), "--images", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "out")]) != 0
    assert f"first: '{first}'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "detections.json").exists()
    assert main(["evaluate", "--checkpoint", str(path), "--data", "synthetic", "--num-images", "2"]) != 0
    assert f"{path}: 2 of" in capsys.readouterr().err
