"""Cost of the finiteness check every weight load runs (``checks.check_finite_weights``), on
fasterrcnn_resnet50_fpn_v2-sized weights (random init, weights=None: the values do not change the cost),
against the strict ``load_state_dict`` it precedes, side by side in one process, one thread.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonfinite_check.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detdistill.checks import check_finite_weights
from detdistill.models import build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fasterrcnn_resnet50_fpn_v2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_detector(args.model, 91)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = sum(v.numel() for v in state.values() if v.is_floating_point())
    check, load = [], []
    for _ in range(args.repeats):  # interleaved
        start = time.perf_counter()
        check_finite_weights(state, args.model)
        check.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.load_state_dict(state)
        load.append(time.perf_counter() - start)
    c, ld = statistics.median(check), statistics.median(load)
    print(f"{args.model}: {len(state)} tensors, {params / 1e6:.1f} M values, torch threads {torch.get_num_threads()},"
          f" median of {args.repeats}")
    print(f"  finiteness check {c * 1e3:7.1f} ms   load_state_dict {ld * 1e3:7.1f} ms   ratio {c / ld:.2f}x")


if __name__ == "__main__":
    main()
