"""`shrink --runtime/--precision`: the candidates and the teacher timed as they will ship, keyed by how."""

from __future__ import annotations

import json

import pytest

from shrink_fakes import FakeScores, FakeTraining, _search

from detdistill.cli import main
from detdistill.deploy.speed import RuntimeTimer
from detdistill.models import build_detector
from detdistill.shrink import pipeline


def test_runtime_timer_times_every_model_through_its_export():
    pytest.importorskip("onnxruntime")
    import torch

    models = {"a": build_detector("cpu_tiny", 3, min_size=64, max_size=64),
              "b": build_detector("cpu_tiny", 3, min_size=64, max_size=64, representation_size=16)}
    timer = RuntimeTimer("onnx", "fp32", "64x64")
    assert timer.name == "onnxruntime fp32 64x64"
    seconds = timer(models, [torch.rand(3, 64, 64) for _ in range(3)], 1, 1)
    assert sorted(seconds) == ["a", "b"] and all(len(v) == 3 and min(v) > 0 for v in seconds.values())


def test_a_search_in_another_runtime_keys_its_timing_by_it(teacher_path, tiny_config, tiny_family, tmp_path,
                                                          monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    _search(teacher_path, tiny_config, tmp_path, tiny_family, timer=RuntimeTimer("onnx", "fp32"))
    assert json.loads((tmp_path / "timing.json").read_text())["key"]["timer"] == "onnxruntime fp32 dynamic"

    def no_reuse(*args, **kwargs):
        raise RuntimeError("timed again")

    # The same folder timed another way is never reused: the eager timer's table must be measured afresh.
    monkeypatch.setattr(pipeline, "time_candidates", no_reuse)
    with pytest.raises(RuntimeError, match="timed again"):
        _search(teacher_path, tiny_config, tmp_path, tiny_family)


@pytest.mark.parametrize("args, message", [
    (["--runtime", "torch", "--precision", "int8"], "eager torch runs fp32 here"),
    (["--runtime", "onnxruntime", "--precision", "int8"], "ONNX artifacts are fp32"),
    (["--input-size", "480x640"], "--input-size applies to --runtime onnxruntime|openvino"),
])
def test_runtime_flags_that_cannot_work_are_refused_before_any_work(teacher_path, tmp_path, capsys, args, message):
    assert main(["shrink", "--teacher", str(teacher_path), "--target-speedup", "2", "--out", str(tmp_path / "s"),
                 *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
