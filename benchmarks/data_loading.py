"""Data loading vs training: loader images/s against the images/s a training step consumes (default recipe).

Both on the same machine in one run: first the loader alone (synthetic train split, augmentation, batch 4),
then training steps of the demo's teacher and student on pre-loaded batches. Target: loader >= 3x training.

    .venv/bin/python benchmarks/data_loading.py [--workers 0] [--bccd]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detdistill.data import DetectionAugment, SyntheticShapes, build_loader
from detdistill.models import build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--bccd", action="store_true", help="also the bccd VOC reader (JPEG decoding)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sources = [("synthetic", SyntheticShapes("train", num_images=400))]
    if args.bccd:
        from pathlib import Path

        from detdistill.data.open import open_dataset

        root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"
        sources.append(("bccd", open_dataset(root, split="trainval", on_bad_box="skip")))
    lines = []
    for name, ds in sources:
        loader = build_loader(ds, 4, train=True, transforms=DetectionAugment(), num_workers=args.workers)
        start, n = time.perf_counter(), 0
        batches = []
        for images, targets in loader:
            n += len(images)
            batches.append((images, targets))
            if len(batches) >= args.batches:
                break
        load_ips = n / (time.perf_counter() - start)
        model_name = "cpu_base" if name == "synthetic" else "mobilenet_v2_fpn"
        model = build_detector(model_name, ds.num_classes).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        times = []
        for images, targets in batches[:12]:
            t = time.perf_counter()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        train_ips = 4 / statistics.median(times[2:])
        print(f"{name}: loader {load_ips:.1f} images/s ({args.workers} workers), {model_name} training "
              f"{train_ips:.1f} images/s")
        lines.append(f"[{name}] loader / training images/s = {load_ips / train_ips:.1f}x (target >= 3x)")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
