"""Accuracy on real data: teacher, baseline student and distilled student on BCCD (trainval -> test).

One teacher (MobileNetV2-FPN from ImageNet weights, `configs/bccd_teacher.yaml`) is trained once (or reused
with --teacher); then, for each seed and each regime, a baseline student (`configs/bccd_student.yaml`, no
teacher) and a distilled student (`configs/bccd_distill.yaml`, paper defaults) with the same recipe and steps.
Prints mean ± std over seeds of mAP@0.5, AP@[.5:.95] and per-class AP50, the share of the teacher-baseline
gap closed, and the images/s ratio; the ratio and target lines come last.

Regimes: ``short`` (300 student iterations, where the measured gap is large, mostly platelets) and ``full``
(1200 iterations, where the gap lives in AP@[.5:.95]). Budget for the full protocol (3 seeds, both regimes):
about 90 minutes on 2 CPU cores.

    make weights    # ImageNet MobileNetV2 features into the cache (once)
    .venv/bin/python benchmarks/accuracy_bccd.py --out runs/bench_bccd [--seeds 3] [--regimes short full]
    .venv/bin/python benchmarks/accuracy_bccd.py --teacher runs/bench_bccd/teacher/last.pt --seeds 1 --regimes short
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from detdistill.config import load_config
from detdistill.engine.run import distill_student, train_detector
from detdistill.models.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
REGIMES = {"short": 300, "full": 1200}


def _test_metrics(summary) -> dict:  # noqa: ANN001
    return summary.extra["test"]["model"]


def _per_class(run_dir: Path) -> dict[str, float]:
    from detdistill.data.open import open_dataset
    from detdistill.eval.inference import evaluate_model
    from detdistill.models import load_detector

    test = open_dataset(ROOT.parent / "shared" / "data" / "bccd", split="test", on_bad_box="skip")
    result = evaluate_model(load_detector(run_dir / "last.pt"), test)
    return {row["name"]: row["AP50"] for row in result.per_class}


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_bccd")
    parser.add_argument("--teacher", type=Path, default=None, help="reuse a trained teacher checkpoint")
    parser.add_argument("--teacher-steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-ids", type=int, nargs="*", default=None,
                        help="train only these seeds (e.g. 1 2 in a second process; none: only the teacher); "
                             "a later run without it prints the table")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run, e.g. train.device=cuda data.num_workers=4")
    parser.add_argument("--regimes", nargs="+", default=["short", "full"], choices=sorted(REGIMES))
    args = parser.parse_args()
    data = ROOT.parent / "shared" / "data" / "bccd"
    common = [f"data.source={data}", "train.progress=false", *args.set]
    teacher = args.teacher
    if teacher is None:
        weights = cache_dir() / "mobilenetv2_imagenet_features.pt"
        if not weights.is_file():
            raise SystemExit(f"{weights} not found: run `make weights` first")
        cfg = load_config(ROOT / "configs" / "bccd_teacher.yaml", common + [
            f"model.backbone_weights={weights}", f"train.max_steps={args.teacher_steps}",
            f"train.out_dir={args.out / 'teacher'}"])
        summary = train_detector(cfg, resume=True)
        teacher = Path(summary.last_checkpoint)
    rows = {}
    teacher_metrics = None
    seeds = args.seed_ids if args.seed_ids is not None else range(args.seeds)
    for regime in args.regimes:
        for seed in seeds:
            for kind in ("baseline", "distilled"):
                run = args.out / regime / f"{kind}_seed{seed}"
                done = run / "result.json"
                if done.is_file():
                    rows[(regime, kind, seed)] = json.loads(done.read_text())
                    continue
                overrides = common + [f"train.max_steps={REGIMES[regime]}", f"train.seed={seed}",
                                      f"train.out_dir={run}"]
                if kind == "baseline":
                    summary = train_detector(load_config(ROOT / "configs" / "bccd_student.yaml", overrides), resume=True)
                else:
                    cfg = load_config(ROOT / "configs" / "bccd_distill.yaml", overrides + [f"teacher={teacher}"])
                    summary = distill_student(cfg, resume=True)
                    teacher_metrics = summary.extra["test"]["teacher"]
                result = {**{k: _test_metrics(summary)[k] for k in ("mAP50", "AP")}, "per_class": _per_class(run),
                          "train_seconds": summary.train_seconds}
                done.write_text(json.dumps(result))
                rows[(regime, kind, seed)] = result
    if args.seed_ids is not None:
        print(f"trained seeds {args.seed_ids}; run again with --seeds N (no --seed-ids) for the table")
        return
    if teacher_metrics is None:
        from detdistill.data.open import open_dataset
        from detdistill.eval.inference import evaluate_model
        from detdistill.models import load_detector

        test = open_dataset(data, split="test", on_bad_box="skip")
        teacher_metrics = evaluate_model(load_detector(teacher), test).metrics
    print(f"teacher ({teacher}): mAP@0.5 {teacher_metrics['mAP50']:.3f}, AP {teacher_metrics['AP']:.3f}")
    lines = []
    for regime in args.regimes:
        for kind in ("baseline", "distilled"):
            rs = [rows[(regime, kind, s)] for s in range(args.seeds)]
            classes = sorted(rs[0]["per_class"])
            per_class = ", ".join(f"{c} {_ms([r['per_class'][c] for r in rs])}" for c in classes)
            print(f"[{regime}, {REGIMES[regime]} it] {kind:9s}: mAP@0.5 {_ms([r['mAP50'] for r in rs])}, "
                  f"AP {_ms([r['AP'] for r in rs])}; AP50 {per_class}")
        base = [rows[(regime, "baseline", s)]["mAP50"] for s in range(args.seeds)]
        kd = [rows[(regime, "distilled", s)]["mAP50"] for s in range(args.seeds)]
        wins = sum(k > b for k, b in zip(kd, base))
        gap = teacher_metrics["mAP50"] - statistics.mean(base)
        closed = (statistics.mean(kd) - statistics.mean(base)) / gap if gap > 0 else float("nan")
        lines.append(f"[{regime}] distilled beats baseline in {wins}/{args.seeds} seeds; gap closed "
                     f"{closed * 100:.0f}% (target: every seed, >= 50%)")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
