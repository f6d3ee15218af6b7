"""The end-to-end demo (``make demo`` / ``detdistill demo``) on the embedded synthetic data, no download.

Three steps, one module each: :mod:`.training` trains a teacher (cached by its config), a baseline student
(no teacher) and a distilled student (``DistillConfig()``'s default recipe), every model for the same number
of steps; :mod:`.scoring` scores them side by side (test-split accuracy, interleaved batch-1 CPU images/s);
:mod:`detdistill.reports.demo_page` writes the table, ``summary.json`` and ``index.html``. ``--seeds N``
(:func:`run_seeds`) repeats the students over seeds, paired by seed, for the numbers the README reports.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.synthetic import LOOKALIKE_PAIRS
from ..reports.demo_page import format_table, gap_closed, gap_sentence, headline
from .recipe import FULL, QUICK, RECORDED_SPREAD_NOTE, ROLES, DemoRecipe
from .scoring import ModelRow, score_models
from .stats import mean_std, paired_difference
from .training import Job, config_key, experiment, finished_run, student_config, train_all, train_or_reuse_teacher
from ..errors import ConfigError

__all__ = ["FULL", "QUICK", "DemoRecipe", "ModelRow", "run_demo", "run_seeds", "clear_cache", "format_table",
           "gap_closed", "train_or_reuse_teacher", "config_key", "experiment"]

Log = Callable[[str], None]


def _recipe(quick: bool, threads: int | None, jobs: int | None) -> DemoRecipe:
    recipe = QUICK if quick else FULL
    changes = {k: v for k, v in (("threads", threads), ("jobs", jobs)) if v is not None}
    for key, value in changes.items():
        if value < 1:
            raise ConfigError(f"demo: --{key} must be >= 1, got {value}")
    return recipe.with_(**changes)


def _test_split(recipe: DemoRecipe):  # noqa: ANN202
    from ..data.synthetic import SyntheticConfig, SyntheticShapes

    return SyntheticShapes("test", num_images=recipe.num_test, seed=0, config=SyntheticConfig.preset(recipe.preset))


def _describe_recipes(recipe: DemoRecipe) -> dict[str, str]:
    return {"teacher": f"{recipe.teacher}, labels only",
            "baseline": f"{recipe.student} (lean), labels only",
            "distilled": f"{recipe.student} (lean), labels + teacher"}


def _seed_spread(out: Path, recipe: DemoRecipe) -> dict[str, Any] | None:
    """The multi-seed result of this folder (``--seeds``), when it was measured with the same recipe."""
    path = out / "seeds" / "seeds.json"
    if not path.is_file():
        return None
    seeds = json.loads(path.read_text())
    if seeds.get("recipe_key") != _recipe_key(recipe):
        return None
    return {"seeds": seeds["seeds"], "std": {k: seeds["models"][k]["mAP50_std"] for k in ("baseline", "distilled")},
            "diff_mean": seeds["difference"]["mean"], "ci": [seeds["difference"]["ci_low"],
                                                           seeds["difference"]["ci_high"]],
            "source": f"detdistill demo --seeds {seeds['seeds']}, {path.relative_to(out)}"}


def _recipe_key(recipe: DemoRecipe) -> str:
    return config_key(experiment(recipe, "baseline", 0, Path("."))) + "-" + config_key(
        experiment(recipe, "teacher", 0, Path(".")))


def run_demo(out_dir: str | Path = "reports/demo", quick: bool = False, seed: int = 0, log: Log = print,
             cache_dir: str | Path | None = None, threads: int | None = None, jobs: int | None = None,
             recipe: DemoRecipe | None = None) -> dict[str, Any]:
    """Train, score, write the report; returns ``summary.json``'s content plus the page's path."""
    from ..models import load_detector
    from ..reports.demo_page import write_csv, write_page, write_summary
    from ..utils import atomic_write_text

    recipe = recipe or _recipe(quick, threads, jobs)
    out = Path(out_dir)
    runs = out / "runs"
    cache = Path(cache_dir) if cache_dir else out / "cache"
    start = time.perf_counter()
    timings: dict[str, float] = {}

    jobs_ = [Job("baseline", seed, runs / "baseline"), Job("distilled", seed, runs / "distilled")]
    # A finished pair of this recipe and seed is scored again, not retrained (after `--seeds N` the page then
    # shows the measured spread in seconds); delete runs/ to retrain.
    reused = seed == 0 and bool(_single_run_students(out, recipe))
    if reused:
        log(f"students: reusing {runs} (same recipe and seed; delete it to retrain)")
    teacher_path, paths = train_all(recipe, jobs_, cache, log, skip=lambda job: reused)
    timings["training"] = time.perf_counter() - start
    folders = {"teacher": teacher_path.parent, "baseline": runs / "baseline", "distilled": runs / "distilled"}

    t0 = time.perf_counter()
    test = _test_split(recipe)
    models = {"teacher": load_detector(teacher_path), "baseline": load_detector(paths[jobs_[0]]),
              "distilled": load_detector(paths[jobs_[1]])}
    rows, results = score_models(models, test, steps=recipe.steps_per_model(), recipes=_describe_recipes(recipe),
                                 threads=recipe.threads, speed_images=recipe.speed_images)
    timings["scoring"] = time.perf_counter() - t0

    spread = _seed_spread(out, recipe)
    row_dicts = {name: row.as_dict() for name, row in rows.items()}
    table = format_table(row_dicts, spread)
    summary: dict[str, Any] = {
        "rows": row_dicts, "seed": seed, "threads": recipe.threads, "recipe": recipe.as_dict(),
        "recipe_key": _recipe_key(recipe),
        "quick": recipe.steps < FULL.steps, "speed_clock": "process CPU time" if recipe.threads == 1 else "wall",
        "distill": student_config(recipe, "distilled", seed),
        "gap_closed": gap_closed(*(rows[n].mAP50 for n in ROLES)),
        "teacher_margin": rows["teacher"].mAP50 - rows["baseline"].mAP50,
        "headline": headline(row_dicts), "table": table, "seed_spread": spread,
        "spread_note": None if spread else RECORDED_SPREAD_NOTE,
        "per_class": {name: res.per_class for name, res in results.items()},
        "teacher_checkpoint": str(teacher_path), "torch": torch.__version__,
    }

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    images = write_figures(out, models, test, folders, row_dicts)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    summary["seconds"] = timings
    atomic_write_text(table + "\n\n" + gap_sentence(row_dicts) + "\n", out / "table.md")
    write_csv(row_dicts, out / "table.csv")
    write_summary(summary, out / "summary.json")
    index = write_page(out, summary, images)
    log("")
    log(table)
    log("")
    log(gap_sentence(row_dicts))
    log(f"[demo, seed {seed}] {summary['headline']}")
    log(f"\nreport: {index} (total {timings['total'] / 60:.1f} min)")
    return {**summary, "index": str(index)}


def write_figures(out: Path, models: dict, test, folders: dict[str, Path],  # noqa: ANN001
                  rows: dict[str, dict]) -> dict[str, tuple[Path, str]]:
    """Every figure of the page: section title -> (path, what to look for)."""
    from ..reports import figures

    metrics = {name: folder / "metrics.jsonl" for name, folder in folders.items()}
    images: dict[str, tuple[Path, str]] = {}
    images["Validation accuracy during training"] = (
        figures.validation_curves(metrics, out / "validation_curves.png"),
        "Validation mAP@0.5 of each model as it trains (the teacher dotted, for reference). A distilled curve "
        "above the baseline's means the teacher helped at that point of the schedule.")
    images["Speed vs accuracy"] = (
        figures.speed_accuracy_scatter(list(rows.values()), out / "speed_accuracy.png"),
        "Up and to the right is better: the students sit far to the right of the teacher (faster); the "
        "distilled one should sit higher than the baseline.")
    images["Predictions on test images"] = (
        figures.prediction_grid(models, test, [0, 1, 2], out / "predictions.png"),
        "Each model's detections (class and score, score >= 0.5) on the same test images; dashed white boxes "
        "are the ground truth.")
    examples = figures.pick_lookalike_examples(models["teacher"], test, LOOKALIKE_PAIRS)
    if examples:
        images["What the teacher knows that the labels do not say"] = (
            figures.soft_label_figure(examples, test.class_names, out / "soft_labels.png"),
            "Objects the teacher classifies correctly, with its runner-up being the look-alike class: the "
            "distilled student is trained towards these whole distributions, not only the one-hot label.")
    for group, caption in (("detection", "The terms against the ground truth, for both students (a running "
                            "mean over 5 logged steps)."),
                           ("distillation", "The terms against the teacher (distilled student only)."),
                           ("diagnostics", "Total loss, gradient norm and how often the teacher bound is active.")):
        path = figures.loss_panels({k: v for k, v in metrics.items() if k != "teacher"},
                                   out / f"losses_{group}.png", group)
        if path is not None:
            images[f"Training losses: {group}"] = (path, caption)
    return images


def _single_run_students(out: Path, recipe: DemoRecipe) -> dict[str, Path]:
    """The plain demo's students in ``out/runs`` when they are this recipe's seed 0: ``--seeds`` reuses them."""
    path = out / "summary.json"
    if not path.is_file():
        return {}
    single = json.loads(path.read_text())
    if (single.get("seed") != 0 or single.get("recipe_key") != _recipe_key(recipe)
            or single.get("distill") != student_config(recipe, "distilled", 0)):
        return {}
    folders = {role: out / "runs" / role for role in ("baseline", "distilled")}
    return folders if all(finished_run(f, recipe.steps) for f in folders.values()) else {}


def clear_cache(out_dir: str | Path) -> None:
    shutil.rmtree(Path(out_dir) / "cache", ignore_errors=True)


def run_seeds(out_dir: str | Path = "reports/demo", seeds: int = 3, quick: bool = False, log: Log = print,
              cache_dir: str | Path | None = None, threads: int | None = None, jobs: int | None = None,
              recipe: DemoRecipe | None = None) -> dict[str, Any]:
    """Baseline and distilled students for seeds 0..N-1 against one cached teacher, paired by seed.

    Writes ``seeds/seeds.json`` and ``seeds/seeds.md`` and prints the ``[demo]`` line of BENCHMARKS.md.
    Resumable: a finished run (its ``summary.json`` at the recipe's steps) is not trained again, a scored seed
    (``seeds/seed<k>.json``) not scored again, and seed 0 is the plain
    demo's pair in ``out_dir/runs`` when that run used this recipe.
    """
    from ..models import load_detector
    from ..reports.demo_page import write_summary
    from ..utils import atomic_write_text

    if seeds < 2:
        raise ConfigError(f"demo: --seeds needs at least 2 seeds for a confidence interval, got {seeds}")
    recipe = recipe or _recipe(quick, threads, jobs)
    out = Path(out_dir)
    root = out / "seeds"
    cache = Path(cache_dir) if cache_dir else out / "cache"
    start = time.perf_counter()
    reused = _single_run_students(out, recipe)
    if reused:
        log(f"seed 0: reusing the demo's students in {out / 'runs'} (same recipe)")

    def folder(role: str, s: int) -> Path:
        return reused[role] if s == 0 and reused else root / role / f"seed{s}"

    jobs_ = [Job(role, s, folder(role, s)) for s in range(seeds) for role in ("baseline", "distilled")]
    teacher_path, paths = train_all(recipe, jobs_, cache, log,
                                    skip=lambda job: finished_run(job.out_dir, recipe.steps))
    test = _test_split(recipe)
    teacher = load_detector(teacher_path)
    per_seed: list[dict[str, Any]] = []
    teacher_row: dict[str, Any] | None = None
    for s in range(seeds):
        done = root / f"seed{s}.json"
        if done.is_file():
            per_seed.append(json.loads(done.read_text()))
            continue
        models = {"teacher": teacher, **{role: load_detector(paths[Job(role, s, folder(role, s))])
                                         for role in ("baseline", "distilled")}}
        rows, _ = score_models(models, test, steps=recipe.steps_per_model(), recipes=_describe_recipes(recipe),
                               threads=recipe.threads, speed_images=recipe.speed_images)
        result = {"seed": s, "rows": {k: v.as_dict() for k, v in rows.items()}}
        write_summary(result, done)
        per_seed.append(result)
        log(f"seed {s}: " + ", ".join(f"{k} {v.mAP50:.3f}" for k, v in rows.items()))
    teacher_row = per_seed[0]["rows"]["teacher"]
    models_summary: dict[str, dict[str, float]] = {}
    for role in ROLES:
        for metric in ("mAP50", "AP", "speed_up"):
            m, sd = mean_std([r["rows"][role][metric] for r in per_seed])
            models_summary.setdefault(role, {})[f"{metric}_mean"] = m
            models_summary[role][f"{metric}_std"] = sd
    diff = paired_difference([r["rows"]["baseline"]["mAP50"] for r in per_seed],
                             [r["rows"]["distilled"]["mAP50"] for r in per_seed])
    diff_ap = paired_difference([r["rows"]["baseline"]["AP"] for r in per_seed],
                                [r["rows"]["distilled"]["AP"] for r in per_seed])
    speed = models_summary["distilled"]["speed_up_mean"]
    share = models_summary["distilled"]["mAP50_mean"] / teacher_row["mAP50"]
    line = (f"[demo] student/teacher images/s = {speed:.2f}x at {share * 100:.0f} % of the teacher's mAP@0.5; "
            f"distilled - baseline = {diff.mean:+.3f} (95 % CI [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], "
            f"{seeds} seeds)")
    lines = ["| model | mAP@0.5 (mean ± std) | COCO AP (mean ± std) | speed-up vs teacher |",
             "|:---|---:|---:|---:|"]
    for role in ROLES:
        m = models_summary[role]
        lines.append(f"| {role} | {m['mAP50_mean']:.3f} ± {m['mAP50_std']:.3f} | {m['AP_mean']:.3f} ± "
                     f"{m['AP_std']:.3f} | {m['speed_up_mean']:.2f}x |")
    lines += ["", f"Paired by seed ({seeds} seeds; the teacher is one model): distilled − baseline = "
              f"{diff.mean:+.3f} mAP@0.5 (95 % CI [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], distilled ahead in "
              f"{diff.wins}/{seeds}), {diff_ap.mean:+.3f} COCO AP (95 % CI [{diff_ap.ci_low:+.3f}, "
              f"{diff_ap.ci_high:+.3f}]).", "", line]
    table = "\n".join(lines)
    summary = {"seeds": seeds, "recipe": recipe.as_dict(), "recipe_key": _recipe_key(recipe),
               "threads": recipe.threads, "distill": student_config(recipe, "distilled", 0),
               "models": models_summary, "difference": diff.as_dict(), "difference_AP": diff_ap.as_dict(),
               "per_seed": per_seed, "line": line, "table": table,
               "seconds": time.perf_counter() - start}
    write_summary(summary, root / "seeds.json")
    atomic_write_text(table + "\n", root / "seeds.md")
    log("")
    log(table)
    return summary
