"""int8 with the accuracy kept: the fallback ladder on fixed scores, and NNCF on a small trained model."""

from __future__ import annotations

import pytest

from detdistill.deploy import ArtifactError, load_artifact, read_manifest
from detdistill.deploy import quantize as q
from detdistill.deploy.export import export_artifact
from detdistill.eval.inference import evaluate_model


def _fake_ladder(monkeypatch, scores):
    """quantize_openvino returns the attempt itself; score() looks the attempt up in ``scores``."""
    monkeypatch.setattr(q, "quantize_openvino", lambda model, samples, attempt: attempt)
    monkeypatch.setattr(q, "unquantized_layers", lambda model: [p.strip(".*/") for p in model.fp32_patterns])
    return lambda model: scores["fp32"] if model == "fp32-model" else scores[model.name]


def test_the_first_attempt_within_the_drop_is_kept(monkeypatch):
    whole, asymmetric, heads = (a.name for a in q.ATTEMPTS)
    score = _fake_ladder(monkeypatch, {"fp32": 0.80, whole: 0.70, asymmetric: 0.78, heads: 0.795})
    model, record = q.quantize_with_accuracy("fp32-model", [], q.Validation(score), max_drop=0.01, log=lambda _: None)
    assert model.name == heads and model.asymmetric
    assert record["chosen"] == heads and record["val_mAP50_int8"] == 0.795
    assert [a["drop"] for a in record["attempts"]] == pytest.approx([0.10, 0.02, 0.005])
    assert record["fp32_layers"] == ["rpn/head", "roi_heads/box_head", "roi_heads/box_predictor"]


def test_the_whole_model_is_kept_when_it_is_within_the_drop(monkeypatch):
    whole = q.ATTEMPTS[0].name
    score = _fake_ladder(monkeypatch, {"fp32": 0.80, whole: 0.791})
    model, record = q.quantize_with_accuracy("fp32-model", [], q.Validation(score), max_drop=0.01, log=lambda _: None)
    assert model.name == whole and record["fp32_layers"] == [] and len(record["attempts"]) == 1


def test_no_attempt_within_the_drop_is_an_error_naming_each(monkeypatch):
    whole, asymmetric, heads = (a.name for a in q.ATTEMPTS)
    score = _fake_ladder(monkeypatch, {"fp32": 0.80, whole: 0.70, asymmetric: 0.74, heads: 0.75})
    with pytest.raises(ArtifactError, match=r"whole model in int8: drop 0\.1000; whole model in int8, asymmetric "
                                            r"activations: drop 0\.0600; heads kept in fp32 .*: drop 0\.0500"):
        q.quantize_with_accuracy("fp32-model", [], q.Validation(score), max_drop=0.01, log=lambda _: None)


def _fake_accuracy_control(monkeypatch, value, layers):
    """quantize_accuracy_control returns a named stand-in scored ``value``, with ``layers`` left in fp32."""
    calls = []

    class Restored:
        name = "restored"

    def control(model, samples, validation, max_drop, asymmetric):
        calls.append(asymmetric)
        return Restored()

    monkeypatch.setattr(q, "quantize_accuracy_control", control)
    monkeypatch.setattr(q, "unquantized_layers", lambda model: list(layers))
    return calls, value


def test_accuracy_control_is_the_last_rung_and_starts_from_the_better_whole_model_preset(monkeypatch):
    whole, asymmetric, heads = (a.name for a in q.ATTEMPTS)
    scores = {"fp32": 0.80, whole: 0.78, asymmetric: 0.77, heads: 0.775, "restored": 0.795}
    score = _fake_ladder(monkeypatch, scores)
    calls, _ = _fake_accuracy_control(monkeypatch, 0.795, ["backbone.body.0.0", "rpn.head.cls_logits"])
    validation = q.Validation(score, score_compiled=lambda compiled, indices: 0.0, num_images=10)
    model, record = q.quantize_with_accuracy("fp32-model", [], validation, max_drop=0.01, log=lambda _: None)
    assert model.name == "restored" and calls == [False]  # symmetric scored 0.78 > asymmetric 0.77
    assert record["chosen"].startswith(q.ACCURACY_CONTROL) and record["chosen"].endswith("symmetric activations")
    assert record["val_mAP50_int8"] == 0.795 and record["attempts"][-1]["drop"] == pytest.approx(0.005)
    assert record["fp32_layers"] == ["backbone.body.0.0", "rpn.head.cls_logits"]


def test_accuracy_control_out_of_reach_is_an_error_naming_all_four_rungs(monkeypatch):
    whole, asymmetric, heads = (a.name for a in q.ATTEMPTS)
    score = _fake_ladder(monkeypatch, {"fp32": 0.80, whole: 0.70, asymmetric: 0.74, heads: 0.75, "restored": 0.78})
    calls, _ = _fake_accuracy_control(monkeypatch, 0.78, [])
    validation = q.Validation(score, score_compiled=lambda compiled, indices: 0.0, num_images=10)
    with pytest.raises(ArtifactError, match=r"heads kept in fp32 .*: drop 0\.0500; accuracy control .*asymmetric "
                                            r"activations: drop 0\.0200\)"):
        q.quantize_with_accuracy("fp32-model", [], validation, max_drop=0.01, log=lambda _: None)
    assert calls == [True]  # asymmetric scored 0.74 > symmetric 0.70


def test_without_a_subset_scorer_there_is_no_accuracy_control_rung(monkeypatch):
    whole, asymmetric, heads = (a.name for a in q.ATTEMPTS)
    score = _fake_ladder(monkeypatch, {"fp32": 0.80, whole: 0.70, asymmetric: 0.74, heads: 0.75})
    calls, _ = _fake_accuracy_control(monkeypatch, 0.80, [])
    with pytest.raises(ArtifactError):
        q.quantize_with_accuracy("fp32-model", [], q.Validation(score), max_drop=0.01, log=lambda _: None)
    assert calls == []


def test_calibration_sample_is_seeded_and_in_order():
    a = q.calibration_indices(100, 10, seed=0)
    assert a == q.calibration_indices(100, 10, seed=0) == sorted(a) and len(set(a)) == 10
    assert a != q.calibration_indices(100, 10, seed=1)


def test_int8_on_a_trained_model_keeps_validation_accuracy(trained_tiny, val_set, calibration_set, tmp_path):
    pytest.importorskip("nncf", reason="nncf not installed (pip install detdistill[deploy])")
    out = export_artifact(trained_tiny, tmp_path / "int8", fmt="openvino", precision="int8", input_size=(160, 160),
                          calibration=calibration_set, calib_images=16, validation=val_set, max_drop=0.02,
                          threads=1, log=lambda _: None).folder
    m = read_manifest(out)
    assert m.precision == "int8" and m.compile_hint == "f32"  # the layers left in float run in fp32, not bf16
    assert len(m.calibration_images) == 16
    assert all(name.startswith("train_") for name in m.calibration_images)  # the training split, never test
    record = m.quantization
    assert record["checked"] and record["val_mAP50_fp32"] - record["val_mAP50_int8"] <= 0.02
    # The artifact on disk scores what the export measured, through the same evaluator.
    assert evaluate_model(load_artifact(out, threads=1), val_set).metrics["mAP50"] == pytest.approx(
        record["val_mAP50_int8"], abs=1e-9)


def test_calibration_images_that_fail_to_decode_are_all_named(trained_tiny, calibration_set, val_set, tmp_path,
                                                              monkeypatch):
    from detdistill.data.base import DatasetError

    class Broken(type(calibration_set)):
        def load_image(self, i):
            if i in (1, 3):
                raise DatasetError(f"cannot decode image {i}")
            return super().load_image(i)

    broken = Broken("train", num_images=6, seed=3)
    with pytest.raises(ArtifactError, match=r"2 calibration image\(s\) cannot be decoded: .*image 1.*image 3.*"
                                            r"nothing was written"):
        export_artifact(trained_tiny, tmp_path / "int8", precision="int8", calibration=broken, calib_images=6,
                        validation=val_set, log=lambda _: None)
    assert not (tmp_path / "int8").exists()


def test_the_layers_left_in_fp32_are_read_from_the_model_in_memory_and_saved(openvino_fixed, calibration_set,
                                                                              tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf", reason="nncf not installed (pip install detdistill[deploy])")
    model = ov.Core().read_model(str(openvino_fixed / "model.xml"))
    samples = [calibration_set.load_image(i).numpy() for i in range(8)]
    heads = q.ATTEMPTS[2]
    quantized = q.quantize_openvino(model, samples, heads)
    expected = ["rpn.head.conv.0.0", "rpn.head.cls_logits", "rpn.head.bbox_pred", "roi_heads.box_head.fc6",
                "roi_heads.box_head.fc7", "roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"]
    assert sorted(q.unquantized_layers(quantized)) == sorted(expected)  # the heads, and the backbone in int8
    ov.save_model(quantized, str(tmp_path / "heads.xml"), compress_to_fp16=False)  # weights become int8 constants
    assert sorted(q.unquantized_layers(ov.Core().read_model(str(tmp_path / "heads.xml")))) == sorted(expected)
    assert q.unquantized_layers(q.quantize_openvino(model, samples, q.ATTEMPTS[0])) == []
    assert len(q.unquantized_layers(model)) > len(expected)  # fp32: every weighted layer


def test_a_runtime_timer_scores_a_model_as_its_int8_export(trained_tiny, val_set, calibration_set, tmp_path):
    pytest.importorskip("nncf", reason="nncf not installed (pip install detdistill[deploy])")
    from detdistill.deploy.speed import RuntimeTimer
    from detdistill.models import load_detector

    timer = RuntimeTimer("openvino", "int8", "160x160")
    scored = timer.evaluate(load_detector(trained_tiny), val_set, calibration_set, threads=1)
    # The same export made by hand (the user's path: export, then evaluate the artifact) scores the same.
    out = export_artifact(trained_tiny, tmp_path / "int8", precision="int8", input_size=(160, 160),
                          calibration=calibration_set, calib_images=timer.calib_images, max_drop=None, threads=1,
                          log=lambda _: None).folder
    by_hand = evaluate_model(load_artifact(out, threads=1), val_set).metrics
    assert scored["mAP50"] == pytest.approx(by_hand["mAP50"], abs=1e-9)
    assert scored["AP"] == pytest.approx(by_hand["AP"], abs=1e-9)
    assert scored["mAP50"] != pytest.approx(evaluate_model(load_detector(trained_tiny), val_set).metrics["mAP50"],
                                            abs=1e-6)  # int8 changed the score: it was scored quantised
