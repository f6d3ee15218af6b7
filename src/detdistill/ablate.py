"""``detdistill ablate``: the ablation matrix (cells × seeds) sharing one teacher, with paired statistics.

The cells derive from the term registry (:mod:`detdistill.distill.terms`): ``baseline`` (no teacher), every
registered term alone (``only_<term>``), every recipe (``chen2017``, ``objects``, ...), and the paper's side
studies on ``chen2017`` (``all_T2``/``all_T4``: temperature, ``all_w0_1.0``: background weight,
``all_hint_l1``, ``all_adapter_kaiming``, ``all_adapt_on_matched``/``all_adapt_off_matched``: adaptation
layer with a student whose FPN width equals the teacher's). Every cell first resets every term switch, so a
term can only be on in a cell that names it.

Each run uses the seed for the student's initial weights and the data order, so seed k of every cell is
paired with seed k of the baseline. Every run is scored at its last step on the validation split (used to
choose) and on the test split (reported). Each finished run writes ``cells/<cell>/seed<k>/result.json``; a
re-run skips finished runs (resumable). The table goes to ``ablation.md`` and ``ablation.csv``: per cell the
mean ± std over seeds of mAP@0.5 and COCO AP on val and test, and the paired difference to the baseline
(mean and 95 % t-interval over seeds). The torch thread count is fixed (``threads``, default 1) and recorded.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .config import DistillConfig, ExperimentConfig
from . import stats
from .errors import ConfigError

Log = Callable[[str], None]


def paired_difference(values: list[float], baseline: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``values[k] − baseline[k]`` (:func:`detdistill.stats.paired_difference`)."""
    diff = stats.paired_difference(baseline, values)
    return diff.mean, diff.ci_low, diff.ci_high


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix: a recipe (None: the teacher-free baseline), extra terms switched on
    over it, flat ``DistillConfig`` knobs, and whether the student takes the teacher's FPN width."""

    name: str
    recipe: str | None
    terms: tuple[str, ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)
    matched: bool = False
    summary: str = ""

    def apply(self, distill: DistillConfig) -> None:
        """Reset every term switch, then set this cell's recipe, terms and knobs."""
        from .distill.terms import get_term, list_terms

        for spec in list_terms():
            spec.settings(distill).enabled = None
        distill.recipe = self.recipe or "none"
        for name in self.terms:
            get_term(name).settings(distill).enabled = True
        for key, value in self.knobs.items():
            setattr(distill, key, value)


def registry_cells() -> dict[str, Cell]:
    """Every cell, derived from the registered terms and recipes (see the module docstring)."""
    from .distill.terms import RECIPES, list_terms

    cells = {"baseline": Cell("baseline", None, summary="the student alone, no teacher")}
    for spec in list_terms():
        cells[f"only_{spec.name}"] = Cell(f"only_{spec.name}", "none", (spec.name,), summary=f"{spec.name} alone")
    for recipe in RECIPES.values():
        if recipe.terms:
            cells[recipe.name] = Cell(recipe.name, recipe.name, summary=f"recipe {recipe.name}")
    side = {"all_T2": {"temperature": 2.0}, "all_T4": {"temperature": 4.0}, "all_w0_1.0": {"background_weight": 1.0},
            "all_hint_l1": {"hint_kind": "l1"}, "all_adapter_kaiming": {"adapter_init": "kaiming"}}
    for name, knobs in side.items():
        cells[name] = Cell(name, "chen2017", knobs=knobs, summary=f"chen2017 with {knobs}")
    cells["all_adapt_on_matched"] = Cell("all_adapt_on_matched", "chen2017", matched=True,
                                         summary="chen2017, student at the teacher's FPN width")
    cells["all_adapt_off_matched"] = Cell("all_adapt_off_matched", "chen2017", knobs={"adaptation": False},
                                          matched=True, summary="the same without adaptation layers")
    return cells


def _teacher_fpn_channels(teacher_path: str) -> int:
    from .models import load_detector

    return int(load_detector(teacher_path).backbone.out_channels)


def _score_test(cfg: ExperimentConfig, checkpoint: Path, test_images: int | None) -> dict[str, float]:
    from .engine.run import open_datasets
    from .eval.inference import evaluate_model
    from .models import load_detector

    probe = copy.deepcopy(cfg)
    probe.data.val_split = None
    if test_images is not None and probe.data.source.startswith("synthetic"):
        probe.data.num_eval_images = test_images
    test = open_datasets(probe).test
    return dict(evaluate_model(load_detector(checkpoint), test, batch_size=8).metrics)


def run_cell(base: ExperimentConfig, cell: str | Cell, seed: int, out: Path, log: Log,
             test_images: int | None = None) -> dict[str, Any]:
    """Train one (cell, seed), score its last step on val and test; the result (cached in result.json).

    ``test_images``: synthetic data only, the test split's size (the validation split keeps
    ``data.num_eval_images``); real datasets use their whole test split.
    """
    from .engine.run import distill_student, train_detector

    spec = cell if isinstance(cell, Cell) else registry_cells()[cell]
    folder = out / "cells" / spec.name / f"seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = copy.deepcopy(base)
    cfg.train.seed = seed
    cfg.train.out_dir = str(folder)
    cfg.train.progress = False
    test_split, cfg.data.test_split = cfg.data.test_split, None  # scored below, without re-scoring the teacher
    if spec.matched:
        cfg.model.overrides = {**cfg.model.overrides, "fpn_channels": _teacher_fpn_channels(cfg.teacher)}
    if spec.recipe is None:
        summary = train_detector(cfg, log=log)
    else:
        spec.apply(cfg.distill)
        summary = distill_student(cfg, log=log)
    val = summary.last_metrics
    result: dict[str, Any] = {"cell": spec.name, "seed": seed, "threads": cfg.train.threads,
                              "val_mAP50": float(val["mAP50"]) if "mAP50" in val else None,
                              "val_AP": float(val["AP"]) if "AP" in val else None,
                              "train_seconds": summary.train_seconds}
    if test_split is not None:
        cfg.data.test_split = test_split
        test = _score_test(cfg, Path(summary.last_checkpoint), test_images)
        result.update({"mAP50": float(test["mAP50"]), "AP": float(test["AP"]), "test_images": test_images})
    else:
        result.update({"mAP50": result["val_mAP50"], "AP": result["val_AP"]})
    from .utils import atomic_write_text

    atomic_write_text(json.dumps(result), done)
    return result


def _run_job(job: tuple[ExperimentConfig, Cell, int, str, int | None]) -> dict[str, Any]:
    base, cell, seed, out, test_images = job
    import torch

    torch.set_num_threads(base.train.threads or 1)
    return run_cell(base, cell, seed, Path(out), log=lambda _msg: None, test_images=test_images)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _diff_text(diff: tuple[float, float, float]) -> str:
    mean, low, high = diff
    return f"{mean:+.3f}" if math.isnan(low) else f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def summarise(results: dict[str, list[dict[str, Any]]], seeds: int, threads: int | None) -> tuple[str, list[dict]]:
    """The Markdown table and the CSV rows of a finished matrix (the baseline row first when present)."""
    header = ("| cell | val mAP@0.5 | Δ val vs baseline [95 % CI] | test mAP@0.5 | Δ test vs baseline [95 % CI] "
              "| test COCO AP | Δ test AP [95 % CI] |")
    lines = [f"{seeds} seeds per cell (mean ± std; Δ: paired by seed, t-interval), torch threads {threads}", "",
             header, "|---|---|---|---|---|---|---|"]
    rows = []
    base = {r["seed"]: r for r in results.get("baseline", [])}
    for cell, runs in results.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        row: dict[str, Any] = {"cell": cell, "seeds": len(runs), "threads": threads}
        texts = []
        for metric, split in (("val_mAP50", "val"), ("mAP50", "test"), ("AP", "test_AP")):
            values = [r[metric] for r in runs if r.get(metric) is not None]
            row[f"{metric}_mean"] = statistics.mean(values) if values else float("nan")
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            paired = [r for r in runs if r["seed"] in base and r.get(metric) is not None]
            if base and cell != "baseline" and paired:
                diff = paired_difference([r[metric] for r in paired], [base[r["seed"]][metric] for r in paired])
                row[f"{metric}_diff"], row[f"{metric}_diff_low"], row[f"{metric}_diff_high"] = diff
                diff_text = _diff_text(diff)
            else:
                row[f"{metric}_diff"] = row[f"{metric}_diff_low"] = row[f"{metric}_diff_high"] = float("nan")
                diff_text = "—"
            texts.append((_mean_std(values) if values else "—", diff_text))
        (v, dv), (t, dt), (a, da) = texts
        lines.append(f"| {cell} | {v} | {dv} | {t} | {dt} | {a} | {da} |")
        rows.append(row)
    return "\n".join(lines), rows


def ablate(base: ExperimentConfig, seeds: int = 5, cells: list[str] | None = None, out_dir: str | Path = "runs/ablate",
           log: Log = print, jobs: int = 1, threads: int = 1, test_images: int | None = 1000) -> str:
    """Run (or resume) the matrix and write the tables; returns the Markdown table.

    ``jobs`` runs that many (cell, seed) runs at once in separate processes; ``threads`` is each run's torch
    thread count (fixed and recorded: the thread count alone moves a run's mAP). ``test_images``: the
    synthetic test split's size (default 1000: a 0.02 effect is invisible on 200 images).
    """
    if not base.teacher:
        raise ConfigError("teacher: the ablation needs a trained teacher (--teacher PATH or teacher=PATH)")
    if seeds < 1:
        raise ConfigError(f"--seeds: value {seeds} must be >= 1")
    available = registry_cells()
    names = cells or list(available)
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ConfigError(f"--cells: unknown cell(s) {unknown}; choose from {list(available)}")
    if "baseline" not in names:
        names = ["baseline", *names]  # every difference is paired with the baseline
    base = copy.deepcopy(base)
    base.train.threads = threads
    out = Path(out_dir)
    todo = [(base, available[c], s, str(out), test_images) for s in range(seeds) for c in names]
    if base.distill.teacher_cache and any(available[c].recipe is not None for c in names):
        from .engine.run import cache_teacher

        cache_teacher(copy.deepcopy(base), log=log)  # built once, with a progress bar; every cell and seed reads it
    results: dict[str, list[dict]] = {c: [] for c in names}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for result in tqdm(pool.map(_run_job, todo), total=len(todo), desc="ablation", unit="run"):
                results[result["cell"]].append(result)
    else:
        for job in tqdm(todo, desc="ablation", unit="run"):
            result = run_cell(job[0], job[1], job[2], out, log=lambda _msg: None, test_images=test_images)
            results[result["cell"]].append(result)
    table, rows = summarise(results, seeds, threads)
    from .utils import atomic_write_text

    atomic_write_text(table + "\n", out / "ablation.md")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), out / "ablation.csv")
    log(table)
    return table
