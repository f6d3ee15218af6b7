"""`detdistill evaluate` on a detections file vs faster-coco-eval called directly on the same files.

Both sides start from the two JSON paths and end with the 12 COCO numbers: ours reads, validates every
detection, scores with faster-coco-eval and builds the per-class table; the direct side is the tool's
documented four calls. Repeats are interleaved (ours, direct, ours, ...) and the medians compared; the
ratio line is printed last (target <= 1.5x).

    .venv/bin/python benchmarks/eval_speed.py --gt GT.json --detections DETS.json
    .venv/bin/python benchmarks/eval_speed.py --checkpoint best.pt --data ../shared/data/bccd --split test
    .venv/bin/python benchmarks/eval_speed.py            # an untrained cpu_small on 200 synthetic val images

Without files, the detections come from a model run once (not timed) through ``evaluate --checkpoint
--save-detections --save-gt``; ``--min-score 0`` keeps 100 detections per image, the load AP sees.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def direct(gt: Path, dets: Path) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        ev = COCOeval_faster(coco, coco.loadRes(str(dets)), iouType="bbox", print_function=lambda *a: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12])


def ours(gt: Path, dets: Path) -> np.ndarray:
    from detdistill.eval.coco import COCO_ALL_KEYS
    from detdistill.eval.commands import evaluate_files

    result = evaluate_files(gt, dets)
    result.per_class  # noqa: B018 - part of what `evaluate` prints
    return np.array([result.metrics[k] for k in COCO_ALL_KEYS])


def make_files(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    from detdistill.cli import main

    checkpoint = args.checkpoint
    if checkpoint is None:
        from detdistill.data import SyntheticShapes
        from detdistill.models import build_detector, save_detector

        torch.manual_seed(0)
        ds = SyntheticShapes("val", num_images=200, seed=0)
        checkpoint = save_detector(folder / "untrained.pt", build_detector("cpu_small", num_classes=ds.num_classes),
                                   ds.class_names, ds.category_ids)
    gt, dets = folder / "gt.json", folder / "dets.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", args.data, "--min-score", str(args.min_score),
            "--save-detections", str(dets), "--save-gt", str(gt)]
    if args.split:
        argv += ["--split", args.split]
    if args.data.startswith("synthetic"):
        argv += ["--split", "val", "--num-images", "200"] if not args.split else []
    with contextlib.redirect_stdout(io.StringIO()):
        if main(argv) != 0:
            sys.exit("could not produce detections")
    return gt, dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path)
    parser.add_argument("--detections", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--split", default=None)
    parser.add_argument("--min-score", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        if args.gt and args.detections:
            gt, dets = args.gt, args.detections
        else:
            gt, dets = make_files(args, Path(tmp))
        import json

        n_dets, n_imgs = len(json.loads(dets.read_text())), len(json.loads(gt.read_text())["images"])
        a, b = ours(gt, dets), direct(gt, dets)  # warm-up, and the numbers must agree
        if not np.array_equal(a, b):
            sys.exit(f"MISMATCH: ours {a.tolist()} vs direct {b.tolist()}")
        t_ours, t_direct = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours(gt, dets)
            t_ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            direct(gt, dets)
            t_direct.append(time.perf_counter() - start)
        mo, md = statistics.median(t_ours), statistics.median(t_direct)
        print(f"files: {gt.name} ({n_imgs} images), {dets.name} ({n_dets} detections)")
        print(f"AP {a[0]:.4f}  AP50 {a[1]:.4f}  AP75 {a[2]:.4f}  (identical 12 numbers on both sides)")
        print(f"detdistill evaluate (in-process): median {mo * 1000:.1f} ms over {args.repeats}")
        print(f"faster-coco-eval direct:          median {md * 1000:.1f} ms over {args.repeats}")
        print(f"ratio evaluate / faster-coco-eval = {mo / md:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
