"""The quick demo end to end (three models, one schedule, the report, summary.json), run twice for the same
table; the teacher cache key; the paired statistics of ``--seeds``; the interleaved timing."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from detdistill.demo import QUICK, config_key, experiment, run_demo
from detdistill.demo.scoring import measure_images_per_s
from detdistill.demo.stats import paired_difference, t_quantile_975
from detdistill.demo.training import train_or_reuse_teacher

TIMING = {"images_per_s", "speed_up"}


def _accuracy(rows: dict) -> dict:
    return {name: {k: v for k, v in row.items() if k not in TIMING} for name, row in rows.items()}


@pytest.mark.slow
def test_quick_demo_writes_the_report_and_the_same_command_twice_gives_the_same_table(tmp_path):
    printed: list[str] = []
    out = tmp_path / "demo"
    summary = run_demo(out, quick=True, seed=0, log=printed.append)
    for name in ("index.html", "table.md", "table.csv", "summary.json", "validation_curves.png",
                 "speed_accuracy.png", "predictions.png", "losses_detection.png", "losses_distillation.png",
                 "losses_diagnostics.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    html = (out / "index.html").read_text()
    assert "What you are looking at" in html and "validation_curves.png" in html and "predictions.png" in html

    stored = json.loads((out / "summary.json").read_text())
    rows = stored["rows"]
    assert set(rows) == {"teacher", "baseline", "distilled"}
    for name, row in rows.items():
        assert row["name"] == name
        assert 0 <= row["AP"] <= row["mAP50"] <= 1 and row["images_per_s"] > 0
        assert row["steps"] == QUICK.steps and row["recipe"]
    assert rows["teacher"]["speed_up"] == pytest.approx(1.0)
    assert rows["distilled"]["speed_up"] == pytest.approx(rows["distilled"]["images_per_s"]
                                                          / rows["teacher"]["images_per_s"])
    assert stored["recipe"]["steps_per_model"] == {"teacher": QUICK.steps, "baseline": QUICK.steps,
                                                   "distilled": QUICK.steps}
    assert stored["threads"] == QUICK.threads == 1
    assert rows["teacher"]["params"] > 3 * rows["baseline"]["params"]
    assert rows["baseline"]["params"] == rows["distilled"]["params"]
    # The default recipe is whatever DistillConfig() resolves to; the demo records it instead of setting it.
    from dataclasses import asdict

    from detdistill.config import DistillConfig

    expected = asdict(DistillConfig())
    expected.update(teacher_min_map=QUICK.teacher_min_map, teacher_eval_images=QUICK.num_val)
    assert stored["distill"] == json.loads(json.dumps(expected))

    # Every model validated periodically: at least five points on each curve.
    for folder in (out / "runs" / "baseline", out / "runs" / "distilled", Path(stored["teacher_checkpoint"]).parent):
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert sum(r["kind"] == "val" for r in records) >= 5, folder

    # The printed table is the stored one, and the CSV holds the same numbers.
    assert stored["table"] in "\n".join(printed)
    with open(out / "table.csv") as fh:
        csv_rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert list(csv_rows) == ["teacher", "baseline", "distilled"]
    for name, row in rows.items():
        line = next(x for x in stored["table"].splitlines() if x.startswith(f"| {name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == f"{float(csv_rows[name]['mAP50']):.3f}" == f"{row['mAP50']:.3f}"
        assert cells[5] == f"{float(csv_rows[name]['AP']):.3f}"

    # The same command again into a new folder (the teacher reused from the cache, the students trained
    # anew): the same accuracy table. Timings are measured, so they are the one thing allowed to differ.
    printed.clear()
    again = run_demo(tmp_path / "again", quick=True, seed=0, log=printed.append, cache_dir=out / "cache")
    assert any(line.startswith("teacher: reusing") for line in printed)
    assert not any(line.startswith("students: reusing") for line in printed)
    assert _accuracy(again["rows"]) == _accuracy(summary["rows"])
    assert again["per_class"] == summary["per_class"]
    # In its own folder, the finished pair is scored again without training.
    printed.clear()
    third = run_demo(out, quick=True, seed=0, log=printed.append)
    assert any(line.startswith("students: reusing") for line in printed)
    assert not any(": training " in line for line in printed)  # "<role>: training <model> for N steps"
    assert _accuracy(third["rows"]) == _accuracy(summary["rows"])


def test_second_call_reuses_the_cached_teacher_without_training(tmp_path, monkeypatch):
    from detdistill.demo import training

    folder = training.teacher_folder(QUICK, tmp_path)
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"x")
    (folder / "summary.json").write_text(json.dumps({"steps": QUICK.steps}))  # the run folder's done marker
    monkeypatch.setattr(training, "train_teacher", lambda *a, **k: pytest.fail("retrained a cached teacher"))
    printed: list[str] = []
    assert train_or_reuse_teacher(QUICK, tmp_path, printed.append) == folder / "last.pt"
    assert printed[0].startswith("teacher: reusing")


def test_teacher_cache_key_ignores_distillation_knobs_but_not_training_ones():
    base = experiment(QUICK, "teacher", 0, Path("a"))
    other_folder = experiment(QUICK, "teacher", 0, Path("b"))
    other_folder.distill.gamma = 2.0
    other_folder.distill.adapter_init = "kaiming"
    assert config_key(other_folder) == config_key(base)
    assert config_key(experiment(QUICK.with_(steps=QUICK.steps + 1), "teacher", 0, Path("a"))) != config_key(base)
    # Two data-parallel processes of 2 images are not one process of 2 images.
    assert config_key(base, world_size=2) != config_key(base)
    # The students' thread count is not the teacher's: changing it keeps the cached teacher.
    assert config_key(experiment(QUICK.with_(threads=2), "teacher", 0, Path("a"))) == config_key(base)


def test_every_role_gets_the_same_schedule_and_the_student_its_lean_heads():
    cfgs = {role: experiment(QUICK, role, 3, Path(role)) for role in ("teacher", "baseline", "distilled")}
    assert {c.train.max_steps for c in cfgs.values()} == {QUICK.steps}
    assert {cfgs[r].train.threads for r in ("baseline", "distilled")} == {QUICK.threads}
    assert cfgs["teacher"].train.threads == 1
    # The teacher's processes share the step's images: the same images per step as every student.
    assert cfgs["teacher"].train.batch_size * QUICK.teacher_processes == cfgs["baseline"].train.batch_size
    assert {c.data.dataset_seed for c in cfgs.values()} == {0} and cfgs["baseline"].train.seed == 3
    assert cfgs["baseline"].model.overrides["rpn_post_nms_top_n_test"] < 150
    assert cfgs["teacher"].model.overrides == {}


def test_paired_difference_matches_a_hand_computed_t_interval():
    control, treated = [0.50, 0.60, 0.70, 0.62], [0.55, 0.62, 0.74, 0.61]
    diffs = [0.05, 0.02, 0.04, -0.01]
    mean = sum(diffs) / 4
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    half = 3.182 * std / math.sqrt(4)
    got = paired_difference(control, treated)
    assert got.n == 4 and got.wins == 3
    assert got.mean == pytest.approx(mean) and got.std == pytest.approx(std)
    assert (got.ci_low, got.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert math.isnan(paired_difference([0.5], [0.6]).ci_low)
    with pytest.raises(ValueError, match="equally many"):
        paired_difference([0.5, 0.6], [0.6])


def test_t_quantiles():
    assert t_quantile_975(2) == pytest.approx(4.303) and t_quantile_975(9) == pytest.approx(2.262)
    assert t_quantile_975(1000) == pytest.approx(1.96)
    values = [t_quantile_975(df) for df in range(1, 40)]
    assert values == sorted(values, reverse=True)


class _Recorder(torch.nn.Module):
    def __init__(self, name: str, calls: list) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, images):  # noqa: ANN001, ANN201
        self.calls.append((self.name, int(images[0][0, 0, 0])))
        return [{}]


def test_speed_is_measured_interleaved_image_by_image_after_a_warm_up():
    calls: list = []
    models = {n: _Recorder(n, calls) for n in ("teacher", "baseline", "distilled")}
    images = [torch.full((3, 4, 4), float(i)) for i in range(4)]
    speed = measure_images_per_s(models, images, threads=1, warmup=1)
    assert set(speed) == set(models) and all(v > 0 for v in speed.values())
    timed = calls[3:]  # one warm-up call per model first
    assert [c[1] for c in timed] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert [c[0] for c in timed[:6]] == ["teacher", "baseline", "distilled", "baseline", "distilled", "teacher"]


def test_seeds_pairs_by_seed_and_prints_the_benchmark_line(tmp_path, monkeypatch):
    import detdistill.demo as demo
    import detdistill.models as models
    from detdistill.demo.scoring import ModelRow

    maps = {0: (0.60, 0.64), 1: (0.58, 0.63), 2: (0.62, 0.65)}  # seed -> (baseline, distilled) mAP@0.5
    seen: list = []

    def fake_train_all(recipe, jobs, cache, log, skip):  # noqa: ANN001, ANN202
        seen.extend(jobs)
        return tmp_path / "teacher.pt", {job: Path(job.out_dir) / f"{job.role}-{job.seed}.pt" for job in jobs}

    def fake_score(models_, test, **kwargs):  # noqa: ANN001, ANN202
        seed = int(str(models_["baseline"]).split("-")[-1].removesuffix(".pt"))
        b, d = maps[seed]
        row = lambda name, m, ips: ModelRow(name, m, m / 2, ips, ips / 10.0, 60, "r")  # noqa: E731
        return {"teacher": row("teacher", 0.75, 10.0), "baseline": row("baseline", b, 40.0),
                "distilled": row("distilled", d, 41.0)}, {}

    monkeypatch.setattr(demo, "train_all", fake_train_all)
    monkeypatch.setattr(demo, "score_models", fake_score)
    monkeypatch.setattr(models, "load_detector", lambda path: path)
    monkeypatch.setattr(demo, "_test_split", lambda recipe: None)
    printed: list[str] = []
    result = demo.run_seeds(tmp_path, seeds=3, quick=True, log=printed.append)
    assert sorted((j.role, j.seed) for j in seen) == sorted((r, s) for s in range(3) for r in ("baseline", "distilled"))
    diff = paired_difference([0.60, 0.58, 0.62], [0.64, 0.63, 0.65])
    assert result["difference"]["mean"] == pytest.approx(diff.mean) and result["difference"]["wins"] == 3
    assert result["models"]["baseline"]["mAP50_mean"] == pytest.approx(0.60)
    assert result["models"]["distilled"]["mAP50_std"] == pytest.approx(statistics_stdev([0.64, 0.63, 0.65]))
    line = (f"[demo] student/teacher images/s = 4.10x at 85 % of the teacher's mAP@0.5; distilled - baseline = "
            f"+0.040 (95 % CI [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], 3 seeds)")
    assert result["line"] == line and line in "\n".join(printed)
    stored = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert stored["line"] == line and (tmp_path / "seeds" / "seeds.md").read_text().strip().endswith(line)
    # Resumable: scored seeds are read back, not scored again.
    monkeypatch.setattr(demo, "score_models", lambda *a, **k: pytest.fail("rescored a finished seed"))
    assert demo.run_seeds(tmp_path, seeds=3, quick=True, log=printed.append)["line"] == line
    with pytest.raises(ValueError, match="at least 2 seeds"):
        demo.run_seeds(tmp_path, seeds=1, quick=True)


def statistics_stdev(values):  # noqa: ANN001, ANN201
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@pytest.mark.parametrize("same_recipe", [True, False])
def test_seeds_reuse_the_plain_demos_pair_as_seed_0_only_when_its_recipe_matches(tmp_path, monkeypatch, same_recipe):
    import detdistill.demo as demo
    from detdistill.demo.training import student_config

    recipe = QUICK if same_recipe else QUICK.with_(steps=QUICK.steps + 1)
    (tmp_path / "summary.json").write_text(json.dumps({
        "seed": 0, "recipe_key": demo._recipe_key(recipe), "distill": student_config(recipe, "distilled", 0)}))
    for role in ("baseline", "distilled"):
        (tmp_path / "runs" / role).mkdir(parents=True)
        (tmp_path / "runs" / role / "summary.json").write_text(json.dumps({"steps": recipe.steps}))
    seen: list = []

    def stop_after_planning(recipe_, jobs, cache, log, skip):  # noqa: ANN001, ANN202
        seen.extend(jobs)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "train_all", stop_after_planning)
    with pytest.raises(KeyboardInterrupt):
        demo.run_seeds(tmp_path, seeds=2, quick=True, log=lambda line: None)
    folders = {(j.role, j.seed): Path(j.out_dir) for j in seen}
    seed0 = {role: folders[(role, 0)] for role in ("baseline", "distilled")}
    if same_recipe:
        assert seed0 == {role: tmp_path / "runs" / role for role in seed0}
    else:
        assert seed0 == {role: tmp_path / "seeds" / role / "seed0" for role in seed0}
    assert folders[("baseline", 1)] == tmp_path / "seeds" / "baseline" / "seed1"


def test_a_run_is_finished_only_when_its_summary_reached_the_recipes_steps(tmp_path):
    from detdistill.demo.training import finished_run

    assert not finished_run(tmp_path, 10)  # nothing written yet (a run that was killed before its end)
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 9}))
    assert not finished_run(tmp_path, 10)  # stopped early
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 10}))
    assert finished_run(tmp_path, 10)
    (tmp_path / "summary.json").write_text("{truncated")
    assert not finished_run(tmp_path, 10)
