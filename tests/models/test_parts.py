"""The shared parts (issue 22): one file-path rule, WeightsEnum.verify behind named weights, one backbone
loader, spec hooks, and the shape helper behind parameter and FLOP counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import MobileNet_V2_Weights, ResNet18_Weights

from detdistill.models import build_detector, build_from_spec, registry
from detdistill.models.lowrank import decompose, layer_flops, layer_params, layer_shape
from detdistill.models.parts import load_backbone_file, named_weights
from detdistill.models.weights import WeightsError, is_file_path


def test_one_file_path_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path_like in ("runs/best.pt", "a\\b", "w.pth", "w.bin", "w.ckpt", Path("cpu_small")):
        assert is_file_path(path_like), path_like
    for name in ("cpu_small", "DEFAULT", "COCO_V1", "ResNet18_Weights.IMAGENET1K_V1", None, 3):
        assert not is_file_path(name), name
    (tmp_path / "weights_without_suffix").write_bytes(b"")
    assert is_file_path("weights_without_suffix")
    (tmp_path / "a_dir").mkdir()
    assert not is_file_path("a_dir")  # a directory is not a weights file


def test_named_weights_is_torchvisions_verify_with_a_clear_error():
    assert named_weights(ResNet18_Weights, "DEFAULT", "") is ResNet18_Weights.IMAGENET1K_V1
    assert named_weights(ResNet18_Weights, ResNet18_Weights.IMAGENET1K_V1, "") is ResNet18_Weights.IMAGENET1K_V1
    with pytest.raises(ValueError, match=r"^nope: DEFAULT, IMAGENET1K_V1"):
        named_weights(ResNet18_Weights, "V9", "nope: ")
    with pytest.raises(ValueError, match="^nope: "):  # another enum's member: verify's TypeError
        named_weights(ResNet18_Weights, MobileNet_V2_Weights.DEFAULT, "nope: ")
    with pytest.raises(ValueError, match="^nope: "):
        named_weights(ResNet18_Weights, None, "nope: ")


def test_backbone_weights_name_errors_name_the_model():
    with pytest.raises(ValueError, match=r"backbone_weights 'V9' are not known for 'resnet18'; pass a local file"):
        build_detector("resnet18_fpn", 3, backbone_weights="V9")


def test_one_backbone_loader_for_both_families(tmp_path):
    body = build_detector("cpu_tiny", 3).backbone.body
    torch.save({k: v + 1 for k, v in body.state_dict().items()}, tmp_path / "body.pt")
    load_backbone_file(body, tmp_path / "body.pt", "test trunk")
    saved = torch.load(tmp_path / "body.pt", weights_only=True)
    # num_batches_tracked carries no weights and is not loaded (weights.py), the rest is.
    assert all(torch.equal(v, saved[k]) for k, v in body.state_dict().items() if not k.endswith("batches_tracked"))
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="bad.pt"):
        build_detector("cpu_tiny", 3, backbone_weights=tmp_path / "bad.pt")


def test_spec_hooks(monkeypatch):
    spec = {"name": "cpu_tiny", "num_classes": 3, "kwargs": {}, "lowrank": {"roi_heads.box_head.fc6": [4]}}
    monkeypatch.delitem(registry.SPEC_HOOKS, "lowrank")
    with pytest.raises(ValueError, match="model_spec.lowrank is set but no low-rank rebuilder is registered"):
        build_from_spec(spec)
    registry.register_spec_hook("lowrank", lambda m, _: m)
    with pytest.raises(ValueError, match="already has a hook"):
        registry.register_spec_hook("lowrank", lambda m, _: m)


@pytest.mark.parametrize("layer", [nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.Conv2d(8, 12, 3, groups=4),
                                   nn.Conv2d(8, 12, 1, bias=False), nn.Linear(40, 24)])
def test_shape_helper_counts_match_torch(layer):
    x = torch.randn(2, 8, 9, 9) if isinstance(layer, nn.Conv2d) else torch.randn(5, 40)
    assert layer_params(layer) == sum(p.numel() for p in layer.parameters())
    with torch.no_grad():
        y = layer(x)
    positions = (x.shape[0] * x[0, 0].numel(), y.shape[0] * y[0, 0].numel()) if x.dim() == 4 else (5, 5)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x)
    assert layer_flops(layer, positions) == counter.get_total_flops()
    assert layer_shape(layer).out_channels == (layer.out_channels if x.dim() == 4 else layer.out_features)
    if layer_shape(layer).groups == 1:
        kind = "tucker2" if layer_shape(layer).taps > 1 else "svd"
        ranks = [3, 4] if kind == "tucker2" else [3]
        low = decompose(layer, kind, ranks)
        assert layer_params(layer, kind, ranks) == sum(p.numel() for p in low.parameters())
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            low(x)
        assert layer_flops(layer, positions, kind, ranks) == counter.get_total_flops()
