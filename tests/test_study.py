"""The study runner: resume from the run folders, pairing by seed, the one order of the paired difference
(b − a), fixed threads, validation-only scoring, refusing a folder of another config, the teacher once."""

import json
from pathlib import Path

import pytest

from detdistill.config import load_config, save_config
from detdistill.engine.folder import RunFolder
from detdistill.engine.trainer import RunSummary
from detdistill.stats import paired_difference
from detdistill.study import Arm, RunResult, StudyError, StudyResult, run_study

TINY = ["data.num_train_images=8", "data.num_eval_images=2", "train.max_steps=2", "train.batch_size=2",
        "train.eval_every=0", "model.name=cpu_tiny", "model.overrides={min_size: 96, max_size: 96}"]


def _val_score(cfg) -> float:  # noqa: ANN001 - a made-up validation score that depends on the arm and the seed
    return round(0.1 * cfg.train.seed + cfg.optim.lr, 6)


@pytest.fixture
def fake_runs(monkeypatch):
    """The one-call runs replaced by a stand-in that writes what a finished run writes (config, summary)."""
    calls: list[dict] = []

    def fake(cfg, resume=False, overwrite=False, log=print, dist=None, datasets=None):  # noqa: ANN001, ANN202
        calls.append({"folder": cfg.train.out_dir, "seed": cfg.train.seed, "threads": cfg.train.threads,
                      "resume": resume, "overwrite": overwrite, "teacher": cfg.teacher,
                      "test_split": cfg.data.test_split})
        folder = RunFolder(cfg.train.out_dir)
        folder.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, folder.config)
        summary = RunSummary(out_dir=str(folder.path), steps=cfg.train.max_steps, last_checkpoint=None,
                             best_checkpoint=None, best_metric=None, best_value=None, best_step=None,
                             last_metrics={"mAP50": _val_score(cfg)}, train_seconds=1.0)
        folder.summary.write_text(json.dumps(summary.to_dict()))
        return summary

    monkeypatch.setattr("detdistill.engine.run.train_detector", fake)
    monkeypatch.setattr("detdistill.engine.run.distill_student", fake)
    return calls


def _arms():
    base = load_config(None, TINY)
    return [Arm("base", config=base), Arm("kd", config=base, changes={"optim.lr": 0.05}, teacher=True)]


def test_a_finished_run_is_not_trained_again_and_an_unfinished_one_resumes(tmp_path, fake_runs):
    first = run_study(_arms(), 2, tmp_path, teacher="t.pt", score_test=False, score_teacher=False,
                      progress=False, log=lambda m: None)
    assert sorted((Path(c["folder"]).parent.name, c["seed"]) for c in fake_runs) == [
        ("base", 0), ("base", 1), ("kd", 0), ("kd", 1)]
    # A fresh folder is started as a resumable run (nothing to resume yet); only the distilled arm gets the teacher.
    assert all(c["resume"] and not c["overwrite"] for c in fake_runs)
    assert {c["teacher"] for c in fake_runs if "kd" in c["folder"]} == {"t.pt"}
    assert {c["teacher"] for c in fake_runs if "base" in c["folder"]} == {None}
    fake_runs.clear()
    again = run_study(_arms(), 2, tmp_path, teacher="t.pt", score_test=False, score_teacher=False,
                      progress=False, log=lambda m: None)
    assert fake_runs == []  # every run finished: nothing retrained, the scores read back
    assert {k: r.val for k, r in again.runs.items()} == {k: r.val for k, r in first.runs.items()}
    # A run without its done marker (killed before the end) is the only one trained again, resuming.
    (tmp_path / "kd" / "seed1" / "summary.json").unlink()
    run_study(_arms(), 2, tmp_path, teacher="t.pt", score_test=False, score_teacher=False, progress=False,
              log=lambda m: None)
    assert [(Path(c["folder"]).parent.name, c["seed"], c["resume"]) for c in fake_runs] == [("kd", 1, True)]


def test_every_run_gets_its_seed_and_the_fixed_thread_count(tmp_path, fake_runs):
    result = run_study(_arms(), [3, 5], tmp_path, threads=2, teacher="t.pt", score_test=False,
                       score_teacher=False, progress=False, log=lambda m: None)
    assert sorted(c["seed"] for c in fake_runs) == [3, 3, 5, 5] and {c["threads"] for c in fake_runs} == {2}
    assert result.threads == 2 and {r.threads for r in result.runs.values()} == {2}
    assert result.runs[("kd", 5)].val["mAP50"] == pytest.approx(0.5 + 0.05)
    assert Path(result.runs[("kd", 5)].folder) == tmp_path / "kd" / "seed5"
    # The run's own test scoring is off: the study scores the test split (or, here, not at all).
    assert {c["test_split"] for c in fake_runs} == {None}
    assert all(r.test is None for r in result.runs.values())
    assert result.best(split="val") == "kd"
    stored = json.loads((tmp_path / "study.json").read_text())
    assert stored["threads"] == 2 and len(stored["runs"]) == 4


def test_validation_only_never_opens_the_test_split(tmp_path, fake_runs, monkeypatch):
    monkeypatch.setattr("detdistill.study._score_test", lambda *a, **k: pytest.fail("scored the test split"))
    result = run_study(_arms(), 1, tmp_path, teacher="t.pt", score_test=False, score_teacher=False,
                       progress=False, log=lambda m: None)
    assert result.runs[("base", 0)].test is None and result.runs[("base", 0)].val


def test_a_folder_holding_another_configs_run_is_refused_unless_overwrite(tmp_path, fake_runs):
    run_study(_arms()[:1], 1, tmp_path, score_test=False, progress=False, log=lambda m: None)
    other = [Arm("base", config=load_config(None, TINY + ["optim.lr=0.3"]))]
    with pytest.raises(StudyError, match=r"seed0: holds a run of another config \(optim.lr\)"):
        run_study(other, 1, tmp_path, score_test=False, progress=False, log=lambda m: None)
    fake_runs.clear()
    result = run_study(other, 1, tmp_path, score_test=False, progress=False, overwrite=True, log=lambda m: None)
    assert [(c["resume"], c["overwrite"]) for c in fake_runs] == [(False, True)]
    assert result.runs[("base", 0)].val["mAP50"] == pytest.approx(0.3)


def _result(values: dict[str, dict[int, float]]) -> StudyResult:
    runs = {}
    for arm, by_seed in values.items():
        for seed, value in by_seed.items():
            runs[(arm, seed)] = RunResult(arm, seed, f"{arm}/{seed}", 1, 2, 0.0, val={"mAP50": value},
                                          test={"mAP50": value + 0.01})
    return StudyResult(arms=list(values), seeds=sorted({s for v in values.values() for s in v}), threads=1,
                       runs=runs)


def test_paired_is_b_minus_a_by_seed_not_by_position():
    # Seeds inserted out of order, and seed 2 missing from the treatment: pairs are (0, 0) and (1, 1).
    result = _result({"base": {1: 0.50, 0: 0.30, 2: 0.90}, "kd": {0: 0.40, 1: 0.70}})
    diff = result.paired("base", "kd", split="val")
    assert diff.n == 2 and diff.mean == pytest.approx((0.10 + 0.20) / 2) and diff.wins == 2
    assert diff == paired_difference([0.30, 0.50], [0.40, 0.70])  # control first, treated − control
    assert result.paired("kd", "base", split="val").mean == pytest.approx(-diff.mean)
    assert result.paired("base", "kd").mean == pytest.approx(diff.mean)  # the test split by default
    # Differences 0.1 and 0.2: t_{0.975,1} = 12.706, half-width 12.706 * sd / sqrt(2) = 12.706 * 0.05.
    assert diff.ci_high - diff.mean == pytest.approx(12.706 * 0.05, rel=1e-3)
    with pytest.raises(StudyError, match="no seed has AP"):
        result.paired("base", "kd", metric="AP")


def test_arm_names_must_be_unique_and_changes_must_name_real_keys(tmp_path):
    base = load_config(None, TINY)
    with pytest.raises(StudyError, match="names repeat"):
        run_study([Arm("a", config=base), Arm("a", config=base)], 1, tmp_path, log=lambda m: None)
    with pytest.raises(StudyError, match="unknown config key 'optim.lrr'"):
        Arm("a", config=base, changes={"optim.lrr": 1.0}).build(None)
    with pytest.raises(StudyError, match="distils, but the study has no teacher"):
        run_study([Arm("kd", config=base, teacher=True)], 1, tmp_path, log=lambda m: None)


def test_the_teacher_is_read_and_scored_once_per_study_folder(tmp_path, fake_runs, monkeypatch):
    from detdistill.data import SYNTHETIC_CLASS_NAMES
    from detdistill.engine import run as engine_run
    from detdistill.models import build_detector, save_detector

    teacher = save_detector(tmp_path / "teacher.pt", build_detector("cpu_tiny", 7, min_size=96, max_size=96),
                            list(SYNTHETIC_CLASS_NAMES))
    reads: list = []
    real = engine_run.load_teacher
    monkeypatch.setattr(engine_run, "load_teacher", lambda path: reads.append(path) or real(path))
    arms = [Arm("base", config=load_config(None, TINY)),
            Arm("kd", config=load_config(None, TINY + ["data.test_split=test"]), teacher=True)]
    result = run_study(arms, 2, tmp_path / "study", teacher=teacher, score_test=False, progress=False,
                       log=lambda m: None)
    assert reads == [str(teacher)]  # two distilled runs, one teacher scoring
    assert 0 <= result.teacher["val"]["mAP50"] <= 1 and result.teacher["test"] is None
    again = run_study(arms, 2, tmp_path / "study", teacher=teacher, score_test=False, progress=False,
                      log=lambda m: None)
    assert reads == [str(teacher)] and again.teacher["val"] == result.teacher["val"]


def test_choose_on_validation_then_score_only_the_chosen_arm_on_test(tmp_path, fake_runs, monkeypatch):
    scored: list[str] = []

    def fake_test(job, checkpoint):  # noqa: ANN001, ANN202
        scored.append(job.arm)
        return {"mAP50": 0.25, "AP": 0.1}, {"circle": 0.3}

    monkeypatch.setattr("detdistill.study._score_test", fake_test)
    arms = [Arm("small", config=load_config(None, TINY + ["data.test_split=test"])),
            Arm("wide", config=load_config(None, TINY + ["data.test_split=test", "optim.lr=0.04"]))]
    search = run_study(arms, 2, tmp_path, score_test=False, progress=False, log=lambda m: None)
    assert scored == [] and search.best() == "wide"
    trained = len(fake_runs)
    report = run_study(arms, 2, tmp_path, runs=[("wide", 0), ("wide", 1)], progress=False, log=lambda m: None)
    assert len(fake_runs) == trained and scored == ["wide", "wide"]  # scored, not retrained
    assert set(report.runs) == {("wide", 0), ("wide", 1)}
    assert report.runs[("wide", 1)].test == {"mAP50": 0.25, "AP": 0.1}
    assert report.runs[("wide", 1)].test_per_class == {"circle": 0.3}


def first_images(cfg, train=4, evaluate=1):  # noqa: ANN001, ANN201 - a dataset factory: subsets no config names
    from detdistill.engine.run import open_datasets

    data = open_datasets(cfg)
    data.train.records = data.train.records[:train]
    for split in (data.val, data.test):
        if split is not None:
            split.records = split.records[:evaluate]
    return data


def test_an_arms_datasets_come_from_its_factory_in_training_and_test_scoring(tmp_path, monkeypatch):
    from functools import partial

    import detdistill.eval.inference as inference
    from detdistill.models import read_checkpoint

    scored = []
    real = inference.evaluate_model
    monkeypatch.setattr(inference, "evaluate_model", lambda model, data, **k: scored.append(len(data)) or real(
        model, data, **k))
    cfg = load_config(None, TINY + ["data.test_split=test", "train.progress=false"])
    arms = [Arm("subset", config=cfg, datasets=partial(first_images, train=3, evaluate=1))]
    result = run_study(arms, [0], tmp_path, score_teacher=False, progress=False, log=lambda m: None)
    run = result.runs[("subset", 0)]
    assert read_checkpoint(Path(run.folder) / "last.pt")["metadata"]["dataset"]["images"] == 3  # not TINY's 8
    assert run.test is not None and scored and set(scored) == {1}  # validation and test: the factory's 1 image
