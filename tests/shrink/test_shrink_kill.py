"""A kill at any stage of a real (tiny) search, then the same call: the bit-identical student of an
uninterrupted search. Kills are injected — an exception as a step starts, or inside a training step — rather
than signals; a run cut short resumes from its last checkpoint, a run folder moved meanwhile resumes too.

The tiny search: a cpu_tiny teacher at 64 px, two zoo candidates and the teacher's 2x low-rank compression
(lean tier), halving 3 -> 2 -> 1 over 1, 1 and 2 steps, a 3-step final run. Validation scores come from a
table by box head so that the low-rank candidate (a checkpoint-initialised student, whose adaptation
layers must be seeded) is the choice; the weights are trained for real."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import torch
from shrink_fakes import _search  # noqa: F401  (tiers: TIERS, the lean one)

from detdistill.config import ExperimentConfig
from detdistill.engine.trainer import Trainer
from detdistill.models import read_checkpoint
from detdistill.shrink import pipeline

STEPS = ("step_generate", "step_time", "step_rank", "step_distil", "step_finish", "step_report")
# Training steps before the final run: 3 runs of 1 step, then the second rung's 2 runs of 1 step are the first
# rung's (same key: reused), then 1 run of 2 steps.
RUNG_STEPS = 3 * 1 + 1 * 2


class Killed(KeyboardInterrupt):
    pass


def _config() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.num_train_images, cfg.data.num_eval_images = 6, 4
    cfg.train.batch_size, cfg.train.max_steps, cfg.train.device, cfg.train.progress = 2, 3, "cpu", False
    return cfg


def _scores(model, dataset, threads) -> dict[str, float]:  # noqa: ANN001
    fc6 = model.roi_heads.box_head.fc6
    value = {32: 0.2, 64: 0.3, 128: 0.5}[fc6.out_features] if isinstance(fc6, torch.nn.Linear) else 0.9  # low-rank: SVD
    return {"mAP50": value, "AP": value / 2}


def _run(teacher_path: Path, family, out: Path, **kwargs):  # noqa: ANN001, ANN003, ANN202
    return _search(teacher_path, _config(), out, family, candidates=3, finalists=1, budget_steps=2,
                   lowrank_ratios=(2.0,), **kwargs)


def _student(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "student.pt")["state_dict"]


@pytest.fixture(autouse=True)
def no_loss_curves(monkeypatch) -> None:  # noqa: ANN001
    """Each run's loss-curve figure is most of a tiny run's time and nothing here reads it."""
    import detdistill.reports.plots as plots

    monkeypatch.setattr(plots, "plot_training_curves", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def reference(teacher_path, tiny_family_module, tmp_path_factory):  # noqa: ANN001, ANN201
    import detdistill.reports.plots as plots

    out = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "_evaluate", _scores)
        mp.setattr(plots, "plot_training_curves", lambda *args, **kwargs: None)
        result = _run(teacher_path, tiny_family_module, out)
    assert result.chosen == "lowrank-2x-lean" and [len(r["entered"]) for r in result.rungs] == [3, 2, 1]
    return result.chosen, _student(out)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def _kill_at_training_step(n: int | None) -> Iterator[None]:
    """Raise :class:`Killed` in the ``n``-th training step from here (None: no kill)."""
    real = Trainer._train_step
    calls = {"n": 0}

    def step(self, images, targets):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed
        return real(self, images, targets)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "_train_step", step)
        yield


def test_a_kill_at_each_stage_then_the_same_call_gives_the_same_student(reference, teacher_path,  # noqa: ANN001
                                                                       tiny_family_module, tmp_path,
                                                                       monkeypatch) -> None:
    """One folder, killed once in each step (as it starts) and twice inside training (a first-rung run before
    its first checkpoint, the final run after its first); each call resumes what the one before left. The
    final run starts fresh in a call that trained nothing before it, so its student's draws before step 1
    (the adaptation layers of a checkpoint-initialised student) must not depend on the process's history."""
    kills = [("step", s) for s in STEPS[:4]] + [("train", 2), ("step", "step_finish"), ("train", 2),
                                                 ("step", "step_report")]
    monkeypatch.setattr(pipeline, "_evaluate", _scores)
    progress = []
    for kind, where in kills:
        hook = (lambda step, where=where: _raise_at(step, where)) if kind == "step" else (lambda step: None)
        with _kill_at_training_step(where if kind == "train" else None), pytest.raises(Killed):
            _run(teacher_path, tiny_family_module, tmp_path, hook=hook)
        progress.append(sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("score.json")))
    # every kill left more finished runs than the one before it, or as many (kills before any training)
    assert all(set(a) <= set(b) for a, b in zip(progress, progress[1:])) and progress[0] == []
    last = read_checkpoint(tmp_path / "final" / "distilled-seed0" / "last.pt")["training_state"]["step"]
    assert last == 3  # the final run was resumed after its kill and finished before the last kill
    result = _run(teacher_path, tiny_family_module, tmp_path)
    assert result.chosen == reference[0] and _same(_student(tmp_path), reference[1])


def _raise_at(step: str, where: str) -> None:
    if step == where:
        raise Killed


def test_a_run_resumed_from_its_checkpoint_matches_one_never_stopped(reference, teacher_path, tiny_family_module,  # noqa: ANN001
                                                                    tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "_evaluate", _scores)
    with _kill_at_training_step(RUNG_STEPS + 2), pytest.raises(Killed):
        _run(teacher_path, tiny_family_module, tmp_path)
    assert read_checkpoint(tmp_path / "final" / "distilled-seed0" / "last.pt")["training_state"]["step"] == 1
    result = _run(teacher_path, tiny_family_module, tmp_path)
    assert result.chosen == reference[0] and _same(_student(tmp_path), reference[1])


def test_a_folder_moved_after_a_kill_resumes_to_the_same_student(reference, teacher_path, tiny_family_module,  # noqa: ANN001
                                                                 tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "_evaluate", _scores)
    with _kill_at_training_step(RUNG_STEPS + 2), pytest.raises(Killed):
        _run(teacher_path, tiny_family_module, tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")  # the low-rank run's recorded init.pt path is gone
    lines: list[str] = []
    result = _run(teacher_path, tiny_family_module, tmp_path / "b", log=lines.append)
    assert not any("recomputing" in line for line in lines), lines
    assert result.chosen == reference[0] and _same(_student(tmp_path / "b"), reference[1])
