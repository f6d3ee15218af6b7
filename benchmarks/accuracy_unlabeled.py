"""[unlabeled] Distillation with scarce labels on BCCD: 25 % of trainval labelled, the other 75 % unlabelled.

A seeded split of BCCD trainval (``--labelled-share``, ``--split-seed``) is written to ``<out>/data`` (a VOC
folder whose ``Annotations``/``JPEGImages`` link to the shared data and whose ``ImageSets/Main`` holds
``labelled.txt``, ``unlabelled.txt`` and the original ``test.txt``; counts in ``<out>/split.json``). The arms
run on the study runner (:func:`detdistill.study.run_study`: resumable, paired by seed, one thread per run,
the teacher scored once); the labelled arms take their training set from a dataset factory
(:func:`labelled_subset`: trainval less the unlabelled images), the way a study arm takes data no config key
names. Four arms, each with the BCCD short regime of ``benchmarks/accuracy_bccd.py`` (300 iterations, batch 4,
the same student and optimiser), paired by seed (same initial weights and labelled data order):

* ``baseline``: the student on the labelled images only (``configs/bccd_student.yaml``);
* ``pkd``: distilled (recipe ``pkd``) on the labelled images only;
* ``pkd_unlabeled``: distilled on the labelled images plus the unlabelled ones
  (``data.unlabeled=<out>/data:unlabelled``, ``data.unlabeled_ratio`` 0.5: 2 of every 4 images per batch);
* ``baseline_all``: the student on all of trainval with its labels (how many labels distillation saves).

Reported on the test split (never used for a choice): mAP@0.5 and AP@[.5:.95], mean ± std, the paired
difference to ``baseline`` with its 95 % t-interval (``StudyResult.paired``), seeds ahead, and the share of
the baseline's gap to the teacher closed. The distilled arms read the teacher cache (``<out>/cache_labelled``,
``<out>/cache_mixed``; built by ``--prepare``). One torch thread per run.

    # once: the split, the teacher's test score and both caches
    python benchmarks/accuracy_unlabeled.py --teacher runs/bccd/teacher/last.pt --prepare
    # train (two single-thread processes side by side), then the table
    python benchmarks/accuracy_unlabeled.py --teacher T --seed-ids 0 1 --jobs 2
    python benchmarks/accuracy_unlabeled.py --teacher T --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from functools import partial
from pathlib import Path

import numpy as np

from detdistill.config import ExperimentConfig, load_config
from detdistill.engine.run import Datasets, cache_teacher, open_datasets
from detdistill.study import Arm, StudyResult, run_study
from detdistill.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300  # the short regime of benchmarks/accuracy_bccd.py
ARMS = ("baseline", "pkd", "pkd_unlabeled", "baseline_all")


def write_split(bccd: Path, out: Path, share: float, seed: int, subset: int | None = None) -> Path:
    """The labelled / unlabelled split of trainval as a VOC folder under ``out`` (kept when it exists)."""
    root = out / "data"
    main = root / "ImageSets" / "Main"
    if (out / "split.json").is_file():
        return root
    main.mkdir(parents=True, exist_ok=True)
    for name in ("Annotations", "JPEGImages"):
        if not (root / name).is_symlink():
            os.symlink(bccd.resolve() / name, root / name)
    ids = [ln.split()[0] for ln in (bccd / "ImageSets" / "Main" / "trainval.txt").read_text().splitlines() if ln.strip()]
    order = np.random.default_rng(seed).permutation(len(ids))[:subset]  # subset: a smoke run's few images
    cut = int(round(share * len(order)))
    labelled, unlabelled = sorted(ids[i] for i in order[:cut]), sorted(ids[i] for i in order[cut:])
    for name, part in (("labelled", labelled), ("unlabelled", unlabelled), ("trainval", sorted(labelled + unlabelled))):
        atomic_write_text("\n".join(part) + "\n", main / f"{name}.txt")
    atomic_write_text((bccd / "ImageSets" / "Main" / "test.txt").read_text(), main / "test.txt")
    atomic_write_text(json.dumps({"labelled_share": share, "split_seed": seed, "subset": subset,
                                  "labelled": len(labelled),
                                  "unlabelled": len(unlabelled)}, indent=1), out / "split.json")
    return root


def labelled_subset(cfg: ExperimentConfig, split_dir: str) -> Datasets:
    """The run's datasets with trainval less the unlabelled images (``unlabelled.txt``) as its training set."""
    data = open_datasets(cfg)
    unlabelled = set((Path(split_dir) / "ImageSets" / "Main" / "unlabelled.txt").read_text().split())
    train = data.train
    train.records = train.records[[i for i in range(len(train.records))
                                   if Path(train.records.file_name(i)).stem not in unlabelled]]
    return data


def arm(name: str, data: Path, out: Path, threads: int, extra: list[str], steps: int = STEPS) -> Arm:
    """One arm of the study: its config (seed, folder and threads are the study's) and its datasets."""
    common = [f"data.source={data}", "data.format=voc", "data.val_split=null", "data.test_split=test",
              "data.train_split=trainval", f"train.threads={threads}", f"train.max_steps={steps}", *extra]
    subset = None if name == "baseline_all" else partial(labelled_subset, split_dir=str(data))
    if name.startswith("baseline"):
        return Arm(name, config=load_config(ROOT / "configs" / "bccd_student.yaml", common), datasets=subset)
    cache = out / ("cache_mixed" if name == "pkd_unlabeled" else "cache_labelled")
    unlabeled = [f"data.unlabeled={data}:unlabelled", "data.unlabeled_ratio=0.5"] if name == "pkd_unlabeled" else []
    cfg = load_config(ROOT / "configs" / "bccd_distill.yaml", common + unlabeled + [
        "distill.recipe=pkd", f"distill.teacher_cache={cache}"])
    return Arm(name, config=cfg, teacher=True, datasets=subset)


def study(args: argparse.Namespace, data: Path, cells: list[tuple[str, int]] | None, seeds: list[int],
          score_teacher: bool) -> StudyResult:
    arms = [arm(name, data, args.out, args.threads, args.set, args.steps) for name in ARMS]
    return run_study(arms, seeds, args.out, jobs=args.jobs, threads=args.threads, teacher=args.teacher, runs=cells,
                     score_teacher=score_teacher)


def teacher_step(args: argparse.Namespace) -> int | None:
    from detdistill.models import read_checkpoint

    return read_checkpoint(args.teacher)["metadata"].get("step")  # a snapshot of a longer run says so


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def table(args: argparse.Namespace, result: StudyResult) -> str:
    teacher = (result.teacher or {}).get("test") or {}
    seeds = result.seeds
    split = json.loads((args.out / "split.json").read_text())
    lines = [f"BCCD trainval, {split['labelled']} labelled ({split['labelled_share']:.0%}, split seed "
             f"{split['split_seed']}) + {split['unlabelled']} unlabelled images; {args.steps} iterations, batch 4; "
             f"seeds {seeds}; torch threads {result.threads}; teacher {args.teacher} (step {teacher_step(args)}): "
             f"test mAP@0.5 {teacher['mAP50']:.3f}, AP {teacher['AP']:.3f}", "",
             "| arm | mAP@0.5 | Δ vs baseline [95 % CI] | seeds ahead | gap closed | AP@[.5:.95] | Δ AP [95 % CI] "
             "| gap closed (AP) |", "|---|---|---|---|---|---|---|---|"]
    for name in ARMS:
        cells = []
        for metric in ("mAP50", "AP"):
            values, control = result.values(name, metric), result.values("baseline", metric)
            cell = [_ms(list(values.values()))]
            if name == "baseline":
                cell += ["—"] * (3 if metric == "mAP50" else 2)
            else:
                d = result.paired("baseline", name, metric)
                ci = "" if len(values) < 2 else f" [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
                base = statistics.mean(control.values())
                gap = teacher[metric] - base
                closed = f"{(statistics.mean(values.values()) - base) / gap:.0%}" if gap > 0 else "n/a"
                cell.append(f"{d.mean:+.3f}{ci}")
                if metric == "mAP50":
                    cell.append(f"{sum(values[s] > control[s] for s in values)}/{len(values)}")
                cell.append(closed)
            cells.append(cell)
        (m, md, ahead, mg), (a, ad, ag) = cells[0], cells[1]
        lines.append(f"| {name} | {m} | {md} | {ahead} | {mg} | {a} | {ad} | {ag} |")
    d = result.paired("pkd", "pkd_unlabeled")
    ci = "" if len(seeds) < 2 else f" [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
    lines += ["", f"pkd_unlabeled − pkd (the unlabelled images' own share): mAP@0.5 {d.mean:+.3f}{ci}",
              "train seconds per run (mean): " + ", ".join(
                  f"{name} {statistics.mean(r.train_seconds for r in result.of(name)):.0f}" for name in ARMS)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_unlabeled")
    parser.add_argument("--teacher", type=Path, required=True, help="the BCCD teacher checkpoint")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 in the table")
    parser.add_argument("--seed-ids", type=int, nargs="*", default=None, help="train only these seeds (no table)")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
    parser.add_argument("--bccd", type=Path, default=ROOT.parent / "shared" / "data" / "bccd",
                        help="the BCCD folder (../shared/data/bccd beside the repo)")
    parser.add_argument("--labelled-share", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=STEPS, help="iterations per run (the measurement: 300)")
    parser.add_argument("--subset", type=int, default=None,
                        help="use only this many trainval images (a smoke run of the whole pipeline)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (fixed and recorded)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, in separate processes")
    parser.add_argument("--prepare", action="store_true", help="write the split and build both teacher caches")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    parser.add_argument("--results", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    data = write_split(args.bccd, args.out, args.labelled_share, args.split_seed, args.subset)
    if args.prepare:
        for name in ("pkd", "pkd_unlabeled"):
            spec = arm(name, data, args.out, args.threads, args.set, args.steps)
            cfg = spec.build(None)
            cfg.teacher = str(args.teacher)
            cache_teacher(cfg, datasets=spec.datasets)
        return
    if args.seed_ids is not None:
        cells = [(name, seed) for seed in args.seed_ids for name in args.arms]
        result = study(args, data, cells, sorted(set(args.seed_ids)), score_teacher=False)
        for (name, seed), run in result.runs.items():
            print(f"{name} seed {seed}: test mAP@0.5 {run.score('mAP50'):.3f}, AP {run.score('AP'):.3f}", flush=True)
        return
    text = table(args, study(args, data, None, list(range(args.seeds)), score_teacher=True))
    print(text)
    if args.results:
        atomic_write_text(text + "\n", args.results)


if __name__ == "__main__":
    main()
