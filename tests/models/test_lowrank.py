"""Low-rank students: exact full-rank factors, Eckart–Young, HOSVD, rank plans, the report, checkpoints, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from detdistill.cli import main
from detdistill.models import build_detector, load_detector, read_checkpoint, save_detector
from detdistill.models.lowrank import (DEFAULT_EXCLUDE, SVDConv, SVDLinear, Tucker2Conv, apply_lowrank_spec,
                                       candidate_layers, compress_checkpoint, compress_detector, decompose_conv,
                                       decompose_svd, energy_rank, layer_flops, layer_kind, layer_params,
                                       mode_factors, plan_ranks, truncated_svd, unfolding_shapes,
                                       vbmf_rank)

TINY = {"widths": [8, 8, 16], "fpn_channels": 16, "representation_size": 32}


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_detector("cpu_tiny", 4, **TINY).eval()


def _flops(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------- exact at full rank
def test_full_rank_tucker2_reproduces_stride2_dilated_biased_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 10, (3, 5), stride=2, padding=(2, 3), dilation=2, bias=True)
    x = torch.randn(2, 6, 17, 19)
    layer = decompose_conv(conv, 6, 10)
    assert isinstance(layer, Tucker2Conv) and layer.ranks == [6, 10]
    assert layer.core.stride == (2, 2) and layer.core.dilation == (2, 2) and layer.core.padding == (2, 3)
    assert layer.first.bias is None and layer.core.bias is None and torch.equal(layer.last.bias, conv.bias)
    out = layer(x)
    assert out.shape == conv(x).shape == (2, 10, 9, 9)
    assert (out - conv(x)).abs().max() < 1e-4


def test_full_rank_svd_reproduces_box_head_linear_and_strided_1x1(model):
    fc6 = model.roi_heads.box_head.fc6  # 16·7·7 → 32
    x = torch.randn(5, fc6.in_features)
    layer = decompose_svd(fc6, 32)
    assert isinstance(layer, SVDLinear) and layer.first.bias is None
    assert (layer(x) - fc6(x)).abs().max() < 1e-4
    conv = nn.Conv2d(12, 7, 1, stride=2, padding=1, bias=True)
    xc = torch.randn(1, 12, 9, 9)
    lc = decompose_svd(conv, 7)
    assert isinstance(lc, SVDConv)
    assert (lc(xc) - conv(xc)).abs().max() < 1e-4


def test_rank_r_svd_is_the_best_rank_r_approximation():
    torch.manual_seed(2)
    w = torch.randn(20, 30)
    a, b = truncated_svd(w, 5)
    u, s, vt = np.linalg.svd(w.double().numpy(), full_matrices=False)
    best = (u[:, :5] * s[:5]) @ vt[:5]
    np.testing.assert_allclose((a @ b).double().numpy(), best, atol=1e-5)
    err2 = float(((w - a @ b) ** 2).sum())
    assert err2 == pytest.approx(float((s[5:] ** 2).sum()), rel=1e-4)
    # Eckart–Young: other rank-5 products, random or small perturbations of the optimum, do worse.
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        other = torch.randn(20, 5, generator=g) @ torch.randn(5, 30, generator=g)
        assert float(((w - other) ** 2).sum()) > err2
        near = (a + 1e-2 * torch.randn(20, 5, generator=g)) @ (b + 1e-2 * torch.randn(5, 30, generator=g))
        assert float(((w - near) ** 2).sum()) > err2
    # The layer built from it computes the same product.
    fc = nn.Linear(30, 20)
    fc.weight.data.copy_(w)
    layer = decompose_svd(fc, 5)
    np.testing.assert_allclose((layer.last.weight @ layer.first.weight).detach().double().numpy(), best, atol=1e-5)


def test_truncated_tucker2_is_the_hosvd_projection():
    torch.manual_seed(4)
    w = torch.randn(12, 9, 3, 3)
    u_out, core, u_in = mode_factors(w, 4, 5)
    # Independent: projections onto the leading left singular vectors of the two channel unfoldings.
    wn = w.double().numpy()
    uo = np.linalg.svd(wn.reshape(12, -1), full_matrices=False)[0][:, :5]
    ui = np.linalg.svd(wn.transpose(1, 0, 2, 3).reshape(9, -1), full_matrices=False)[0][:, :4]
    expected = np.einsum("ab,bchw,dc->adhw", uo @ uo.T, wn, ui @ ui.T)
    got = torch.einsum("or,rshw,is->oihw", u_out, core, u_in).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose((u_out.T @ u_out).numpy(), np.eye(5), atol=1e-5)
    conv = nn.Conv2d(9, 12, 3, padding=1, bias=False)
    conv.weight.data.copy_(w)
    layer = decompose_conv(conv, 4, 5)
    x = torch.randn(1, 9, 6, 6)
    ref = nn.functional.conv2d(x, torch.from_numpy(expected).float(), padding=1)
    assert (layer(x) - ref).abs().max() < 1e-4


# ------------------------------------------------------------------------------- sizes and ranks
def test_energy_rank_and_layer_params():
    assert energy_rank(torch.tensor([9.0, 4.0, 1.0]), 0.9) == 2  # 13/14 = 0.93
    assert energy_rank(torch.tensor([9.0, 4.0, 1.0]), 9 / 14) == 1
    assert energy_rank(torch.tensor([9.0, 4.0, 1.0]), 1.0) == 3
    conv = nn.Conv2d(6, 10, 3)
    assert layer_params(conv) == 6 * 10 * 9 + 10
    assert layer_params(conv, "tucker2", [2, 3]) == 2 * 6 + 3 * 2 * 9 + 10 * 3 + 10
    assert layer_params(conv, "tucker2", [2, 3]) == sum(p.numel() for p in decompose_conv(conv, 2, 3).parameters())
    fc = nn.Linear(40, 8, bias=False)
    assert layer_params(fc, "svd", [3]) == 3 * 48 == sum(p.numel() for p in decompose_svd(fc, 3).parameters())


def test_layer_flops_match_torch_flop_counter():
    conv = nn.Conv2d(6, 10, 3, stride=2, padding=1)
    x = torch.randn(1, 6, 16, 16)
    pos = (16 * 16, 8 * 8)
    assert layer_flops(conv, pos) == _flops(conv, x)
    assert layer_flops(conv, pos, "tucker2", [2, 3]) == _flops(decompose_conv(conv, 2, 3), x)
    fc = nn.Linear(40, 8)
    assert layer_flops(fc, (5, 5), "svd", [3]) == _flops(decompose_svd(fc, 3), torch.randn(5, 40))


def test_candidates_skip_outputs_and_grouped_convs(model):
    names = set(candidate_layers(model))
    assert "roi_heads.box_head.fc6" in names and "backbone.body.stem.0" in names and "rpn.head.conv.0.0" in names
    assert not any(n.startswith("roi_heads.box_predictor") for n in names)
    assert "rpn.head.cls_logits" not in names and "rpn.head.bbox_pred" not in names
    assert set(DEFAULT_EXCLUDE) >= {"rpn.head.cls_logits", "rpn.head.bbox_pred"}
    assert layer_kind(nn.Conv2d(8, 8, 3, groups=8)) is None
    assert layer_kind(nn.Conv2d(8, 8, 3, padding_mode="reflect")) is None
    assert layer_kind(nn.Conv2d(8, 8, 1)) == "svd" and layer_kind(nn.Conv2d(8, 8, 3)) == "tucker2"


@pytest.mark.parametrize("rank,shape,noise", [(4, (30, 80), 0.1), (7, (64, 576), 0.3), (1, (10, 10), 0.05)])
def test_vbmf_finds_the_planted_rank(rank, shape, noise):
    g = torch.Generator().manual_seed(rank)
    y = torch.randn(shape[0], rank, generator=g) @ torch.randn(rank, shape[1], generator=g)
    y = y + noise * torch.randn(*shape, generator=g)
    assert vbmf_rank(torch.linalg.svdvals(y) ** 2, shape) == rank
    assert vbmf_rank(torch.linalg.svdvals(y.T) ** 2, shape[::-1]) == rank
    assert vbmf_rank(torch.zeros(5), (5, 9)) == 1


def test_vbmf_plan_uses_each_unfolding(model):
    g = torch.Generator().manual_seed(0)
    fc7 = model.roi_heads.box_head.fc7  # 32×32: plant rank 3
    fc7.weight.data.copy_(torch.randn(32, 3, generator=g) @ torch.randn(3, 32, generator=g))
    conv = model.get_submodule("rpn.head.conv.0.0")  # 16×16×3×3: plant Tucker ranks (R_in 2, R_out 5)
    core = torch.randn(5, 2, 3, 3, generator=g)
    conv.weight.data.copy_(torch.einsum("rshw,or,is->oihw", core, torch.randn(16, 5, generator=g),
                                        torch.randn(16, 2, generator=g)))
    plan = plan_ranks(model, vbmf=True)
    assert plan["roi_heads.box_head.fc7"] == {"kind": "svd", "ranks": [3]}
    assert plan["rpn.head.conv.0.0"] == {"kind": "tucker2", "ranks": [2, 5]}
    assert unfolding_shapes(conv) == [(16, 144), (16, 144)]


def test_full_energy_leaves_every_layer_whole(model):
    # A random (full-rank) kernel at energy 1 keeps every rank: never smaller, so nothing is compressed.
    assert plan_ranks(model, energy=1.0) == {}


def test_ratio_plan_reaches_the_target_from_the_ranks(model):
    total = sum(p.numel() for p in model.parameters())
    layers = candidate_layers(model)
    for ratio in (2.0, 3.0):
        plan = plan_ranks(model, ratio=ratio)
        saved = sum(layer_params(layers[n]) - layer_params(layers[n], p["kind"], p["ranks"]) for n, p in plan.items())
        achieved = total / (total - saved)
        assert ratio <= achieved < ratio * 1.1
        for name, p in plan.items():
            assert layer_params(layers[name], p["kind"], p["ranks"]) < layer_params(layers[name])


def test_explicit_ranks_and_bad_input(model):
    plan = plan_ranks(model, ranks={"roi_heads.box_head.fc6": [4], "rpn.head.conv.0.0": {"kind": "tucker2",
                                                                                          "ranks": [3, 5]}})
    assert plan == {"roi_heads.box_head.fc6": {"kind": "svd", "ranks": [4]},
                    "rpn.head.conv.0.0": {"kind": "tucker2", "ranks": [3, 5]}}
    with pytest.raises(ValueError, match=r"r.json: layer 'roi_heads.box_head.fc66' is not a decomposable layer.*"
                                         r"did you mean roi_heads.box_head.fc6"):
        plan_ranks(model, ranks={"roi_heads.box_head.fc66": [4]}, source="r.json")
    with pytest.raises(ValueError, match=r"layer 'rpn.head.conv.0.0': tucker2 ranks must be \[R_in, R_out\], "
                                         r"got \[4\]"):
        plan_ranks(model, ranks={"rpn.head.conv.0.0": [4]})
    with pytest.raises(ValueError, match=r"svd ranks \[33\] out of range: each must be an integer in 1..\[32\]"):
        plan_ranks(model, ranks={"roi_heads.box_head.fc6": [33]})
    with pytest.raises(ValueError, match="its kind is 'svd', not 'tucker2'"):
        plan_ranks(model, ranks={"roi_heads.box_head.fc6": {"kind": "tucker2", "ranks": [4]}})
    with pytest.raises(ValueError, match=r"layer 'rpn.head.cls_logits' is kept whole by the exclude patterns"):
        plan_ranks(model, ranks={"rpn.head.cls_logits": [1]})
    assert plan_ranks(model, ranks={"rpn.head.cls_logits": [1]}, exclude=()) == {
        "rpn.head.cls_logits": {"kind": "svd", "ranks": [1]}}
    with pytest.raises(ValueError, match="ratio must be a number > 1"):
        plan_ranks(model, ratio=1.0)
    with pytest.raises(ValueError, match=r"energy must be in \(0, 1\]"):
        plan_ranks(model, energy=1.5)
    with pytest.raises(ValueError, match=r"ratio 1000.0 is out of reach: rank 1 in every compressible layer"):
        plan_ranks(model, ratio=1000.0)
    with pytest.raises(ValueError, match="exactly one of ratio, energy, ranks or vbmf"):
        plan_ranks(model, ratio=2.0, energy=0.5)


# ------------------------------------------------------------------------------- the compressed detector
def test_report_counts_equal_the_built_model(model):
    student, report = compress_detector(model, ratio=2.5)
    assert report.model_params_before == sum(p.numel() for p in model.parameters())
    assert report.model_params_after == sum(p.numel() for p in student.parameters())
    assert report.model_ratio == report.model_params_before / report.model_params_after >= 2.5
    kept = report.model_params_before - report.layer_params_before
    assert report.model_params_after == kept + report.layer_params_after
    for row in report.layers:
        layer = student.get_submodule(row.name)
        assert isinstance(layer, (Tucker2Conv, SVDConv, SVDLinear)) and layer.ranks == row.ranks
        assert row.params_after == sum(p.numel() for p in layer.parameters())
        assert row.params_before == sum(p.numel() for p in model.get_submodule(row.name).parameters())
        assert row.flops_after < row.flops_before
    assert student.detdistill_spec["lowrank"] == report.lowrank_spec()
    assert model.detdistill_spec["lowrank"] is None and isinstance(model.roi_heads.box_head.fc6, nn.Linear)
    data = report.to_dict()
    assert data["totals"]["model_params_after"] == report.model_params_after
    assert len(data["layers"]) == len(report.layers) and "whole model" in report.format_table()
    with pytest.raises(ValueError, match="already low-rank"):
        compress_detector(student, ratio=2)


def test_compressed_detector_trains_and_round_trips(model, tmp_path):
    student, report = compress_detector(model, ranks={"roi_heads.box_head.fc6": [6], "backbone.body.s8.0.0": [4, 5],
                                                      "backbone.fpn.inner_blocks.0.0": [3]})
    student.train()
    image = torch.rand(3, 96, 96)
    target = {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]), "labels": torch.tensor([2])}
    losses = student([image], [target])
    sum(losses.values()).backward()
    for name in ("roi_heads.box_head.fc6", "backbone.body.s8.0.0", "backbone.fpn.inner_blocks.0.0"):
        for p in student.get_submodule(name).parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    student.eval()
    path = save_detector(tmp_path / "s.pt", student, ["a", "b", "c"])
    assert read_checkpoint(path)["model_spec"]["lowrank"] == report.lowrank_spec()
    loaded = load_detector(path)
    assert set(loaded.state_dict()) == set(student.state_dict())
    for k, v in student.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with torch.no_grad():
        a, b = student([image])[0], loaded([image])[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_apply_spec_errors(model):
    with pytest.raises(ValueError, match="model_spec.lowrank: layer 'nope' is not a decomposable layer"):
        apply_lowrank_spec(model, {"nope": {"kind": "svd", "ranks": [2]}})
    with pytest.raises(ValueError, match="model_spec.lowrank must be an object"):
        apply_lowrank_spec(model, [1, 2])


# ------------------------------------------------------------------------------- checkpoint + CLI
def test_compress_checkpoint_and_cli(model, tmp_path, capsys):
    src = save_detector(tmp_path / "t.pt", model, ["a", "b", "c"], [5, 6, 7])
    report = compress_checkpoint(src, tmp_path / "s.pt", energy=0.5)
    ckpt = read_checkpoint(tmp_path / "s.pt")
    assert ckpt["model_spec"]["lowrank"] == report.lowrank_spec() and ckpt["category_ids"] == [5, 6, 7]
    assert ckpt["metadata"]["compression"]["model_ratio"] == report.model_ratio
    saved = json.loads((tmp_path / "s.compression.json").read_text())
    rebuilt = load_detector(tmp_path / "s.pt")
    assert saved["totals"]["model_params_after"] == sum(p.numel() for p in rebuilt.parameters())

    (tmp_path / "r.json").write_text(json.dumps({"roi_heads.box_head.fc7": [5]}))
    assert main(["compress", "--checkpoint", str(src), "--ranks", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "c.pt"), "--report", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "roi_heads.box_head.fc7 | svd | 32×32 | [5]" in out and "wrote" in out
    assert load_detector(tmp_path / "c.pt").roi_heads.box_head.fc7.ranks == [5]
    assert json.loads((tmp_path / "c.json").read_text())["layers"][0]["params_after"] == 5 * 64 + 32

    assert main(["compress", "--checkpoint", str(src), "--vbmf", "--out", str(tmp_path / "v.pt")]) == 0
    capsys.readouterr()
    assert read_checkpoint(tmp_path / "v.pt")["metadata"]["rule"] == {"vbmf": True}
    assert (tmp_path / "v.compression.json").is_file()

    (tmp_path / "bad.json").write_text("{not json")
    assert main(["compress", "--checkpoint", str(src), "--ranks", str(tmp_path / "bad.json"),
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    assert main(["compress", "--checkpoint", str(src), "--ratio", "0.5", "--out", str(tmp_path / "x.pt")]) == 2
    assert "ratio must be a number > 1" in capsys.readouterr().err
    assert main(["compress", "--checkpoint", str(tmp_path / "c.pt"), "--ratio", "2",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "c.pt: model_spec.lowrank is already set" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
