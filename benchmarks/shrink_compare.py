"""``detdistill shrink``'s choice against a hand-picked student, same data, schedule, recipe and seeds.

Runs the search (:func:`detdistill.shrink.search`), then trains the hand pick with the search's own run
function on the same training set (the hold-out excluded when there is one): one distillation of
``--budget-steps`` (what choosing it by hand would cost: one validation run) and its final runs, the same
final steps and seeds as the choice; scores both on the test split, and times the teacher, the chosen
student and the hand pick side by side in this process (interleaved image by image, the library's timer).
Prints one line per figure, the paired difference (chosen − hand pick) with its 95 % CI when there are two
seeds or more, and the search's wall time against the hand pick's (its short run plus its final runs).

    # the synthetic demo pair against the demo's lean cpu_small
    python benchmarks/shrink_compare.py --demo --teacher T.pt --target-speedup 3 --out runs/shrink/demo
    # BCCD against the configs' stride-8 student + pkd
    python benchmarks/shrink_compare.py --config configs/bccd_student.yaml --teacher runs/bccd/teacher/last.pt \
        --target-speedup 4 --hand-pick mobilenet_v2_050_fpn_s8 --hand-overrides '{}' --final-seeds 3 \
        --out runs/shrink/bccd
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from detdistill.config import load_config
from detdistill.models import load_detector
from detdistill.models.timing import Latency, interleaved_times
from detdistill.shrink import Candidate, check_inputs, cpu_timer, pipeline, search
from detdistill.shrink.front import DEFAULT_TARGET_MARGIN
from detdistill.shrink.timing import speed_up_ci
from detdistill.shrink.candidates import FAMILIES, LOWRANK_RATIOS, TEST_TIERS
from detdistill.stats import paired_difference


def demo_config(out: Path):  # noqa: ANN201
    """The demo's student config (data, schedule, batch, lr), with its test split scored by the runs."""
    from detdistill.demo import FULL
    from detdistill.demo.training import experiment

    cfg = experiment(FULL, "distilled", 0, out)
    cfg.data.test_split = "test"
    return cfg


def add_teacher_and_data(parser: argparse.ArgumentParser) -> None:
    """The flags that name the teacher and the data, shared by the shrink benchmarks."""
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--demo", action="store_true", help="the demo's config (synthetic, 1500 steps)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def config_from(args: argparse.Namespace, out: Path):  # noqa: ANN201
    """The demo's config (its runs under ``out``) with ``--demo``, else ``--config`` with the overrides."""
    return demo_config(out) if args.demo else load_config(args.config, list(args.overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_teacher_and_data(parser)
    parser.add_argument("--target-speedup", type=float, default=None)
    parser.add_argument("--target-ms", type=float, default=None)
    parser.add_argument("--target-margin", type=float, default=DEFAULT_TARGET_MARGIN)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-steps", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--finalists", type=int, default=2)
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
    cfg = config_from(args, args.out)
    final_seeds = list(range(args.final_seeds))
    if args.hand_only:
        train_hand_pick(args, cfg, final_seeds, cfg.train.max_steps if args.final_steps is None else args.final_steps)
        return
    result = search(args.teacher, cfg, out=args.out, target_speedup=args.target_speedup, target_ms=args.target_ms,
                    target_margin=args.target_margin, threads=args.threads, budget_steps=args.budget_steps,
                    candidates=args.candidates, finalists=args.finalists, final_steps=args.final_steps,
                    with_baseline=args.with_baseline, seeds=args.seeds, final_seeds=final_seeds,
                    timing_images=args.timing_images)
    search_seconds = time.perf_counter() - start
    t0 = time.perf_counter()
    hand_runs, short, plan = train_hand_pick(args, cfg, final_seeds, result.final_steps)
    hand_seconds = time.perf_counter() - t0
    report(args, result, hand_runs, short, plan, final_seeds, search_seconds, hand_seconds)


def _plan(args, cfg):  # noqa: ANN001, ANN202
    """The search's own plan (same inputs, so the same datasets, hold-out, teacher cache and keys)."""
    inputs = check_inputs(teacher=args.teacher, out=args.out, target_speedup=args.target_speedup,
                          target_ms=args.target_ms, target_margin=args.target_margin, threads=args.threads,
                          budget_steps=args.budget_steps, candidates=args.candidates, finalists=args.finalists,
                          final_steps=args.final_steps, seeds=args.seeds, final_seeds=args.final_seeds,
                          timing_images=args.timing_images, holdout_fraction=0.2, holdout_seed=0)
    return pipeline.open_plan(cfg, inputs, families=FAMILIES, lowrank_ratios=LOWRANK_RATIOS, tiers=TEST_TIERS,
                              with_baseline=args.with_baseline, timer=cpu_timer, progress=True, report=False,
                              log=lambda line: None, hook=lambda step: None)


def train_hand_pick(args, cfg, final_seeds, steps):  # noqa: ANN001, ANN201
    """The hand pick: one ``--budget-steps`` distillation scored on validation, then its final runs on the
    search's own training set (the same hold-out left out), scored where the choice's final runs are."""
    if args.hand_overrides is None:
        from detdistill.demo.recipe import LEAN_STUDENT

        overrides = dict(LEAN_STUDENT)
    else:
        overrides = json.loads(args.hand_overrides)
    hand = Candidate("hand-pick", "zoo", "hand", args.hand_pick, overrides)
    plan = _plan(args, cfg)
    final_on = plan.test if plan.test is not None else plan.data.val
    short = pipeline._one_run(plan, hand, True, plan.data.val, args.budget_steps, final_seeds[0],
                              args.out / "hand_pick" / f"short-seed{final_seeds[0]}")
    hand_runs = [pipeline._one_run(plan, hand, True, final_on, steps, seed,
                                   args.out / "hand_pick" / f"distilled-seed{seed}") for seed in final_seeds]
    return hand_runs, short, plan


def report(args, result, hand_runs, short, plan, final_seeds, search_seconds, hand_seconds) -> None:  # noqa: ANN001
    data = plan.data
    n = min(args.timing_images, len(data.val))
    images = [data.val.load_image(i) for i in range(n)] * pipeline.FINAL_SPEED_ROUNDS
    models = {"teacher": plan.teacher, "chosen": load_detector(args.out / "final" / "distilled-seed0" / "last.pt"),
              "hand pick": load_detector(args.out / "hand_pick" / "distilled-seed0" / "last.pt")}
    secs = interleaved_times(models, images, args.threads)
    lat = {k: Latency.from_seconds(v) for k, v in secs.items()}
    torch.set_num_threads(args.threads)

    chosen = {int(k): v for k, v in result.final["distilled"]["per_seed"].items()}
    picked = {r["seed"]: r["metrics"] for r in hand_runs}
    sec = result.seconds
    hand_train = short["train_seconds"] + sum(r["train_seconds"] for r in hand_runs)
    rungs = ", ".join(f"{len(r['entered'])} x {r['steps']}" for r in result.rungs)
    lines = [f"search: {result.chosen} chosen on {result.validation['split']} ({result.validation['images']} images) "
             f"by successive halving ({rungs} steps, {len(result.seeds)} seed(s)); target {result.target}",
             f"search wall time {sec['total']:.0f} s (generate {sec['generate']:.0f}, time {sec['time']:.0f}, rank "
             f"{sec['rank']:.0f}, distil {sec['distil']:.0f}, finish {sec['finish']:.0f}; script {search_seconds:.0f})"
             f"; hand pick: one {args.budget_steps}-step distillation + its final run(s) {hand_seconds:.0f} s wall "
             f"({hand_train:.0f} s training, the teacher cache shared with the search); search / hand pick "
             f"{sec['total'] / max(hand_seconds, hand_train):.2f}x"]
    for r in result.rungs:
        lines.append(f"rung {r['index'] + 1} ({r['steps']} steps): " + ", ".join(
            f"{cid} {r['scores'][cid].get('mAP50', 0):.3f}{'' if cid in r['kept'] else ' (cut)'}"
            for cid in sorted(r["entered"], key=lambda c: -r["scores"][c].get("mAP50", 0))))
    for name in ("teacher", "chosen", "hand pick"):
        lo, hi = speed_up_ci(secs["teacher"], secs[name])
        lines.append(f"{name:10s} {lat[name].median_ms:7.1f} ms [p10 {lat[name].p10_ms:.1f}, p90 {lat[name].p90_ms:.1f}]"
                     f"  {lat['teacher'].median_ms / lat[name].median_ms:5.2f}x the teacher's images/s "
                     f"(95 % CI {lo:.2f}-{hi:.2f}x; {n} images x {pipeline.FINAL_SPEED_ROUNDS}, batch 1, "
                     f"{args.threads} thread(s), interleaved)")
    for metric in ("mAP50", "AP"):
        c = [chosen[s][metric] for s in final_seeds]
        h = [picked[s][metric] for s in final_seeds]
        line = (f"{result.final_split_role} {metric}: chosen {statistics.fmean(c):.3f} {['%.3f' % v for v in c]}, hand pick "
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
