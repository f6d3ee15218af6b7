"""`detdistill export`, `evaluate --model`, `predict --model` and `speed` on an artifact: thin commands over the
library; the artifact is scored through the same evaluator as its checkpoint."""

from __future__ import annotations

import json
import re

import pytest

from detdistill.cli import main

VAL = ["--data", "synthetic", "--split", "val", "--num-images", "12"]


def _metrics(out: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"^(AP\w*|mAP50)\s+([-\d.]+)", out, flags=re.M)}


def test_export_then_evaluate_and_predict_the_artifact(trained_tiny, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "student.onnx-fp32"
    assert main(["export", "--checkpoint", str(trained_tiny), "--format", "onnx", "--out", str(folder)]) == 0
    assert f"wrote {folder}/ (model.onnx, manifest.json)" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(folder), *VAL]) == 0
    artifact = _metrics(capsys.readouterr().out)
    assert main(["evaluate", "--checkpoint", str(trained_tiny), *VAL]) == 0
    eager = _metrics(capsys.readouterr().out)
    assert artifact.keys() == eager.keys() and artifact["AP50"] > 0
    assert all(abs(artifact[k] - eager[k]) <= 0.002 for k in eager)
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(folder), "--data", "synthetic", "--split", "val", "--out", str(out),
                 "--score-threshold", "0.6"]) == 0
    doc = json.loads((out / "detections.json").read_text())
    assert doc["annotations"] and all(a["score"] >= 0.6 for a in doc["annotations"])


def test_predict_refuses_knobs_fixed_at_export(onnx_dynamic, tmp_path, capsys):
    assert main(["predict", "--model", str(onnx_dynamic), "--data", "synthetic", "--split", "val",
                 "--out", str(tmp_path / "p"), "--size", "320"]) == 2
    assert "an artifact's input is fixed at export" in capsys.readouterr().err
    assert main(["predict", "--model", str(onnx_dynamic), "--data", "synthetic", "--split", "val",
                 "--out", str(tmp_path / "q"), "--nms", "0.3"]) == 2
    assert "exported with NMS IoU 0.5" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--format", "onnx", "--precision", "int8"], "ONNX artifacts are fp32"),
    (["--precision", "int8"], "int8 needs calibration images: pass --data"),
    (["--precision", "int8", "--data", "synthetic", "--calib-split", "test"], "--calib-split test: quantisation "
                                                                              "must never see the test split"),
    (["--precision", "int8", "--data", "synthetic", "--max-drop", "lots"], "--max-drop 'lots': expected a number"),
])
def test_export_refusals_are_one_line(trained_tiny, tmp_path, capsys, args, message):
    assert main(["export", "--checkpoint", str(trained_tiny), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_speed_times_the_checkpoint_beside_its_artifacts(trained_tiny, onnx_dynamic, tmp_path, capsys):
    json_out = tmp_path / "speed.json"
    assert main(["speed", "--checkpoint", str(trained_tiny), "--data", "synthetic", "--split", "val",
                 "--num-images", "4", "--variants", "--artifacts", str(onnx_dynamic), "--threads", "1",
                 "--warmup", "1", "--agree-score", "0.3", "--json-out", str(json_out)]) == 0
    out = capsys.readouterr().out
    assert "4 images, 1 thread(s)" in out
    rows = json.loads(json_out.read_text())
    assert [r["variant"] for r in rows] == ["torch fp32", "onnxruntime fp32 (onnx-fp32)"]
    assert rows[0]["speedup_vs_eager"] == 1.0
    matched, total = map(int, rows[1]["agreement"].split("/"))
    assert total > 0 and matched == total  # fp32 in another runtime keeps every confident detection
