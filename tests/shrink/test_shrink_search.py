"""The search end to end with training and scoring replaced by fakes (fast): refusal before training, resume
after an interruption, the hold-out split, and that validation (never test) chooses; one real tiny run."""

from __future__ import annotations

import json

import pytest

from shrink_fakes import TEST, FakeScores, FakeTraining, _search

from detdistill.models import load_detector
from detdistill.shrink import TargetUnreachable, pipeline

def test_unreachable_target_is_refused_before_any_training(teacher_path, tiny_config, tiny_family, tmp_path,  # noqa: ANN001
                                                           monkeypatch) -> None:
    training = FakeTraining(stop_at=1)
    monkeypatch.setattr(pipeline, "train_run", training)
    with pytest.raises(TargetUnreachable) as info:
        _search(teacher_path, tiny_config, tmp_path, tiny_family, target_speedup=1000)
    assert training.calls == []
    timing = json.loads((tmp_path / "timing.json").read_text())["rows"]
    fastest = min((k for k in timing if k != "teacher"), key=lambda k: timing[k]["median_ms"])
    assert fastest in str(info.value) and f"{timing[fastest]['median_ms']:.1f} ms" in str(info.value)
    assert (tmp_path / "candidates.csv").is_file()


def test_validation_chooses_and_test_is_scored_once_at_the_end(teacher_path, tiny_config, tiny_family, tmp_path,  # noqa: ANN001
                                                               monkeypatch) -> None:
    scores = FakeScores()
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", scores)
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, with_baseline=True)
    assert sorted(result.shortlist) == ["cpu-w025-fpn16-head32-lean", "cpu-w025-fpn16-head64-lean"]
    assert result.chosen == "cpu-w025-fpn16-head32-lean"
    assert result.final["distilled"]["mean"]["mAP50"] == TEST[32]
    assert result.final["distilled"]["split"] == "synthetic-test"
    # every test-split score comes after the last validation score of the short runs, and only for the choice
    # (distilled and baseline) and the teacher
    first_test = next(i for i, (name, _) in enumerate(scores.calls) if name.endswith("test"))
    assert all(name.endswith("val") for name, _ in scores.calls[:first_test])
    assert {head for name, head in scores.calls if name.endswith("test")} == {32, 128}
    assert sum(1 for name, head in scores.calls if name.endswith("test") and head == 32) == 2
    assert load_detector(result.checkpoint).roi_heads.box_head.fc6.out_features == 32


def test_resume_after_an_interruption_does_not_redo_finished_candidates(teacher_path, tiny_config, tiny_family,  # noqa: ANN001
                                                                        tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    first = FakeTraining(stop_at=2)  # Ctrl-C in the second candidate's run
    monkeypatch.setattr(pipeline, "train_run", first)
    with pytest.raises(KeyboardInterrupt):
        _search(teacher_path, tiny_config, tmp_path, tiny_family)
    done = first.calls[0][0]
    assert (done / "score.json").is_file() and not (first.calls[1][0] / "score.json").exists()

    def no_timing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the timing table must be reused from the run folder")

    monkeypatch.setattr(pipeline, "time_candidates", no_timing)
    second = FakeTraining()
    monkeypatch.setattr(pipeline, "train_run", second)
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family)
    trained = [folder for folder, _ in second.calls]
    assert done not in trained
    assert first.calls[1][0] in trained
    assert trained[-1].parent.name == "final"
    # a third run redoes nothing at all
    third = FakeTraining()
    monkeypatch.setattr(pipeline, "train_run", third)
    assert _search(teacher_path, tiny_config, tmp_path, tiny_family).chosen == result.chosen
    assert third.calls == []


def test_no_validation_split_holds_out_part_of_the_training_split(teacher_path, tiny_config, tiny_family,  # noqa: ANN001
                                                                  tmp_path, monkeypatch) -> None:
    seen = {}

    def training(cfg, data, distill, log) -> None:  # noqa: ANN001
        seen["train"] = {data.train.records.file_name(i) for i in range(len(data.train))}
        assert data.val is None, "a training run validates nothing: the search scores its checkpoint itself"
        FakeTraining()(cfg, data, distill, log)

    monkeypatch.setattr(pipeline, "train_run", training)
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    tiny_config.data.val_split = None
    tiny_config.data.num_train_images = 10
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, candidates=1)
    holdout = json.loads((tmp_path / "holdout.json").read_text())
    assert result.validation["holdout"] and len(holdout["holdout_images"]) == 2
    assert not set(holdout["holdout_images"]) & seen["train"] and len(seen["train"]) == 8


@pytest.mark.slow
def test_a_real_tiny_search_writes_the_page_and_the_student(teacher_path, tiny_config, tiny_family,  # noqa: ANN001
                                                            tmp_path) -> None:
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, candidates=1, report=True,
                     with_baseline=True)
    for name in ("shrink.html", "shrink.png", "candidates.csv", "summary.json", "student.pt"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chosen"] == result.chosen and summary["final_steps"] == tiny_config.train.max_steps
    assert load_detector(tmp_path / "student.pt").detdistill_spec["kwargs"]["representation_size"] in (32, 64)
    assert "baseline" in summary["final"] and (tmp_path / "final" / "baseline-seed0" / "score.json").is_file()


def test_a_validation_split_that_overlaps_training_is_replaced_by_the_hold_out(teacher_path, tiny_config,  # noqa: ANN001
                                                                              tiny_family, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    tiny_config.data.val_split = "train"  # BCCD's val is part of trainval: the same images as training
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, candidates=1)
    holdout = json.loads((tmp_path / "holdout.json").read_text())
    assert result.validation["holdout"] and "shares" in holdout["reason"]


class NoisyFinalTimer:
    """3x the teacher in the candidates' table; in the final check the student alternates 14 / 16 ms against
    a 30 ms teacher (speed-up 2.0x at the median, an interval around it); records every call's image count."""

    name = "noisy final"

    def __init__(self) -> None:
        self.images: list[int] = []

    def __call__(self, models, images, threads, warmup, progress=None):  # noqa: ANN001, ANN002, ANN204
        self.images.append(len(images))
        final = len(self.images) > 1
        out = {}
        for name in models:
            if name == "teacher":
                out[name] = [0.030] * len(images)
            else:
                out[name] = [0.014 if i % 2 else 0.016 for i in range(len(images))] if final else [0.010] * len(images)
        return out


def test_the_final_speed_check_times_every_image_in_rounds_and_says_when_the_target_is_within_noise(
        teacher_path, tiny_config, tiny_family, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from detdistill.shrink.report import headline

    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    timer = NoisyFinalTimer()
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, timer=timer, target_speedup=2.0)
    speed = result.final_speed
    assert timer.images == [2, 2 * pipeline.FINAL_SPEED_ROUNDS]  # the table once; the final check in rounds
    assert speed["rounds"] == pipeline.FINAL_SPEED_ROUNDS and speed["speed_up"] == pytest.approx(2.0)
    lo, hi = speed["speed_up_ci95"]
    assert 0.030 / 0.016 <= lo < 2.0 < hi <= 0.030 / 0.014
    assert "meets the target >= 2x the teacher's images/s, within timing noise: its 95 % CI spans" in headline(result)
