"""The demo's teacher (cpu_base on the demo's synthetic data and schedule) at a chosen number of steps, one thread,
for the ``[shrink]`` synthetic line when the demo's own 1500-step teacher is not at hand.

    OMP_NUM_THREADS=1 python benchmarks/shrink_demo_teacher.py --steps 600 --out runs/shrink/demo-teacher

Checkpoints every quarter of the run (``last.pt``); rerun the same command to resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from detdistill.demo import FULL
from detdistill.demo.training import experiment
from detdistill.engine.run import train_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=FULL.steps)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = experiment(FULL.with_(steps=args.steps), "teacher", 0, args.out)
    cfg.train.batch_size = FULL.batch_size  # one process: the demo splits this batch over two
    cfg.train.eval_every = 0
    train_detector(cfg, resume=True)


if __name__ == "__main__":
    main()
