import csv
import json

import pytest

from detdistill import ablate as ablate_mod
from detdistill.config import load_config
from detdistill.models import build_detector, save_detector


@pytest.fixture
def tiny_setup(tmp_path):
    teacher = build_detector("cpu_small", 7, min_size=96, max_size=96)
    path = save_detector(tmp_path / "teacher.pt", teacher, [f"c{i}" for i in range(6)])
    cfg = load_config(None, [
        "data.num_train_images=8", "data.num_eval_images=4", "train.max_steps=2", "train.batch_size=2",
        "train.eval_every=0", "model.name=cpu_tiny", "model.overrides={min_size: 96, max_size: 96}",
        f"teacher={path}", "distill.allow_weak_teacher=true", "distill.teacher_eval_images=4"])
    return cfg, tmp_path


def test_ablation_matrix_table_csv_and_resume(tiny_setup, monkeypatch):
    cfg, tmp_path = tiny_setup
    # The synthetic class names must match the teacher's: use the real ones.
    from detdistill.data import SYNTHETIC_CLASS_NAMES

    teacher = build_detector("cpu_small", 7, min_size=96, max_size=96)
    save_detector(cfg.teacher, teacher, list(SYNTHETIC_CLASS_NAMES))
    out = tmp_path / "abl"
    table = ablate_mod.ablate(cfg, seeds=2, cells=["baseline", "all_adapt_off_matched"], out_dir=out, log=lambda m: None,
                              test_images=6)
    results = {(c, s): json.loads((out / "cells" / c / f"seed{s}" / "result.json").read_text())
               for c in ("baseline", "all_adapt_off_matched") for s in (0, 1)}
    with open(out / "ablation.csv") as fh:
        rows = {r["cell"]: r for r in csv.DictReader(fh)}
    for cell in ("baseline", "all_adapt_off_matched"):
        mean = (results[(cell, 0)]["mAP50"] + results[(cell, 1)]["mAP50"]) / 2
        val = (results[(cell, 0)]["val_mAP50"] + results[(cell, 1)]["val_mAP50"]) / 2
        assert float(rows[cell]["mAP50_mean"]) == pytest.approx(mean)
        assert float(rows[cell]["val_mAP50_mean"]) == pytest.approx(val)
        assert f"| {cell} | {val:.3f} ± " in table and f" | {mean:.3f} ± " in table
        assert results[(cell, 0)]["threads"] == 1 and rows[cell]["threads"] == "1"
        assert results[(cell, 0)]["test_images"] == 6
    # The paired difference: seed k of the cell minus seed k of the baseline.
    diffs = [results[("all_adapt_off_matched", s)]["mAP50"] - results[("baseline", s)]["mAP50"] for s in (0, 1)]
    assert float(rows["all_adapt_off_matched"]["mAP50_diff"]) == pytest.approx(sum(diffs) / 2)
    assert "torch threads 1" in table
    # The matched cells give the student the teacher's FPN width, so adaptation can be off.
    from detdistill.models import read_checkpoint

    ckpt = read_checkpoint(out / "cells" / "all_adapt_off_matched" / "seed0" / "last.pt")
    assert ckpt["model_spec"]["kwargs"]["fpn_channels"] == teacher.backbone.out_channels
    assert ckpt["metadata"]["distill"]["adaptation"] is False

    # Resumable: finished cells are not run again.
    monkeypatch.setattr("detdistill.engine.run.train_detector", lambda *a, **k: pytest.fail("re-ran a finished cell"))
    monkeypatch.setattr("detdistill.engine.run.distill_student", lambda *a, **k: pytest.fail("re-ran a finished cell"))
    assert ablate_mod.ablate(cfg, seeds=2, cells=["baseline", "all_adapt_off_matched"], out_dir=out, test_images=6,
                             log=lambda m: None) == table


def test_unknown_cell_and_missing_teacher_are_clear_errors(tiny_setup):
    cfg, tmp_path = tiny_setup
    with pytest.raises(ValueError, match=r"unknown cell\(s\) \['al'\]"):
        ablate_mod.ablate(cfg, cells=["al"], out_dir=tmp_path)
    cfg.teacher = None
    with pytest.raises(ValueError, match="needs a trained teacher"):
        ablate_mod.ablate(cfg, out_dir=tmp_path)


def test_paired_difference_and_its_t_interval_by_hand():
    # The one paired difference (detdistill.stats): treated − control, control first.
    from detdistill.stats import paired_difference, t_quantile_975

    # Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t_{0.975,2} = 4.303, half-width 4.303 * 0.1 / sqrt(3).
    d = paired_difference([0.4, 0.4, 0.4], [0.5, 0.6, 0.7])
    half = 4.303 * 0.1 / 3 ** 0.5
    assert (d.mean, d.ci_low, d.ci_high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))

    assert t_quantile_975(4) == 2.776 and t_quantile_975(100) == 1.960
    with pytest.raises(ValueError, match="equally many"):
        paired_difference([0.1, 0.2], [0.1])


def test_summary_table_pairs_by_seed_not_by_position():
    results = {"baseline": [{"seed": 1, "val_mAP50": 0.5, "mAP50": 0.4, "AP": 0.2},
                            {"seed": 0, "val_mAP50": 0.3, "mAP50": 0.2, "AP": 0.1}],
               "x": [{"seed": 0, "val_mAP50": 0.4, "mAP50": 0.3, "AP": 0.1},
                     {"seed": 1, "val_mAP50": 0.7, "mAP50": 0.6, "AP": 0.3}]}
    table, rows = ablate_mod.summarise(results, 2, 1)
    x = {r["cell"]: r for r in rows}["x"]
    assert x["val_mAP50_diff"] == pytest.approx(0.15) and x["mAP50_diff"] == pytest.approx(0.15)
    # Diffs 0.1 and 0.2: t_{0.975,1} = 12.706, sd 0.0707, half-width 12.706 * 0.0707 / sqrt(2) = 0.635.
    assert x["val_mAP50_diff_high"] - x["val_mAP50_diff"] == pytest.approx(12.706 * 0.05, rel=1e-3)
    assert "| x | 0.550 ± 0.212 | +0.150 [" in table
