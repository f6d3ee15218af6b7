"""[unlabeled] Distillation with scarce labels on BCCD: 25 % of trainval labelled, the other 75 % unlabelled.

A seeded split of BCCD trainval (``--labelled-share``, ``--split-seed``) is written to ``<out>/data`` (a VOC
folder whose ``Annotations``/``JPEGImages`` link to the shared data and whose ``ImageSets/Main`` holds
``labelled.txt``, ``unlabelled.txt`` and the original ``test.txt``; counts in ``<out>/split.json``). Four arms, each with the BCCD short
regime of ``benchmarks/accuracy_bccd.py`` (300 iterations, batch 4, the same student and optimiser), paired
by seed (same initial weights and labelled data order):

* ``baseline``: the student on the labelled images only (``configs/bccd_student.yaml``);
* ``pkd``: distilled (recipe ``pkd``) on the labelled images only;
* ``pkd_unlabeled``: distilled on the labelled images plus the unlabelled ones
  (``data.unlabeled=<out>/data:unlabelled``, ``data.unlabeled_ratio`` 0.5: 2 of every 4 images per batch);
* ``baseline_all``: the student on all of trainval with its labels (how many labels distillation saves).

Reported on the test split (never used for a choice): mAP@0.5 and AP@[.5:.95], mean ± std, the paired
difference to ``baseline`` with its 95 % t-interval (:func:`detdistill.stats.paired_difference`), seeds
ahead, and the share of the baseline's gap to the teacher closed. The distilled arms read the teacher cache
(``<out>/cache_labelled``, ``<out>/cache_mixed``; built by ``--prepare``). One torch thread per run.

    # once: the split, the teacher's test score and both caches
    python benchmarks/accuracy_unlabeled.py --teacher runs/bccd/teacher/last.pt --prepare
    # train (two single-thread processes on two cores), then the table
    python benchmarks/accuracy_unlabeled.py --teacher T --seed-ids 0 &  python ... --seed-ids 1
    python benchmarks/accuracy_unlabeled.py --teacher T --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np

from detdistill.config import ExperimentConfig, load_config
from detdistill.engine.run import cache_teacher, distill_student, train_detector
from detdistill.stats import paired_difference
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


def arm_config(arm: str, data: Path, out: Path, seed: int, teacher: Path | None, threads: int,
               extra: list[str], steps: int = STEPS) -> ExperimentConfig:
    """The ExperimentConfig of one (arm, seed) run."""
    common = [f"data.source={data}", "data.format=voc", "data.val_split=null", "data.test_split=test", "train.progress=false",
              f"train.threads={threads}", f"train.max_steps={steps}", f"train.seed={seed}",
              f"train.out_dir={out / arm / f'seed{seed}'}", *extra]
    if arm.startswith("baseline"):
        split = "trainval" if arm == "baseline_all" else "labelled"
        return load_config(ROOT / "configs" / "bccd_student.yaml", common + [f"data.train_split={split}"])
    cache = out / ("cache_mixed" if arm == "pkd_unlabeled" else "cache_labelled")
    unlabeled = [f"data.unlabeled={data}:unlabelled", "data.unlabeled_ratio=0.5"] if arm == "pkd_unlabeled" else []
    return load_config(ROOT / "configs" / "bccd_distill.yaml", common + unlabeled + [
        "data.train_split=labelled", f"teacher={teacher}", "distill.recipe=pkd", f"distill.teacher_cache={cache}"])


def run_arm(arm: str, seed: int, args: argparse.Namespace, data: Path) -> dict:
    run = args.out / arm / f"seed{seed}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = arm_config(arm, data, args.out, seed, args.teacher, args.threads, args.set, args.steps)
    summary = (train_detector if arm.startswith("baseline") else distill_student)(cfg, resume=True)
    test = summary.extra["test"]["model"]
    result = {"mAP50": test["mAP50"], "AP": test["AP"], "train_seconds": summary.train_seconds,
              "unlabeled": summary.extra.get("unlabeled")}
    atomic_write_text(json.dumps(result), done)
    return result


def teacher_scores(args: argparse.Namespace, data: Path) -> dict:
    path = args.out / "teacher_test.json"
    if not path.is_file():
        from detdistill.data.open import open_dataset
        from detdistill.eval.inference import evaluate_model
        from detdistill.models import load_detector

        metrics = evaluate_model(load_detector(args.teacher), open_dataset(data, split="test", on_bad_box="skip")).metrics
        atomic_write_text(json.dumps({"mAP50": metrics["mAP50"], "AP": metrics["AP"]}), path)
    return json.loads(path.read_text())


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def table(args: argparse.Namespace, data: Path) -> str:
    teacher = teacher_scores(args, data)
    seeds = list(range(args.seeds))
    rows = {arm: [json.loads((args.out / arm / f"seed{s}" / "result.json").read_text()) for s in seeds]
            for arm in ARMS}
    split = json.loads((args.out / "split.json").read_text())
    lines = [f"BCCD trainval, {split['labelled']} labelled ({split['labelled_share']:.0%}, split seed "
             f"{split['split_seed']}) + {split['unlabelled']} unlabelled images; {args.steps} iterations, batch 4; "
             f"seeds {seeds}; torch threads {args.threads}; teacher mAP@0.5 {teacher['mAP50']:.3f}, "
             f"AP {teacher['AP']:.3f}", "",
             "| arm | mAP@0.5 | Δ vs baseline [95 % CI] | seeds ahead | gap closed | AP@[.5:.95] | Δ AP [95 % CI] "
             "| gap closed (AP) |", "|---|---|---|---|---|---|---|---|"]
    base = rows["baseline"]
    for arm in ARMS:
        rs = rows[arm]
        cells = []
        for metric in ("mAP50", "AP"):
            values, control = [r[metric] for r in rs], [b[metric] for b in base]
            cell = [_ms(values)]
            if arm == "baseline":
                cell += ["—"] * (3 if metric == "mAP50" else 2)
            else:
                d = paired_difference(control, values)
                ci = "" if len(values) < 2 else f" [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
                gap = teacher[metric] - statistics.mean(control)
                closed = f"{(statistics.mean(values) - statistics.mean(control)) / gap:.0%}" if gap > 0 else "n/a"
                cell.append(f"{d.mean:+.3f}{ci}")
                if metric == "mAP50":
                    cell.append(f"{sum(v > c for v, c in zip(values, control))}/{len(values)}")
                cell.append(closed)
            cells.append(cell)
        (m, md, ahead, mg), (a, ad, ag) = cells[0], cells[1]
        lines.append(f"| {arm} | {m} | {md} | {ahead} | {mg} | {a} | {ad} | {ag} |")
    unl, pkd = rows["pkd_unlabeled"], rows["pkd"]
    d = paired_difference([r["mAP50"] for r in pkd], [r["mAP50"] for r in unl])
    ci = "" if len(unl) < 2 else f" [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
    lines += ["", f"pkd_unlabeled − pkd (the unlabelled images' own share): mAP@0.5 {d.mean:+.3f}{ci}",
              "train seconds per run (mean): " + ", ".join(
                  f"{arm} {statistics.mean(r['train_seconds'] for r in rows[arm]):.0f}" for arm in ARMS)]
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
    parser.add_argument("--prepare", action="store_true", help="write the split, score the teacher, build caches")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    parser.add_argument("--results", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    data = write_split(args.bccd, args.out, args.labelled_share, args.split_seed, args.subset)
    if args.prepare:
        print(f"teacher on test: {teacher_scores(args, data)}")
        for arm in ("pkd", "pkd_unlabeled"):
            cfg = arm_config(arm, data, args.out, 0, args.teacher, args.threads, args.set, args.steps)
            cache_teacher(cfg)
        return
    if args.seed_ids is not None:
        for seed in args.seed_ids:
            for arm in args.arms:
                print(f"{arm} seed {seed}: {run_arm(arm, seed, args, data)}", flush=True)
        return
    text = table(args, data)
    print(text)
    if args.results:
        atomic_write_text(text + "\n", args.results)


if __name__ == "__main__":
    main()
