"""The run folder is keyed by what the search depends on (fast: training and scoring are fakes).

Another teacher or other data in the same ``--out`` is refused in one line naming what differs; another budget
recomputes exactly the runs it changes; a moved folder is reused whole; a config without a test split says
"validation" wherever the final score is shown."""

from __future__ import annotations

import json
import shutil

import pytest
from shrink_fakes import FakeScores, FakeTraining, _search

from detdistill.models import build_detector, save_detector
from detdistill.data.synthetic import CLASS_NAMES
from detdistill.shrink import pipeline
from detdistill.shrink.pipeline import ShrinkError


@pytest.fixture
def fakes(monkeypatch):  # noqa: ANN001, ANN201
    training = FakeTraining()
    monkeypatch.setattr(pipeline, "train_run", training)
    monkeypatch.setattr(pipeline, "_evaluate", FakeScores())
    return training


def _retrain(monkeypatch) -> FakeTraining:  # noqa: ANN001
    training = FakeTraining()
    monkeypatch.setattr(pipeline, "train_run", training)
    return training


def test_another_teacher_in_the_same_folder_is_refused(teacher_path, tiny_config, tiny_family, tmp_path, fakes,  # noqa: ANN001
                                                       monkeypatch) -> None:
    _search(teacher_path, tiny_config, tmp_path / "s", tiny_family)
    other = tmp_path / "other.pt"  # same architecture and classes, other weights
    save_detector(other, build_detector("cpu_tiny", len(CLASS_NAMES) + 1, min_size=64, max_size=64), CLASS_NAMES)
    before = (tmp_path / "s" / "student.pt").read_bytes()
    training = _retrain(monkeypatch)
    with pytest.raises(ShrinkError, match="holds a search of another teacher") as info:
        _search(other, tiny_config, tmp_path / "s", tiny_family)
    assert "\n" not in str(info.value) and "SHA-256" in str(info.value)
    assert training.calls == [] and (tmp_path / "s" / "student.pt").read_bytes() == before


def test_other_data_in_the_same_folder_is_refused_naming_the_splits(teacher_path, tiny_config, tiny_family,  # noqa: ANN001
                                                                    tmp_path, fakes, monkeypatch) -> None:
    _search(teacher_path, tiny_config, tmp_path, tiny_family)
    tiny_config.data.dataset_seed = 1
    training = _retrain(monkeypatch)
    with pytest.raises(ShrinkError, match=r"holds a search of other data \(test, train, val differs\)"):
        _search(teacher_path, tiny_config, tmp_path, tiny_family)
    assert training.calls == []


def test_another_budget_recomputes_exactly_the_runs_it_changes(teacher_path, tiny_config, tiny_family, tmp_path,  # noqa: ANN001
                                                               fakes, monkeypatch) -> None:
    _search(teacher_path, tiny_config, tmp_path, tiny_family, budget_steps=3)
    lines: list[str] = []
    training = _retrain(monkeypatch)
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, budget_steps=2, log=lines.append)
    assert any("changed since its last run: budget_steps (3 -> 2)" in line for line in lines)
    trained = sorted(str(p.relative_to(tmp_path)) for p, _ in training.calls)
    # the two candidates at 2 steps; the final runs (same choice, same final steps) are reused
    assert trained == [f"search/2steps/{c}/seed0" for c in sorted(result.shortlist)]
    for c in result.shortlist:
        assert json.loads((tmp_path / "search" / "2steps" / c / "seed0" / "score.json").read_text())["steps"] == 2
    assert result.rungs[-1]["steps"] == 2


def test_a_changed_config_recomputes_the_runs_and_says_which_keys(teacher_path, tiny_config, tiny_family, tmp_path,  # noqa: ANN001
                                                                  fakes, monkeypatch) -> None:
    _search(teacher_path, tiny_config, tmp_path, tiny_family)
    tiny_config.optim.lr = 0.005
    lines: list[str] = []
    training = _retrain(monkeypatch)
    _search(teacher_path, tiny_config, tmp_path, tiny_family, log=lines.append)
    assert len(training.calls) == 3  # two candidates and the final run
    assert any("search/2steps/" in line and "recomputing, its inputs changed: config" in line for line in lines)


def test_a_moved_folder_is_reused_whole(teacher_path, tiny_config, tiny_family, tmp_path, fakes,  # noqa: ANN001
                                        monkeypatch) -> None:
    first = _search(teacher_path, tiny_config, tmp_path / "a", tiny_family)
    shutil.move(tmp_path / "a", tmp_path / "b")

    def no_timing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the timing table must be reused from the moved folder")

    monkeypatch.setattr(pipeline, "time_candidates", no_timing)
    lines: list[str] = []
    training = _retrain(monkeypatch)
    second = _search(teacher_path, tiny_config, tmp_path / "b", tiny_family, log=lines.append)
    assert training.calls == [] and second.chosen == first.chosen
    assert not any("changed" in line or "recomputing" in line for line in lines), lines


def test_without_a_test_split_every_output_says_validation(teacher_path, tiny_config, tiny_family, tmp_path, fakes) -> None:  # noqa: ANN001
    tiny_config.data.test_split = None
    lines: list[str] = []
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, report=True, log=lines.append)
    assert result.final_split_role == "validation" and result.final["distilled"]["split"] == "synthetic-val"
    assert "validation mAP@0.5" in lines[-1] and "test mAP" not in lines[-1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_split_role"] == "validation" and "validation mAP@0.5" in summary["headline"]
    assert "optimistic" in summary["note"]
    page = (tmp_path / "shrink.html").read_text()
    assert "scored on the validation split" in page and "on the test split" not in page
