"""Checkpoints written by main before the models/ split (issue 22) load into the same model, outputs and all.

The files in ``tests/fixtures`` were written by ``tests/fixtures/make_main_checkpoints.py`` with main at 7a40d8e:
a plain, a ``pretrained`` (FrozenBatchNorm2d) and a low-rank ``cpu_tiny``, each with what its layers compute
on fixed inputs (backbone + FPN, RPN head, box head + predictor).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from detdistill.models import load_detector, read_checkpoint
from detdistill.models.lowrank import SVDLinear, Tucker2Conv, compress_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from make_main_checkpoints import layer_outputs  # noqa: E402 - the generator's own reading of the outputs

DATA = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ["main_cpu_tiny", "main_cpu_tiny_pretrained", "main_cpu_tiny_lowrank"]


def _outputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return layer_outputs(model.eval())


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("name", NAMES)
def test_main_checkpoint_loads_to_the_same_outputs(name):
    path = DATA / f"{name}.pt"
    model = load_detector(path)
    assert model.detdistill_spec == read_checkpoint(path)["model_spec"]
    _assert_same(_outputs(model), torch.load(DATA / f"{name}.outputs.pt", weights_only=True))


def test_main_checkpoints_rebuild_their_structure():
    frozen = load_detector(DATA / "main_cpu_tiny_pretrained.pt")
    assert isinstance(frozen.backbone.body.stem[1], FrozenBatchNorm2d)
    lowrank = load_detector(DATA / "main_cpu_tiny_lowrank.pt")
    assert isinstance(lowrank.roi_heads.box_head.fc6, SVDLinear)
    assert isinstance(lowrank.backbone.body.stem[0], Tucker2Conv)
    assert lowrank.roi_heads.box_head.fc7.ranks == [8]


def test_compressing_main_checkpoint_reproduces_mains_low_rank_student(tmp_path):
    # main's low-rank file is compress_detector(plain, ratio=2): the new compress_checkpoint must choose the
    # same ranks and the same factors.
    compress_checkpoint(DATA / "main_cpu_tiny.pt", tmp_path / "student.pt", ratio=2)
    old = read_checkpoint(DATA / "main_cpu_tiny_lowrank.pt")
    new = read_checkpoint(tmp_path / "student.pt")
    assert new["model_spec"] == old["model_spec"]
    _assert_same(_outputs(load_detector(tmp_path / "student.pt")),
                 torch.load(DATA / "main_cpu_tiny_lowrank.outputs.pt", weights_only=True))
