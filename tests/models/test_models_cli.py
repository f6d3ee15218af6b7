"""`detdistill models`, `export`, `weights fetch`: thin commands over the library."""

from __future__ import annotations

import torch

from detdistill.cli import main
from detdistill.models import build_detector, save_detector
from detdistill.models import weights as W


def test_models_prints_the_table(capsys):
    assert main(["models", "--names", "cpu_tiny", "--runs", "1", "--image-size", "96"]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in build_detector("cpu_tiny", 7).parameters())
    assert f"| cpu_tiny | {params / 1e6:.2f} M |" in out and "raw input 96×96" in out


def test_models_list_and_bad_name(capsys):
    assert main(["models", "--list"]) == 0
    assert "mobilenet_v2_fpn" in capsys.readouterr().out
    assert main(["models", "--names", "cpu_huge"]) == 2
    assert "model name 'cpu_huge' is not registered" in capsys.readouterr().err


def test_export_onnx_and_missing_checkpoint(tmp_path, capsys):
    ckpt = save_detector(tmp_path / "m.pt", build_detector("cpu_tiny", 3, min_size=64, max_size=64), ["a", "b"])
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx"]) == 0
    # An artifact folder beside the checkpoint, named by format and precision (tests/deploy checks its contents).
    assert (tmp_path / "m.onnx-fp32" / "model.onnx").stat().st_size > 0
    assert f"wrote {tmp_path / 'm.onnx-fp32'}/ (model.onnx, manifest.json)" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(tmp_path / "no.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"detdistill export: error: {tmp_path / 'no.pt'}: checkpoint file not found"


def test_weights_fetch_reports_the_cached_path(tmp_path, monkeypatch, capsys):
    cached = tmp_path / W.IMAGENET_MOBILENET_V2_FILE
    torch.save({"w": torch.ones(1)}, cached)
    monkeypatch.setattr(W.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no pip")))
    assert main(["weights", "fetch", "--cache-dir", str(tmp_path)]) == 0
    assert str(cached) in capsys.readouterr().out
