"""``detdistill ablate``: the paper-style ablation matrix (configurations × seeds) sharing one teacher.

Cells: the baseline (no teacher); each component alone (soft cross-entropy on RPN+RCN, bounded regression,
hint); all together; and the paper's side studies (T = 2 and 4 against T = 1, background weight 1.0 against
1.5, L1 against L2 hint, a randomly initialised adapter against the zero-initialised default, adaptation
layer off against on). Turning the adaptation layer off needs equal channel counts, so that pair of cells
uses a student whose FPN width equals the teacher's (``*_matched``).

Each finished cell writes ``cells/<cell>/seed<k>/result.json``; a re-run skips finished cells (resumable).
The table (mean ± std over seeds of mAP@0.5 and COCO AP on the test split) goes to ``ablation.md`` and
``ablation.csv``.
"""

from __future__ import annotations

import copy
import csv
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .config import ExperimentConfig

Log = Callable[[str], None]
OFF = {"rpn_soft": False, "rcn_soft": False, "rpn_bounded": False, "rcn_bounded": False, "hint": False}

# name -> (distill overrides or None for the teacher-free baseline, student needs the teacher's FPN width)
CELLS: dict[str, tuple[dict[str, Any] | None, bool]] = {
    "baseline": (None, False),
    "soft_ce": ({**OFF, "rpn_soft": True, "rcn_soft": True}, False),
    "bounded_reg": ({**OFF, "rpn_bounded": True, "rcn_bounded": True}, False),
    "hint": ({**OFF, "hint": True}, False),
    "all": ({}, False),
    "all_T2": ({"temperature": 2.0}, False),
    "all_T4": ({"temperature": 4.0}, False),
    "all_w0_1.0": ({"background_weight": 1.0}, False),
    "all_hint_l1": ({"hint_kind": "l1"}, False),
    "all_adapter_kaiming": ({"adapter_init": "kaiming"}, False),
    "all_adapt_on_matched": ({}, True),
    "all_adapt_off_matched": ({"adaptation": False}, True),
}


def _teacher_fpn_channels(teacher_path: str) -> int:
    from .models import load_detector

    return int(load_detector(teacher_path).backbone.out_channels)


def run_cell(base: ExperimentConfig, cell: str, seed: int, out: Path, log: Log) -> dict[str, Any]:
    from .engine.run import distill_student, train_detector

    overrides, matched = CELLS[cell]
    folder = out / "cells" / cell / f"seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = copy.deepcopy(base)
    cfg.train.seed = seed
    cfg.train.out_dir = str(folder)
    cfg.train.progress = False
    if matched:
        cfg.model.overrides = {**cfg.model.overrides, "fpn_channels": _teacher_fpn_channels(cfg.teacher)}
    if overrides is None:
        summary = train_detector(cfg, log=log)
    else:
        for key, value in overrides.items():
            setattr(cfg.distill, key, value)
        summary = distill_student(cfg, log=log)
    test = summary.extra.get("test", {}).get("model", summary.last_metrics)
    result = {"cell": cell, "seed": seed, "mAP50": float(test["mAP50"]), "AP": float(test["AP"]),
              "train_seconds": summary.train_seconds}
    done.write_text(json.dumps(result))
    return result


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def ablate(base: ExperimentConfig, seeds: int = 3, cells: list[str] | None = None, out_dir: str | Path = "runs/ablate",
           log: Log = print) -> str:
    """Run (or resume) the matrix and write the table; returns the Markdown table."""
    if not base.teacher:
        raise ValueError("teacher: the ablation needs a trained teacher (--teacher PATH or teacher=PATH)")
    names = cells or list(CELLS)
    unknown = [c for c in names if c not in CELLS]
    if unknown:
        raise ValueError(f"--cells: unknown cell(s) {unknown}; choose from {list(CELLS)}")
    out = Path(out_dir)
    jobs = [(cell, seed) for cell in names for seed in range(seeds)]
    if base.distill.teacher_cache and any(CELLS[c][0] is not None for c in names):
        from .distill.teacher_cache import cache_teacher

        cache_teacher(copy.deepcopy(base), log=log)  # built once, with a progress bar; every cell and seed reads it
    results: dict[str, list[dict]] = {c: [] for c in names}
    for cell, seed in tqdm(jobs, desc="ablation", unit="run"):
        results[cell].append(run_cell(base, cell, seed, out, log=lambda _msg: None))
    lines = [f"| cell | mAP@0.5 (mean ± std, {seeds} seeds) | COCO AP |", "|---|---|---|"]
    rows = []
    for cell in names:
        maps = [r["mAP50"] for r in results[cell]]
        aps = [r["AP"] for r in results[cell]]
        lines.append(f"| {cell} | {_mean_std(maps)} | {_mean_std(aps)} |")
        rows.append({"cell": cell, "mAP50_mean": statistics.mean(maps), "AP_mean": statistics.mean(aps),
                     "mAP50_std": statistics.stdev(maps) if len(maps) > 1 else 0.0,
                     "AP_std": statistics.stdev(aps) if len(aps) > 1 else 0.0, "seeds": len(maps)})
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(table + "\n")
    with open(out / "ablation.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log(table)
    return table
