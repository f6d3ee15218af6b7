"""The pre-flight image check (``data.on_bad_image``): first run and cached run, against one training epoch.

Measured in one process, one thread (``torch.set_num_threads(1)``; run with ``OMP_NUM_THREADS=1``):

1. BCCD (364 JPEGs, 640x480, COCO-like resolution): the check with an empty cache (every image decoded, a
   JPEG at 1/8 scale), then with the cache it wrote (nothing decoded: each file's size and mtime compared);
2. a large folder of generated JPEGs (``--num`` images of ``--size``, written once under ``--large-dir``;
   smooth shapes so they compress like photos): the same two runs;
3. one BCCD training epoch of the teacher recipe (``configs/bccd_teacher.yaml``: mobilenet_v2_fpn, batch 4,
   trainval = 292 images = 73 steps): ``--steps`` timed steps after one warm-up step, times 73.

The image files are in the OS page cache in every run (they were just read or written): a cold disk adds its
read time to the first run only. Per-image costs are printed so a COCO-size set (118k) can be estimated.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/image_check.py --bccd ../shared/data/bccd \\
        --large-dir /work/runs/data-bench/jpegs --num 20000 --size 320x240 --steps 4
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from detdistill.data import DetectionDataset, ImageRecord, open_dataset
from detdistill.data.image_check import check_images


def generate(folder: Path, num: int, size: tuple[int, int]) -> None:
    """``num`` JPEGs of ``size`` (a gradient and a few shapes each), written once; kept for later runs."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sum(1 for _ in folder.glob("*.jpg"))
    if have >= num:
        return
    rng = np.random.default_rng(0)
    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    start = time.perf_counter()
    for k in range(have, num):
        base = (ramp * rng.uniform(0.3, 1.0, 3)[None, None, :] + rng.uniform(0, 60)).clip(0, 255)
        img = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = rng.integers(0, w - 20), rng.integers(0, h - 20)
            draw.ellipse([x, y, x + rng.integers(8, 60), y + rng.integers(8, 60)], fill=tuple(rng.integers(0, 255, 3)))
        img.save(folder / f"{k:06d}.jpg", quality=85)
    print(f"generated {num - have} JPEGs in {time.perf_counter() - start:.0f} s under {folder}")


def folder_dataset(folder: Path, num: int, size: tuple[int, int]) -> DetectionDataset:
    records = [ImageRecord(k, f"{k:06d}.jpg", *size) for k in range(num)]
    return DetectionDataset(records, ["thing"], root=folder, name=folder.name)


def timed_check(make_dataset: Callable[[], DetectionDataset], cache: Path, repeats: int) -> tuple[float, float, int, int]:
    """Seconds of the first run (empty cache) and the median cached run; images decoded in each."""
    shutil.rmtree(cache, ignore_errors=True)
    ds = make_dataset()
    start = time.perf_counter()
    first = check_images([ds], "repair", cache_dir=cache)
    first_s = time.perf_counter() - start
    cached_s, decoded = [], 0
    for _ in range(repeats):
        ds = make_dataset()
        start = time.perf_counter()
        again = check_images([ds], "repair", cache_dir=cache)
        cached_s.append(time.perf_counter() - start)
        decoded = max(decoded, again.decoded)
    return first_s, statistics.median(cached_s), first.decoded, decoded


def epoch_seconds(bccd: Path, steps: int) -> tuple[float, float, int]:
    """(seconds per step, seconds per epoch, steps per epoch) of the BCCD teacher recipe, decode included."""
    from detdistill.data.transforms import DetectionAugment
    from detdistill.models import build_detector

    train = open_dataset(bccd, "trainval", on_bad_box="skip")
    per_epoch = math.ceil(len(train) / 4)
    torch.manual_seed(0)
    model = build_detector("mobilenet_v2_fpn", train.num_classes)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    augment = DetectionAugment()
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        batch = [augment(*train[(step * 4 + i) % len(train)]) for i in range(4)]
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    per_step = statistics.median(times)
    return per_step, per_step * per_epoch, per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=Path, default=Path("../shared/data/bccd"))
    parser.add_argument("--large-dir", type=Path, default=Path("/work/runs/data-bench/jpegs"))
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/data-bench/cache"))
    parser.add_argument("--repeats", type=int, default=3, help="cached runs (the median is reported)")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps (0: skip the epoch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    rows = []
    n_bccd = len(open_dataset(args.bccd, None, on_bad_box="skip"))
    first, cached, d1, d2 = timed_check(lambda: open_dataset(args.bccd, None, on_bad_box="skip"), args.cache / "bccd",
                                        args.repeats)
    rows.append((f"BCCD ({n_bccd} JPEGs, 640x480)", n_bccd, first, cached, d1, d2))
    generate(args.large_dir, args.num, size)
    first, cached, d1, d2 = timed_check(lambda: folder_dataset(args.large_dir, args.num, size), args.cache / "large",
                                        args.repeats)
    rows.append((f"generated ({args.num} JPEGs, {args.size})", args.num, first, cached, d1, d2))
    print("| images | first run (s) | ms/image | cached run (s) | ms/image | decoded: first / cached |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, n, first, cached, d1, d2 in rows:
        print(f"| {name} | {first:.2f} | {1000 * first / n:.2f} | {cached:.3f} | {1000 * cached / n:.3f} | "
              f"{d1} / {d2} |")
    if args.steps:
        per_step, per_epoch, n_steps = epoch_seconds(args.bccd, args.steps)
        print(f"BCCD teacher recipe (mobilenet_v2_fpn, batch 4): {per_step:.2f} s/step (median of {args.steps}), "
              f"one epoch = {n_steps} steps = {per_epoch:.0f} s")
        bccd_first, bccd_cached = rows[0][2], rows[0][3]
        print(f"BCCD check / one epoch: first run {bccd_first / per_epoch:.3%}, cached {bccd_cached / per_epoch:.3%}")


if __name__ == "__main__":
    main()
