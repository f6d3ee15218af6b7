"""`shrink` in the deployment runtime against the eager search at the same target: which student each chooses,
its speed in that runtime and in eager fp32 (the teacher timed alongside), and its test mAP as it ships.

Each search runs in its own process (``--which eager`` and ``--which openvino-int8``, one core each); ``--which
compare`` then loads both chosen students and measures them side by side in one process::

    OMP_NUM_THREADS=1 python benchmarks/shrink_runtime.py --demo --teacher runs/shrink/demo-teacher/last.pt \\
        --target-speedup 4 --which eager --out runs/shrink/runtime
    OMP_NUM_THREADS=1 python benchmarks/shrink_runtime.py ... --which openvino-int8 --input-size 160x160
    OMP_NUM_THREADS=1 python benchmarks/shrink_runtime.py ... --which compare --input-size 160x160

The same flags go to all three calls (the searches' folders are keyed by them; ``compare`` only reads).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shrink_compare import add_teacher_and_data, config_from  # noqa: E402

from detdistill.deploy.speed import RuntimeTimer  # noqa: E402
from detdistill.engine.run import open_datasets  # noqa: E402
from detdistill.eval.inference import evaluate_model  # noqa: E402
from detdistill.models import load_detector  # noqa: E402
from detdistill.models.timing import Latency  # noqa: E402
from detdistill.shrink import search  # noqa: E402
from detdistill.utils import atomic_write_text  # noqa: E402

SEARCHES = ("eager", "openvino-int8")


def run_search(args: argparse.Namespace, which: str) -> None:
    timer = {} if which == "eager" else {"timer": RuntimeTimer("openvino", "int8", args.input_size)}
    cfg = config_from(args, args.out / "config")
    result = search(args.teacher, cfg, out=args.out / which, target_speedup=args.target_speedup,
                    threads=args.threads, budget_steps=args.budget_steps, candidates=args.candidates,
                    finalists=args.finalists, final_steps=args.final_steps, seeds=1,
                    final_seeds=list(range(args.final_seeds)), timing_images=args.timing_images, **timer)
    print(f"{which}: chose {result.chosen}; {result.final_split_role} mAP@0.5 "
          f"{result.final['distilled']['mean'].get('mAP50', 0):.3f} ({result.scored_as}); "
          f"search {result.seconds.get('total', 0):.0f} s")


def compare(args: argparse.Namespace) -> None:
    cfg = config_from(args, args.out / "config")
    data = open_datasets(cfg)
    test = data.test if data.test is not None else data.val
    teacher = load_detector(args.teacher)
    chosen = {which: json.loads((args.out / which / "summary.json").read_text())["chosen"] for which in SEARCHES}
    students = {which: load_detector(args.out / which / "student.pt") for which in SEARCHES}
    images = [test.load_image(i) for i in range(min(args.num_images, len(test)))]
    torch.set_num_threads(args.threads)
    models = {"teacher": teacher, **{f"chosen by {w}": m for w, m in students.items()}}
    int8 = RuntimeTimer("openvino", "int8", args.input_size)
    # One run: every model in torch fp32 and as its int8 export, interleaved image by image.
    both = {**{f"{k} @torch fp32": m for k, m in models.items()}, **{f"{k} @{int8.name}": m for k, m in models.items()}}
    secs = int8(both, images, args.threads, 2, eager=[k for k in both if k.endswith("@torch fp32")])
    lat: dict[str, dict[str, float]] = {}
    for key, seconds in secs.items():
        name, runtime = key.rsplit(" @", 1)
        lat.setdefault(runtime, {})[name] = Latency.from_seconds(seconds).median_ms
    eager_teacher = lat["torch fp32"]["teacher"]
    rows = []
    for which, model in students.items():
        name = f"chosen by {which}"
        scores = {"torch fp32": evaluate_model(model, test, batch_size=1, progress=False).metrics,
                  int8.name: int8.evaluate(model, test, data.train, args.threads)}
        rows.append({"search": which, "chosen": chosen[which],
                     **{f"{r} ms": lat[r][name] for r in lat},
                     **{f"{r} x teacher eager": eager_teacher / lat[r][name] for r in lat},
                     **{f"{r} test mAP50": float(s["mAP50"]) for r, s in scores.items()},
                     **{f"{r} test AP": float(s["AP"]) for r, s in scores.items()}})
    out = {"teacher_ms": {r: lat[r]["teacher"] for r in lat}, "images": len(images), "threads": args.threads,
           "rows": rows}
    atomic_write_text(json.dumps(out, indent=1), args.out / "compare.json")
    print(f"teacher: {', '.join(f'{r} {ms:.1f} ms' for r, ms in out['teacher_ms'].items())}; "
          f"{len(images)} {test.name} images, {args.threads} thread(s), interleaved")
    for row in rows:
        print(f"[shrink-runtime] {row['search']} search chose {row['chosen']}: "
              + "; ".join(f"{r} {row[f'{r} ms']:.1f} ms = {row[f'{r} x teacher eager']:.2f}x the teacher's eager "
                          f"images/s, test mAP@0.5 {row[f'{r} test mAP50']:.3f} / AP {row[f'{r} test AP']:.3f}"
                          for r in lat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_teacher_and_data(parser)
    parser.add_argument("--which", choices=[*SEARCHES, "compare"], required=True)
    parser.add_argument("--target-speedup", type=float, required=True)
    parser.add_argument("--input-size", default="dynamic", help="HxW of the OpenVINO exports, or dynamic")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--finalists", type=int, default=2)
    parser.add_argument("--budget-steps", type=int, default=100)
    parser.add_argument("--final-steps", type=int, default=None)
    parser.add_argument("--final-seeds", type=int, default=1)
    parser.add_argument("--timing-images", type=int, default=20)
    parser.add_argument("--num-images", type=int, default=50, help="test images timed by --which compare")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.which == "compare":
        compare(args)
    else:
        run_search(args, args.which)


if __name__ == "__main__":
    main()
