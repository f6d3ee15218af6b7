"""``detdistill shrink``'s choice against a hand-picked student, same data, schedule, recipe and seeds.

Runs the search (:func:`detdistill.shrink.search`), then trains the hand pick with the search's own run
function on the same training set (the hold-out excluded when there is one) for the same final steps and
seeds, scores both on the test split, and times the teacher, the chosen student and the hand pick side by
side in this process (interleaved image by image, the library's timer). Prints one line per figure and the
paired difference (chosen − hand pick) with its 95 % CI when there are two seeds or more.

    # the synthetic demo pair against the demo's lean cpu_small
    python benchmarks/shrink_compare.py --demo --teacher T.pt --target-speedup 3 --out runs/shrink/demo
    # BCCD against mobilenet_v2_050_fpn + pkd
    python benchmarks/shrink_compare.py --config configs/bccd_student.yaml --teacher runs/bccd/teacher/last.pt \
        --target-speedup 4 --hand-pick mobilenet_v2_050_fpn --hand-overrides '{}' --out runs/shrink/bccd
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from detdistill.config import load_config
from detdistill.engine.run import Datasets, load_teacher
from detdistill.models import load_detector
from detdistill.models.timing import Latency, interleaved_times
from detdistill.shrink import Candidate, search
from detdistill.shrink import pipeline
from detdistill.stats import paired_difference


def demo_config(out: Path):  # noqa: ANN201
    """The demo's student config (data, schedule, batch, lr), with its test split scored by the runs."""
    from detdistill.demo import FULL
    from detdistill.demo.training import experiment

    cfg = experiment(FULL, "distilled", 0, out)
    cfg.data.test_split = "test"
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--demo", action="store_true", help="the demo's config (synthetic, 1500 steps)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--target-speedup", type=float, default=None)
    parser.add_argument("--target-ms", type=float, default=None)
    parser.add_argument("--target-margin", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-steps", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--final-steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the short runs")
    parser.add_argument("--final-seeds", type=int, default=1, help="seeds of the final pair (chosen, hand pick)")
    parser.add_argument("--with-baseline", action="store_true")
    parser.add_argument("--hand-pick", default="cpu_small")
    parser.add_argument("--hand-overrides", default=None,
                        help="JSON model overrides of the hand pick (default: the demo's LEAN_STUDENT)")
    parser.add_argument("--timing-images", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hand-only", action="store_true",
                        help="train only the hand pick (beside a search running in another process); rerun "
                             "without it afterwards to compare (finished runs are reused)")
    args = parser.parse_args()
    start = time.perf_counter()
    cfg = demo_config(args.out) if args.demo else load_config(args.config, list(args.overrides))
    final_seeds = list(range(args.final_seeds))
    if args.hand_only:
        train_hand_pick(args, cfg, final_seeds, cfg.train.max_steps if args.final_steps is None else args.final_steps)
        return
    result = search(args.teacher, cfg, out=args.out, target_speedup=args.target_speedup, target_ms=args.target_ms,
                    target_margin=args.target_margin,
                    threads=args.threads, budget_steps=args.budget_steps, candidates=args.candidates,
                    final_steps=args.final_steps, with_baseline=args.with_baseline, seeds=range(args.seeds),
                    final_seeds=final_seeds, timing_images=args.timing_images)
    search_seconds = time.perf_counter() - start
    t0 = time.perf_counter()
    hand_runs, data, test, teacher = train_hand_pick(args, cfg, final_seeds, result.final_steps)
    hand_seconds = time.perf_counter() - t0
    report(args, result, hand_runs, data, teacher, final_seeds, search_seconds, hand_seconds)


def train_hand_pick(args, cfg, final_seeds, steps):  # noqa: ANN001, ANN201
    """The hand pick's distilled runs on the search's own training set (the same hold-out left out)."""
    if args.hand_overrides is None:
        from detdistill.demo.recipe import LEAN_STUDENT

        overrides = dict(LEAN_STUDENT)
    else:
        overrides = json.loads(args.hand_overrides)
    hand = Candidate("hand-pick", "zoo", "hand", args.hand_pick, overrides)
    # The search's own datasets: the same seeded hold-out left out of training, the same test split.
    data, test = pipeline._search_datasets(cfg, args.out, 0.2, 0, lambda line: None)
    teacher, teacher_ckpt = load_teacher(args.teacher)
    hand_runs = []
    for seed in final_seeds:
        hand_runs.append(pipeline._one_run(
            cfg, hand, teacher, teacher_ckpt, str(args.teacher), Datasets(data.train, data.val, None), test,
            steps, seed, args.out / "hand_pick" / f"distilled-seed{seed}", args.threads, True, "test.json"))
    return hand_runs, data, test, teacher


def report(args, result, hand_runs, data, teacher, final_seeds, search_seconds, hand_seconds) -> None:  # noqa: ANN001
    images = [data.val.load_image(i) for i in range(min(args.timing_images, len(data.val)))]
    models = {"teacher": teacher, "chosen": load_detector(args.out / "final" / "distilled-seed0" / "last.pt"),
              "hand pick": load_detector(args.out / "hand_pick" / "distilled-seed0" / "last.pt")}
    lat = {k: Latency.from_seconds(v) for k, v in interleaved_times(models, images, args.threads).items()}
    torch.set_num_threads(args.threads)

    chosen = {int(k): v for k, v in result.final["distilled"]["per_seed"].items()}
    picked = {r["seed"]: r["metrics"] for r in hand_runs}
    lines = [f"search: {result.chosen} chosen on {result.validation['split']} ({result.validation['images']} images) "
             f"among {len(result.shortlist)} distilled for {result.budget_steps} steps; target {result.target}",
             f"search wall time {result.seconds['total']:.0f} s (candidates {result.seconds['candidates']:.0f}, timing "
             f"{result.seconds['timing']:.0f}, short runs {result.seconds['search_runs']:.0f}, final runs "
             f"{result.seconds['final_runs']:.0f}); hand pick's runs {hand_seconds:.0f} s; script {search_seconds:.0f} s"]
    for name in ("teacher", "chosen", "hand pick"):
        lines.append(f"{name:10s} {lat[name].median_ms:7.1f} ms [p10 {lat[name].p10_ms:.1f}, p90 {lat[name].p90_ms:.1f}]"
                     f"  {lat['teacher'].median_ms / lat[name].median_ms:5.2f}x the teacher's images/s "
                     f"({len(images)} images, batch 1, {args.threads} thread(s), interleaved)")
    for metric in ("mAP50", "AP"):
        c = [chosen[s][metric] for s in final_seeds]
        h = [picked[s][metric] for s in final_seeds]
        line = (f"test {metric}: chosen {statistics.fmean(c):.3f} {['%.3f' % v for v in c]}, hand pick "
                f"{statistics.fmean(h):.3f} {['%.3f' % v for v in h]}, teacher "
                f"{result.teacher['test']['metrics'][metric]:.3f}")
        if len(final_seeds) >= 2:
            d = paired_difference(h, c)
            line += f"; chosen − hand pick {d.mean:+.3f} (95 % CI [{d.ci_low:+.3f}, {d.ci_high:+.3f}], {d.n} seeds)"
        lines.append(line)
    if "baseline" in result.final:
        b = result.final["baseline"]["mean"]
        lines.append(f"chosen without the teacher: test mAP50 {b['mAP50']:.3f}, AP {b['AP']:.3f}")
    text = "\n".join(lines)
    print(text)
    (args.out / "compare.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
