"""The end-to-end demo (``make demo`` / ``detdistill demo``) on the embedded synthetic data, no download.

Trains a CPU-scale teacher (cached by its config), a baseline student (same recipe, no teacher) and a
distilled student (all of the paper's components at the paper's defaults); scores the three on the held-out
split; prints one table and writes a report folder (Markdown/CSV table, loss curves per term, speed-accuracy
scatter, prediction grid, the teacher's soft labels on a look-alike pair, ``index.html``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .config import ExperimentConfig, config_to_dict
from .data.synthetic import LOOKALIKE_PAIRS

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoRecipe:
    """Sizes and budgets of the demo. ``FULL`` fits ~15 minutes on 2 cores, ``QUICK`` ~3."""

    preset: str = "default"
    teacher: str = "cpu_base"
    student: str = "cpu_tiny"
    num_train: int = 1200
    num_val: int = 100
    num_test: int = 200
    teacher_steps: int = 1500
    student_steps: int = 800
    batch_size: int = 4
    lr: float = 0.02
    teacher_min_map: float = 0.3
    """Floor for the teacher check; the demo's teacher must clear it honestly (never switched off)."""
    eval_every: int = 400


FULL = DemoRecipe()
QUICK = DemoRecipe(num_train=300, num_val=40, num_test=60, teacher_steps=150, student_steps=60, batch_size=4,
                   teacher_min_map=0.05, eval_every=0)


def _experiment(recipe: DemoRecipe, model: str, steps: int, out_dir: Path, seed: int) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.source = f"synthetic:{recipe.preset}"
    cfg.data.num_train_images = recipe.num_train
    cfg.data.num_eval_images = recipe.num_val
    cfg.data.test_split = None  # scored once at the end on num_test images
    cfg.data.dataset_seed = seed
    cfg.model.name = model
    cfg.optim.lr = recipe.lr
    cfg.optim.warmup_steps = min(50, steps // 5)
    cfg.train.max_steps = steps
    cfg.train.batch_size = recipe.batch_size
    cfg.train.seed = seed
    cfg.train.eval_every = recipe.eval_every if recipe.eval_every < steps else 0
    cfg.train.checkpoint_every = max(50, steps // 4)
    cfg.train.out_dir = str(out_dir)
    cfg.distill.teacher_min_map = recipe.teacher_min_map
    cfg.distill.teacher_eval_images = recipe.num_val
    return cfg


def _config_key(cfg: ExperimentConfig) -> str:
    spec = config_to_dict(cfg)
    spec["train"].pop("out_dir")
    spec["train"].pop("progress")
    # A teacher trains without distillation, so the distill knobs must not invalidate its cache.
    spec.pop("distill")
    spec.pop("teacher")
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def train_or_reuse_teacher(recipe: DemoRecipe, cache_dir: Path, seed: int, log: Log) -> Path:
    """Train the teacher, or reuse a finished one whose config is identical (cache keyed on the config)."""
    from .engine.run import train_detector

    probe = _experiment(recipe, recipe.teacher, recipe.teacher_steps, cache_dir, seed)
    folder = cache_dir / f"teacher-{_config_key(probe)}"
    done = folder / "DONE"
    if done.is_file():
        log(f"teacher: reusing {folder} (same config)")
        return folder / "last.pt"
    log(f"teacher: training {recipe.teacher} for {recipe.teacher_steps} steps -> {folder}")
    cfg = dataclasses.replace(probe)
    cfg.train.out_dir = str(folder)
    train_detector(cfg, resume=True, log=log)
    done.write_text(json.dumps({"finished": time.time()}))
    return folder / "last.pt"


@dataclass
class DemoRow:
    name: str
    mAP50: float
    AP: float
    params: int
    gflops: float
    images_per_s: float
    speedup: float = 1.0
    size_ratio: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gap_closed(teacher: float, baseline: float, distilled: float) -> float | None:
    """Share of the teacher-baseline gap that distillation closed; None when the gap is not positive."""
    gap = teacher - baseline
    return None if gap <= 0 else (distilled - baseline) / gap


def format_table(rows: list[DemoRow], closed: float | None, margin: float) -> str:
    """The demo's table as Markdown (also what is printed)."""
    header = "| model | mAP@0.5 | COCO AP | params | GFLOPs | CPU images/s | speed-up vs teacher | size ratio |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r.name} | {r.mAP50:.3f} | {r.AP:.3f} | {r.params / 1e6:.2f} M | {r.gflops:.2f} | "
                     f"{r.images_per_s:.1f} | {r.speedup:.2f}x | {r.size_ratio:.1f}x |")
    lines.append("")
    lines.append(f"teacher - baseline margin (mAP@0.5): {margin:+.3f}")
    lines.append("share of the gap closed by distillation: " + ("n/a (no positive gap)" if closed is None
                                                                 else f"{closed * 100:.0f}%"))
    return "\n".join(lines)


def write_csv(rows: list[DemoRow], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].as_dict()))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.as_dict().items()})
    path.write_text(buf.getvalue())
    return path


def _lookalike_example(dataset, names: list[str]):  # noqa: ANN001, ANN202
    """An image holding both members of a look-alike pair (or the first pair member found)."""
    for a, b in LOOKALIKE_PAIRS:
        ia, ib = names.index(a) + 1, names.index(b) + 1
        for idx, rec in enumerate(dataset.records):
            labels = rec.labels.tolist()
            if ia in labels and ib in labels:
                return idx, [labels.index(ia), labels.index(ib)]
    return 0, [0]


def run_demo(out_dir: str | Path = "reports/demo", quick: bool = False, seed: int = 0, log: Log = print,
             cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the whole demo; returns the rows, the gap closed and the report paths."""
    from .data.synthetic import SyntheticConfig, SyntheticShapes
    from .engine.run import distill_student, train_detector
    from .eval.inference import evaluate_model
    from .models import load_detector
    from .models.describe import describe
    from .reports import figures
    from .reports.html import write_index
    from .reports.plots import plot_training_curves

    recipe = QUICK if quick else FULL
    out = Path(out_dir)
    runs = out / "runs"
    cache = Path(cache_dir) if cache_dir else out / "cache"
    start = time.perf_counter()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    teacher_path = train_or_reuse_teacher(recipe, cache, seed, log)
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"baseline: training {recipe.student} for {recipe.student_steps} steps without a teacher")
    base_cfg = _experiment(recipe, recipe.student, recipe.student_steps, runs / "baseline", seed)
    train_detector(base_cfg, log=log)
    timings["baseline"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"distilled: training {recipe.student} for {recipe.student_steps} steps with the teacher (paper defaults)")
    kd_cfg = _experiment(recipe, recipe.student, recipe.student_steps, runs / "distilled", seed)
    kd_cfg.teacher = str(teacher_path)
    distill_student(kd_cfg, log=log)
    timings["distilled"] = time.perf_counter() - t0

    # Held-out scoring and costs, side by side.
    test = SyntheticShapes("test", num_images=recipe.num_test, seed=seed, config=SyntheticConfig.preset(recipe.preset))
    models = {"teacher": load_detector(teacher_path), "baseline": load_detector(runs / "baseline" / "last.pt"),
              "distilled": load_detector(runs / "distilled" / "last.pt")}
    size = (test.config.image_size, test.config.image_size)
    rows: list[DemoRow] = []
    results = {}
    for name, model in models.items():
        result = evaluate_model(model, test, batch_size=8)
        results[name] = result
        cost = describe(model, size, threads=torch.get_num_threads(), runs=5 if quick else 20, warmup=2)
        rows.append(DemoRow(name, float(result.metrics["mAP50"]), float(result.metrics["AP"]), cost.params,
                            cost.gflops, 1000.0 / cost.latency_ms_median))
    teacher_row = rows[0]
    for r in rows:
        r.speedup = r.images_per_s / teacher_row.images_per_s
        r.size_ratio = teacher_row.params / r.params
    closed = gap_closed(rows[0].mAP50, rows[1].mAP50, rows[2].mAP50)
    margin = rows[0].mAP50 - rows[1].mAP50
    table = format_table(rows, closed, margin)

    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    write_csv(rows, out / "table.csv")
    curves = {}
    for name, folder in (("teacher", teacher_path.parent), ("baseline", runs / "baseline"),
                         ("distilled", runs / "distilled")):
        curves[name] = plot_training_curves(folder / "metrics.jsonl", out / f"loss_curves_{name}.png",
                                            title=f"{name} training")
    scatter = figures.speed_accuracy_scatter([r.as_dict() for r in rows], out / "speed_accuracy.png")
    grid = figures.prediction_grid(models, test, list(range(4)), out / "predictions.png")
    idx, which = _lookalike_example(test, test.class_names)
    target = test.get_target(idx)
    boxes, labels = target["boxes"][which], target["labels"][which]
    image = test.load_image(idx)
    probs = figures.teacher_soft_labels(models["teacher"], image, boxes, labels.tolist(), test.class_names)
    crops = [image[:, int(b[1]):int(b[3]) + 1, int(b[0]):int(b[2]) + 1] for b in boxes.tolist()]
    soft = figures.soft_label_figure(probs, crops, [test.class_names[i - 1] for i in labels.tolist()],
                                     test.class_names, out / "soft_labels.png")
    timings["total"] = time.perf_counter() - start
    summary = {"rows": [r.as_dict() for r in rows], "gap_closed": closed, "teacher_margin": margin,
               "recipe": dataclasses.asdict(recipe), "seconds": timings,
               "per_class": {name: res.per_class for name, res in results.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    index = write_index(out, table=table, images={
        "Speed vs accuracy": scatter, "Predictions (ground truth / teacher / baseline / distilled)": grid,
        "What the student learns that ground truth does not say": soft,
        **{f"Training curves: {k}": v for k, v in curves.items()}}, recipe=dataclasses.asdict(recipe),
        seconds=timings)
    log("")
    log(table)
    log(f"\nreport: {index} (total {timings['total'] / 60:.1f} min)")
    summary["index"] = str(index)
    summary["table"] = table
    return summary


def clear_cache(out_dir: str | Path) -> None:
    shutil.rmtree(Path(out_dir) / "cache", ignore_errors=True)
