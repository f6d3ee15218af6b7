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
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, timer=RuntimeTimer("onnx", "fp32"))
    assert json.loads((tmp_path / "timing.json").read_text())["key"]["timer"] == "onnxruntime fp32 dynamic"
    # The trained student's speed: in the runtime, and against the teacher in torch fp32, in one interleaved run.
    speed = result.final_speed
    assert speed["speed_up_over_teacher_torch_fp32"] == pytest.approx(speed["teacher_torch_fp32_ms"]
                                                                      / speed["student_ms"])
    from detdistill.shrink.report import headline

    assert f"in onnxruntime fp32 dynamic ({speed['speed_up_over_teacher_torch_fp32']:.2f}x the teacher in torch fp32)" \
        in headline(result)

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


class QuantisedTimer:
    """An int8 runtime whose scores reverse the eager ones (32-wide head: 0.1 exported, 0.6 eager), timing every
    model with the eager timer; records what it scored and on which calibration split."""

    name = "fake int8"
    scores_exported = True
    SCORES = {32: 0.1, 64: 0.7, 128: 0.5}

    def __init__(self) -> None:
        self.scored: list[tuple[str, str, int]] = []

    def __call__(self, models, images, threads, warmup, progress=None):  # noqa: ANN001, ANN204
        from detdistill.shrink.timing import cpu_timer

        return cpu_timer(models, images, threads, warmup, progress)

    def evaluate(self, model, dataset, calibration, threads):  # noqa: ANN001, ANN201
        head = int(model.roi_heads.box_head.fc6.out_features)
        self.scored.append((dataset.name, calibration.name, head))
        return {"mAP50": self.SCORES[head], "AP": self.SCORES[head] / 2}


def test_an_int8_search_ranks_candidates_by_their_quantised_validation_score(teacher_path, tiny_config, tiny_family,
                                                                             tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    timer = QuantisedTimer()
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, timer=timer)
    # Eager validation prefers the 32-wide head (0.6 vs 0.4); quantised, the 64-wide one (0.7 vs 0.1) wins.
    assert "head64" in result.chosen and "head32" not in result.chosen
    # Every candidate scored on validation, the chosen one's final runs on test; all calibrated on training images.
    assert sorted(set(timer.scored)) == [("synthetic-test", "synthetic-train", 64),
                                         ("synthetic-val", "synthetic-train", 32),
                                         ("synthetic-val", "synthetic-train", 64)]
    assert result.scored_as == "fake int8"
    from detdistill.shrink.report import write_report

    assert "as it ships (fake int8)" in write_report(result).read_text()
    runs = sorted((tmp_path / "search").glob("*/*/seed*/score.json"))
    assert runs
    for path in runs:
        score = json.loads(path.read_text())
        assert score["scored_as"] == "fake int8" and "mAP50" in score["metrics_torch_fp32"]
        assert json.loads((path.parent / "key.json").read_text())["scored_as"] == "fake int8"


def test_an_eager_search_keys_its_runs_as_before(teacher_path, tiny_config, tiny_family, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    _search(teacher_path, tiny_config, tmp_path, tiny_family)
    for path in (tmp_path / "search").glob("*/*/seed*/key.json"):
        assert "scored_as" not in json.loads(path.read_text())


@pytest.mark.parametrize("exported, verdict", [
    (None, "meets the target at validation mAP@0.5"),  # exported = the fp32 score: nothing lost
    (-0.2, "meets the speed target but loses 0.200"),
])
def test_a_fast_quantised_teacher_is_enough_only_when_its_validation_score_holds(teacher_path, tiny_config, tmp_path,
                                                                                monkeypatch, capsys, exported,
                                                                                verdict):
    import argparse
    from types import SimpleNamespace

    from detdistill import cli
    from detdistill.deploy import speed

    rows = [SimpleNamespace(speedup_vs_eager=1.0, median_ms=30.0), SimpleNamespace(speedup_vs_eager=3.0, median_ms=10.0)]
    monkeypatch.setattr(speed, "runtime_table", lambda *a, **k: rows)
    fp32 = {}

    class Timer(QuantisedTimer):
        fmt, precision, input_size = "openvino", "int8", None

        def evaluate(self, model, dataset, calibration, threads):  # noqa: ANN001, ANN201
            from detdistill.eval.inference import evaluate_model

            fp32["mAP50"] = evaluate_model(model, dataset, progress=False).metrics["mAP50"]
            assert calibration.name.endswith("train") and dataset.name.endswith("val")
            return {"mAP50": fp32["mAP50"] + (exported or 0.0)}

    args = argparse.Namespace(teacher=teacher_path, timing_images=2, threads=1, target_speedup=2.0, target_ms=None,
                              out=tmp_path / "s")
    cli._teacher_alone(args, tiny_config, Timer())
    line = capsys.readouterr().out
    assert "3.00x its torch fp32 images/s" in line and verdict in line
    assert ("no student is needed" in line) == (exported is None)
    record = json.loads((tmp_path / "s" / "teacher_alone.json").read_text())
    assert record["meets_target"] and record["val_mAP50_torch_fp32"] == pytest.approx(fp32["mAP50"])
