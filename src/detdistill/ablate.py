"""``detdistill ablate``: the ablation matrix (cells × seeds) sharing one teacher, with paired statistics.

The cells derive from the term registry (:mod:`detdistill.distill.terms`): ``baseline`` (no teacher), every
registered term alone (``only_<term>``), every recipe (``chen2017``, ``objects``, ...), and the paper's side
studies on ``chen2017`` (``all_T2``/``all_T4``: temperature, ``all_w0_1.0``: background weight,
``all_hint_l1``, ``all_adapter_kaiming``, ``all_adapt_on_matched``/``all_adapt_off_matched``: adaptation
layer with a student whose FPN width equals the teacher's). Every cell first resets every term switch, so a
term can only be on in a cell that names it.

Each run uses the seed for the student's initial weights and the data order, so seed k of every cell is
paired with seed k of the baseline. The runs go through the study runner (:func:`detdistill.study.run_study`:
resumable from the run folders, ``jobs`` spawned processes, the teacher scored once). Every run is scored at
its last step on the validation split (used to choose) and on the test split (reported); its row of the table
is ``cells/<cell>/seed<k>/result.json``. The table goes to ``ablation.md`` and ``ablation.csv``: per cell the
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import stats
from .config import ExperimentConfig
from .errors import ConfigError

if TYPE_CHECKING:
    from .distill.config import DistillConfig

Log = Callable[[str], None]


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
    from .engine.run import load_teacher

    return int(load_teacher(teacher_path)[0].backbone.out_channels)


def cell_config(base: ExperimentConfig, spec: Cell, fpn_channels: int | None = None) -> ExperimentConfig:
    """The config of one cell: ``base`` with the cell's terms (and, for matched cells, the teacher's FPN width)."""
    cfg = copy.deepcopy(base)
    if spec.matched:
        if fpn_channels is None:
            fpn_channels = _teacher_fpn_channels(cfg.teacher)
        cfg.model.overrides = {**cfg.model.overrides, "fpn_channels": fpn_channels}
    if spec.recipe is not None:
        spec.apply(cfg.distill)
    return cfg


def result_row(run: Any) -> dict[str, Any]:
    """A cell's row of the table from its :class:`~detdistill.study.RunResult` (test, or val without a test split)."""
    row: dict[str, Any] = {"cell": run.arm, "seed": run.seed, "threads": run.threads,
                           "val_mAP50": run.score("mAP50", "val"), "val_AP": run.score("AP", "val"),
                           "train_seconds": run.train_seconds}
    if run.test is not None:
        row.update({"mAP50": run.score("mAP50"), "AP": run.score("AP"), "test_images": run.test_images})
    else:
        row.update({"mAP50": row["val_mAP50"], "AP": row["val_AP"]})
    return row


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
                # cell − baseline, paired by seed
                d = stats.paired_difference([base[r["seed"]][metric] for r in paired], [r[metric] for r in paired])
                diff = (d.mean, d.ci_low, d.ci_high)
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
    from .study import Arm, run_study
    from .utils import atomic_write_text

    out = Path(out_dir)
    needs_width = any(available[c].matched for c in names)
    width = _teacher_fpn_channels(base.teacher) if needs_width else None  # the teacher read once, not per run
    arms = [Arm(c, config=cell_config(base, available[c], width), teacher=available[c].recipe is not None)
            for c in names]
    study = run_study(arms, seeds, out, jobs=jobs, threads=threads, test_images=test_images, log=log,
                      layout=lambda cell, seed: out / "cells" / cell / f"seed{seed}", score_teacher=False)
    results: dict[str, list[dict]] = {c: [] for c in names}
    for run in study.runs.values():
        row = result_row(run)
        atomic_write_text(json.dumps(row), Path(run.folder) / "result.json")
        results[run.arm].append(row)
    table, rows = summarise(results, seeds, threads)
    atomic_write_text(table + "\n", out / "ablation.md")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), out / "ablation.csv")
    log(table)
    return table
