"""Accuracy on real data: teacher, baseline student and distilled student on BCCD (trainval -> test).

One teacher (MobileNetV2-FPN from ImageNet weights, `configs/bccd_teacher.yaml`) is trained once (or reused
with --teacher); then, for each seed and each regime, a baseline student (`configs/bccd_student.yaml`, no
teacher) and one distilled student per distillation recipe (`configs/bccd_distill.yaml` with
``distill.recipe=R``; default ``--recipes default chen2017``) with the same recipe and steps. Prints and writes
(``<out>/accuracy_bccd.md`` and ``.csv``) mean ± std over seeds of mAP@0.5, AP@[.5:.95] and per-class AP50,
the paired difference to the baseline (same seed: same initial weights and data order) with its 95 %
t-interval, the seeds won, the share of the teacher-baseline gap closed, and the images/s ratio. Every run
uses one torch thread (``--threads``, recorded). The runs go through the study runner
(:func:`detdistill.study.run_study`): ``--jobs`` spawned single-thread processes, resumable from the run
folders (a finished run is not retrained), the teacher scored once on the test split.

Regimes: ``short`` (300 student iterations, where the measured gap is large, mostly platelets) and ``full``
(1200 iterations, where the gap lives in AP@[.5:.95]). Cost on 2 CPU cores, measured: the teacher ~10 min
(400 it); per seed, a baseline student ~6 min and a distilled one ~12.5 min per 300 iterations in a
single-thread process. With ``--jobs 2`` (two single-thread processes, ~1.9x the throughput of one
two-thread process) 3 seeds of the short regime take ~30 min and the full regime ~2 h, over the issue's
90-minute budget (BENCHMARKS.md). On one GPU (H200) the whole protocol takes ~10 min.

    make weights    # ImageNet MobileNetV2 features into the cache (once)
    .venv/bin/python benchmarks/accuracy_bccd.py --out runs/bench_bccd --jobs 2 [--seeds 5] [--regimes short full]
    .venv/bin/python benchmarks/accuracy_bccd.py --teacher runs/bench_bccd/teacher/last.pt --seeds 1 --regimes short
    # with the teacher cache (built once up front, then read by every distilled run):
    .venv/bin/python benchmarks/accuracy_bccd.py ... --set distill.teacher_cache=runs/bench_bccd/teacher_cache

Choosing a lever (issue #30: small objects) is done on validation, never on test: ``--split val`` trains every
student on BCCD's ``train`` split (205 images) and scores it on ``val`` (87 images; the table says so). Extra
arms name a kind (``baseline`` or a recipe) and config overrides. Each arm is paired with its control: a
distilled arm with the baseline arm of its own student (the same ``model`` config) where there is one, anything else
with ``baseline``; arms of another student also show their difference to ``baseline``:

    .venv/bin/python benchmarks/accuracy_bccd.py --teacher T --split val --regimes short --recipes default \
        --arm pkd_rcn_soft pkd distill.terms.rcn_soft.enabled=true \
        --arm baseline_s8 baseline model.name=mobilenet_v2_050_fpn_s8 \
        --arm pkd_s8 pkd model.name=mobilenet_v2_050_fpn_s8
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import statistics
from pathlib import Path
from typing import Any

import torch

from detdistill.config import load_config
from detdistill.engine.run import open_datasets, train_detector
from detdistill.models.weights import cache_dir
from detdistill.reports.demo_page import gap_closed
from detdistill.stats import PairedDifference
from detdistill.study import Arm, run_study

ROOT = Path(__file__).resolve().parents[1]
REGIMES = {"short": 300, "full": 1200}


def _speeds(checkpoints: dict[str, Path], images: list[torch.Tensor], threads: int) -> dict[str, float]:
    """CPU images/s of each trained checkpoint at batch 1, the models interleaved image by image (the demo's
    timer: warm-up excluded, ``threads`` fixed)."""
    from detdistill.demo.scoring import measure_images_per_s
    from detdistill.models import load_detector

    return measure_images_per_s({name: load_detector(path) for name, path in checkpoints.items()}, images, threads)


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def _arm_specs(recipes: list[str], extra: list[list[str]]) -> dict[str, tuple[str, list[str]]]:
    """``{arm: (kind, overrides)}``: the baseline, one ``kd_<recipe>`` per recipe, then the ``--arm`` ones
    (kind ``baseline`` or a recipe name)."""
    from detdistill.distill.terms import resolve_recipe
    from detdistill.errors import DetDistillError

    # "default" is one of the named recipes: resolve it so the same objective never trains twice.
    specs = {"baseline": ("baseline", [])}
    try:
        specs.update({f"kd_{resolve_recipe(r).name}": (resolve_recipe(r).name, []) for r in recipes})
        for arm in extra:
            if len(arm) < 2:
                raise SystemExit(f"--arm {' '.join(arm)}: give NAME KIND [KEY=VALUE ...] (KIND: baseline or a recipe)")
            name, kind, *overrides = arm
            if name in specs or "/" in name:
                raise SystemExit(f"--arm {name}: the arm name is taken or holds '/' (taken: {sorted(specs)})")
            if any("=" not in o for o in overrides):
                raise SystemExit(f"--arm {name}: overrides are KEY=VALUE, got {overrides}")
            specs[name] = (kind if kind == "baseline" else resolve_recipe(kind).name, overrides)
    except DetDistillError as exc:
        raise SystemExit(str(exc)) from None
    if all(kind == "baseline" for kind, _ in specs.values()):
        raise SystemExit("no arm distils: give --recipes or an --arm with a recipe as its kind (the table measures "
                         "each arm against the teacher)")
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_bccd")
    parser.add_argument("--teacher", type=Path, default=None, help="reuse a trained teacher checkpoint")
    parser.add_argument("--teacher-steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per arm; seed k of each arm pairs with the baseline's")
    parser.add_argument("--recipes", nargs="*", default=["default", "chen2017"],
                        help="distillation recipes (distill.recipe) to train beside the baseline")
    parser.add_argument("--arm", nargs="+", action="append", default=[], metavar="ARG",
                        help="an extra arm, NAME KIND [KEY=VALUE ...]: its name, its kind (baseline or a recipe) "
                             "and its config overrides (applied after --set)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="test: train on trainval, score on test (report); val: train on train, score on "
                             "val and time on val images (choose a lever; test is never opened). A teacher trained "
                             "here then trains on train; a --teacher that saw val scores optimistically there")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (fixed and recorded)")
    parser.add_argument("--seed-ids", type=int, nargs="*", default=None,
                        help="train only these seeds (e.g. 1 2 in a second process; none: only the teacher); "
                             "a later run without it prints the table")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (after the regime's steps, before an --arm's own), "
                             "e.g. train.device=cuda data.num_workers=4")
    parser.add_argument("--regimes", nargs="+", default=["short", "full"], choices=sorted(REGIMES))
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the runs in this many single-thread processes (2 on a 2-core machine)")
    args = parser.parse_args()
    data = ROOT.parent / "shared" / "data" / "bccd"
    common = [f"data.source={data}", "train.progress=false", f"train.threads={args.threads}"]
    splits = ["data.train_split=train", "data.test_split=val", "data.val_split=null"] if args.split == "val" else []
    specs = _arm_specs(args.recipes, args.arm)
    teacher = args.teacher
    if teacher is None:
        weights = cache_dir() / "mobilenetv2_imagenet_features.pt"
        if not weights.is_file():
            raise SystemExit(f"{weights} not found: run `make weights` first")
        cfg = load_config(ROOT / "configs" / "bccd_teacher.yaml", common + [
            f"model.backbone_weights={weights}", f"train.max_steps={args.teacher_steps}",
            f"train.out_dir={args.out / 'teacher'}", *splits, *args.set])
        summary = train_detector(cfg, resume=True)
        teacher = Path(summary.last_checkpoint)
    # A distilled step costs more than a plain one, and the paper's objective (teacher RoI head) the most:
    # the longest arms go first, so both processes stay busy to the end.
    order = sorted(specs, key=lambda arm: (specs[arm][0] == "baseline", specs[arm][0] != "chen2017"))
    arms = []
    student_of: dict[str, Any] = {}  # arm -> its student's model config (name, weights, overrides)
    for regime in args.regimes:
        steps = [f"train.max_steps={REGIMES[regime]}"]
        for name in order:
            kind, overrides = specs[name]
            if kind == "baseline":
                cfg = load_config(ROOT / "configs" / "bccd_student.yaml",
                                  common + steps + splits + args.set + overrides)
            else:
                cfg = load_config(ROOT / "configs" / "bccd_distill.yaml", common + steps + splits + [
                    f"teacher={teacher}", f"distill.recipe={kind}", *args.set, *overrides])
            arms.append(Arm(f"{regime}/{name}", config=cfg, teacher=kind != "baseline"))
            student_of[name] = cfg.model
    # Seed-major: a study cut short still holds whole seeds of every arm.
    only = None if args.seed_ids is None else [(arm.name, s) for s in args.seed_ids for arm in arms]
    if only == []:
        print("trained the teacher; run again with --seeds N (no --seed-ids) for the table")
        return
    study = run_study(arms, args.seeds, args.out, jobs=args.jobs, threads=args.threads, teacher=teacher, runs=only,
                      layout=lambda arm, seed: args.out / arm.split("/")[0] / f"{arm.split('/')[1]}_seed{seed}")
    if args.seed_ids is not None:
        print(f"trained seeds {args.seed_ids}; run again with --seeds N (no --seed-ids) for the table")
        return
    teacher_metrics = study.teacher["test"]
    scored_on = ("validation (val, 87 images; students trained on train, 205 images)" if args.split == "val"
                 else "test (72 images; students trained on trainval)")
    # A distilled arm is judged against the baseline of its own student (the same model config, the same seed);
    # a baseline of another student, or a distilled one whose student has no baseline arm, against `baseline`
    # (the table names each control). Arms of another student also show Δ vs `baseline`.
    control = {}
    for name, (kind, _) in specs.items():
        own = [b for b, (k, _) in specs.items() if k == "baseline" and student_of[b] == student_of[name]]
        control[name] = None if name == "baseline" else (own[0] if own and kind != "baseline" else "baseline")
    print(f"teacher ({teacher}): mAP@0.5 {teacher_metrics['mAP50']:.3f}, AP {teacher_metrics['AP']:.3f}")
    lines = []
    table = [f"scored on {scored_on}; teacher: mAP@0.5 {teacher_metrics['mAP50']:.3f}, AP {teacher_metrics['AP']:.3f}; "
             f"{args.seeds} seeds, torch threads {args.threads}; Δ, seeds ahead and gap closed are against the "
             "arm's control, paired by seed", "",
             "| regime | arm | student | control | mAP@0.5 | Δ [95 % CI] | seeds ahead | gap closed | AP@[.5:.95] | "
             "Δ AP [95 % CI] | AP50 Platelets | Δ vs `baseline` (mAP@0.5 / AP) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    csv_rows = []

    def diff_text(d: PairedDifference) -> str:
        return f"{d.mean:+.3f}" + ("" if d.n == 1 else f" [{d.ci_low:+.3f}, {d.ci_high:+.3f}]")

    for regime in args.regimes:
        for name in specs:
            arm, ctrl = f"{regime}/{name}", control[name]
            rs = study.of(arm)
            classes = sorted(rs[0].test_per_class)
            per_class = ", ".join(f"{c} {_ms([r.test_per_class[c] for r in rs])}" for c in classes)
            print(f"[{regime}, {REGIMES[regime]} it] {name:12s}: mAP@0.5 {_ms([r.test['mAP50'] for r in rs])}, "
                  f"AP {_ms([r.test['AP'] for r in rs])}; AP50 {per_class}")
            row = {"regime": regime, "arm": name, "model": student_of[name].name, "control": ctrl, "split": args.split,
                   "seeds": args.seeds, "threads": args.threads}
            diffs = {}  # arm − its control, paired by seed
            for metric in ("mAP50", "AP"):
                values = [r.test[metric] for r in rs]
                row[f"{metric}_mean"] = statistics.mean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                if ctrl is not None:
                    d = diffs[metric] = study.paired(f"{regime}/{ctrl}", arm, metric)
                    row[f"{metric}_diff"], row[f"{metric}_diff_low"], row[f"{metric}_diff_high"] = \
                        d.mean, d.ci_low, d.ci_high
            platelets = [r.test_per_class.get("Platelets", float("nan")) for r in rs]
            row["platelets_AP50_mean"] = statistics.mean(platelets)
            cells = ["—"] * 5
            if ctrl is not None:
                ctrl_runs = study.of(f"{regime}/{ctrl}")
                ctrl_map = statistics.mean([b.test["mAP50"] for b in ctrl_runs])
                closed = gap_closed(teacher_metrics["mAP50"], ctrl_map, row["mAP50_mean"])
                if closed is None:  # a control at or above the teacher: say so rather than print a share of nothing
                    gap_cell = "no gap"
                    gap_line = f"no gap ({ctrl} {ctrl_map:.3f} >= teacher {teacher_metrics['mAP50']:.3f})"
                else:
                    gap_cell, gap_line = f"{closed * 100:.0f} %", f"gap closed {closed * 100:.0f}%"
                wins = diffs["mAP50"].wins
                row["gap_closed"] = float("nan") if closed is None else closed
                row["seeds_ahead"] = wins
                cells[:4] = [diff_text(diffs["mAP50"]), f"{wins}/{args.seeds}", gap_cell, diff_text(diffs["AP"])]
                target = " (target: every seed, >= 50%)" if specs[name][0] != "baseline" else ""
                lines.append(f"[{regime}] {name} beats {ctrl} in {wins}/{args.seeds} seeds; {gap_line}{target}")
                if ctrl != "baseline":
                    cells[4] = " / ".join(diff_text(study.paired(f"{regime}/baseline", arm, m)) for m in ("mAP50", "AP"))
            table.append(f"| {regime} | {name} | `{student_of[name].name}` | {ctrl or '—'} | {_ms([r.test['mAP50'] for r in rs])} | "
                         f"{cells[0]} | {cells[1]} | {cells[2]} | {_ms([r.test['AP'] for r in rs])} | {cells[3]} | "
                         f"{_ms(platelets)} | {cells[4]} |")
            csv_rows.append(row)
    from detdistill.utils import atomic_write_text

    atomic_write_text("\n".join(table) + "\n", args.out / "accuracy_bccd.md")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in csv_rows for k in r)))
    writer.writeheader()
    writer.writerows(csv_rows)
    atomic_write_text(buffer.getvalue(), args.out / "accuracy_bccd.csv")
    print("\n".join(table))
    # One trained run (seed 0) of each student that has its own baseline arm, timed beside the teacher on
    # images of the scored split.
    students = {student_of[name].name: args.out / args.regimes[0] / f"{name}_seed0" / "last.pt"
                for name in specs if control[name] not in (None, "baseline") or name == "baseline"}
    probe = copy.deepcopy(arms[0].config)
    probe.data.val_split = None
    scored = open_datasets(probe).test
    images = [scored.load_image(i) for i in range(min(30, len(scored)))]
    ips = _speeds({"teacher": teacher, **students}, images, args.threads)
    print(f"CPU images/s at batch 1, {args.threads} thread(s), interleaved over {len(images)} {args.split} images: "
          + ", ".join(f"{k} {v:.1f}" for k, v in ips.items()))
    for line in lines:
        print(line)
    for model in students:
        print(f"images/s {model} / teacher = {ips[model] / ips['teacher']:.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
