"""How the search's distil step grows with ``--candidates``: one search per first-rung size, each in its own run
folder seeded with the same candidate list, timing table and teacher cache (hard links from ``--from``, a
finished search of the same teacher and data: keys hold no paths, so they are reused and the fixed parts are
not counted again), a 1-step final run. Prints, per size, the rungs, the runs, the training steps and the
distil step's wall time.

    OMP_NUM_THREADS=1 python benchmarks/shrink_growth.py --demo --teacher T.pt --from runs/shrink/demo-s3-long \\
        --target-speedup 3 --budget-steps 40 --sizes 4 16 --out runs/shrink/growth
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from shrink_compare import demo_config

from detdistill.config import load_config
from detdistill.shrink import search


def _seed_folder(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("candidates.json", "timing.json"):
        shutil.copyfile(src / name, dst / name)
    for path in (src / "teacher_cache").rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--target-speedup", type=float, required=True)
    parser.add_argument("--budget-steps", type=int, default=40)
    parser.add_argument("--finalists", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for n in args.sizes:
        out = args.out / f"n{n}"
        cfg = demo_config(out) if args.demo else load_config(args.config)
        _seed_folder(args.source, out)
        result = search(args.teacher, cfg, out=out, target_speedup=args.target_speedup, candidates=n,
                        finalists=args.finalists, budget_steps=args.budget_steps, final_steps=1, seeds=1,
                        final_seeds=1, report=False, progress=False, log=lambda line: None)
        runs = sum(len(r["entered"]) for r in result.rungs)
        steps = sum(len(r["entered"]) * r["steps"] for r in result.rungs)
        rungs = ", ".join(f"{len(r['entered'])} x {r['steps']}" for r in result.rungs)
        print(f"candidates {n}: rungs {rungs} steps; {runs} runs, {steps} training steps; distil "
              f"{result.seconds['distil']:.0f} s (generate {result.seconds['generate']:.0f} s, time "
              f"{result.seconds['time']:.0f} s: reused); chose {result.chosen}", flush=True)


if __name__ == "__main__":
    main()
