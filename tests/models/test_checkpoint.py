"""Checkpoint format: contents, weights_only loading, validation errors, extra keys, low-rank hook."""

from __future__ import annotations

import pytest
import torch

from detdistill.models import (FORMAT_VERSION, build_detector, checkpoint_payload, load_detector, read_checkpoint,
                               save_detector)
from detdistill.utils import atomic_torch_save


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_detector("cpu_tiny", 4, widths=[8, 8, 16], box_detections_per_img=9)


def test_payload_contents_load_weights_only(model, tmp_path):
    path = save_detector(tmp_path / "a" / "m.pt", model, ["x", "y", "z"], [11, 12, 40], {"step": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION == 1
    assert raw["model_spec"] == {"name": "cpu_tiny", "num_classes": 4, "lowrank": None, "pretrained": False,
                                 "kwargs": {"widths": [8, 8, 16], "box_detections_per_img": 9}}
    assert raw["class_names"] == ["x", "y", "z"] and raw["category_ids"] == [11, 12, 40]
    assert raw["metadata"]["step"] == 3
    assert raw["metadata"]["input"] == {"min_size": [160], "max_size": 160, "size_divisible": 32}
    assert raw["metadata"]["versions"]["torch"] == str(torch.__version__)
    assert set(raw["state_dict"]) == set(model.state_dict())
    loaded = load_detector(path)
    assert loaded.roi_heads.detections_per_img == 9
    assert torch.equal(loaded.backbone.body.s4[0][0].weight, model.backbone.body.s4[0][0].weight)


def test_extra_keys_are_ignored(model, tmp_path):
    payload = checkpoint_payload(model, ["x", "y", "z"])
    payload["training_state"] = {"step": 7, "optimizer": {"lr": torch.tensor(0.1)}}
    atomic_torch_save(payload, tmp_path / "t.pt")
    assert read_checkpoint(tmp_path / "t.pt")["training_state"]["step"] == 7
    load_detector(tmp_path / "t.pt")


def test_read_checkpoint_errors_name_file_and_key(model, tmp_path):
    payload = checkpoint_payload(model, ["x", "y", "z"])
    for key in ("format_version", "model_spec", "state_dict", "class_names"):
        broken = {k: v for k, v in payload.items() if k != key}
        atomic_torch_save(broken, tmp_path / f"no_{key}.pt")
        with pytest.raises(ValueError, match=rf"no_{key}.pt: checkpoint has no '{key}'"):
            read_checkpoint(tmp_path / f"no_{key}.pt")
    atomic_torch_save({**payload, "format_version": 2}, tmp_path / "v2.pt")
    with pytest.raises(ValueError, match="v2.pt: format_version 2 is not supported"):
        read_checkpoint(tmp_path / "v2.pt")
    spec = dict(payload["model_spec"]); del spec["name"]
    atomic_torch_save({**payload, "model_spec": spec}, tmp_path / "noname.pt")
    with pytest.raises(ValueError, match="noname.pt: model_spec has no 'name'"):
        read_checkpoint(tmp_path / "noname.pt")
    sd = dict(payload["state_dict"]); del sd["backbone.fpn.layer_blocks.0.0.weight"]
    atomic_torch_save({**payload, "state_dict": sd}, tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="sd.pt: does not fit .* missing keys: backbone.fpn.layer_blocks.0.0.weight"):
        load_detector(tmp_path / "sd.pt")
    with pytest.raises(FileNotFoundError, match="gone.pt: checkpoint file not found"):
        load_detector(tmp_path / "gone.pt")


def test_payload_validates_names(model):
    with pytest.raises(ValueError, match="class_names has 2 names but the model has 4 classes"):
        checkpoint_payload(model, ["x", "y"])
    with pytest.raises(ValueError, match="category_ids has 2 ids for 3 class names"):
        checkpoint_payload(model, ["x", "y", "z"], [1, 2])
    with pytest.raises(ValueError, match="metadata must be JSON-able"):
        checkpoint_payload(model, ["x", "y", "z"], metadata={"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="has no detdistill_spec"):
        checkpoint_payload(torch.nn.Linear(1, 1), ["x"])


def test_lowrank_spec_goes_through_the_hook(model, tmp_path, monkeypatch):
    from detdistill.models import registry

    calls = []

    def apply_lowrank_spec(m, lowrank):
        calls.append(lowrank)
        return m

    # The factory reaches the low-rank package through the hook it registers, not by importing it (issue 22).
    monkeypatch.setitem(registry.SPEC_HOOKS, "lowrank", apply_lowrank_spec)
    payload = checkpoint_payload(model, ["x", "y", "z"])
    payload["model_spec"]["lowrank"] = {"roi_heads.box_head.fc6": [16]}
    atomic_torch_save(payload, tmp_path / "lr.pt")
    loaded = load_detector(tmp_path / "lr.pt")
    assert calls == [{"roi_heads.box_head.fc6": [16]}]
    assert loaded.detdistill_spec["lowrank"] == {"roi_heads.box_head.fc6": [16]}


def test_pretrained_flag_rebuilds_frozen_batchnorm(tmp_path):
    from torchvision.ops.misc import FrozenBatchNorm2d

    src = build_detector("cpu_tiny", 3)
    torch.save(src.backbone.body.state_dict(), tmp_path / "body.pt")
    tuned = build_detector("cpu_tiny", 3, backbone_weights=tmp_path / "body.pt")
    assert isinstance(tuned.backbone.body.stem[1], FrozenBatchNorm2d)
    path = save_detector(tmp_path / "ft.pt", tuned, ["a", "b"])
    assert isinstance(load_detector(path).backbone.body.stem[1], FrozenBatchNorm2d)
