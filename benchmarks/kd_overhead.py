"""Distillation overhead: one Distiller step vs (a student training step + a teacher no-grad forward).

Same batches, interleaved (kd, student, teacher, kd, ...), median of many; the ratio line is printed last.
Target <= 1.10: the Distiller runs the student once and only the teacher's backbone, RPN head and RoI head on
the student's samples (no second student pass, no teacher anchors matching, proposal filtering or NMS).

    .venv/bin/python benchmarks/kd_overhead.py                      # cpu_base -> cpu_tiny, synthetic 160 px
    .venv/bin/python benchmarks/kd_overhead.py --pair bccd          # mobilenet_v2_fpn -> mobilenet_v2_050_fpn, 448 px
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detdistill.config import DistillConfig
from detdistill.data import DetectionAugment, SyntheticConfig, SyntheticShapes, build_loader
from detdistill.distill.distiller import Distiller
from detdistill.models import build_detector

PAIRS = {
    "synthetic": ("cpu_base", "cpu_tiny", {}, 160),
    "bccd": ("mobilenet_v2_fpn", "mobilenet_v2_050_fpn", {}, 480),
}


def timed_step(module, optimizer, images, targets) -> float:  # noqa: ANN001
    """Seconds of one training step (forward, backward, update); teacher_cache.py times with it too."""
    start = time.perf_counter()
    losses = module(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="synthetic")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher_name, student_name, overrides, size = PAIRS[args.pair]
    torch.manual_seed(0)
    teacher = build_detector(teacher_name, 7, **overrides).eval()
    student = build_detector(student_name, 7, **overrides)
    plain = build_detector(student_name, 7, **overrides)
    plain.load_state_dict(student.state_dict())
    distiller = Distiller(teacher, student, DistillConfig()).train()
    plain.train()
    opt_kd = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=1e-4, momentum=0.9)
    data = SyntheticShapes("train", num_images=args.batch * 8, config=SyntheticConfig(image_size=size,
                           min_size=size // 12, max_size=size // 3))
    batches = list(build_loader(data, args.batch, train=True, transforms=DetectionAugment()))
    kd, student_t, teacher_t = [], [], []
    for i in range(args.repeats + 3):
        images, targets = batches[i % len(batches)]
        a = timed_step(distiller, opt_kd, images, targets)
        b = timed_step(plain, opt_plain, images, targets)
        start = time.perf_counter()
        with torch.no_grad():
            teacher(images)
        c = time.perf_counter() - start
        if i >= 3:  # warm-up
            kd.append(a), student_t.append(b), teacher_t.append(c)
    kd_m, st_m, te_m = statistics.median(kd), statistics.median(student_t), statistics.median(teacher_t)
    print(f"pair {args.pair}: teacher {teacher_name}, student {student_name}, input {size} px, batch {args.batch}, "
          f"{args.threads} threads, {args.repeats} interleaved repeats")
    print(f"distillation step:        median {kd_m * 1000:.0f} ms")
    print(f"student training step:    median {st_m * 1000:.0f} ms")
    print(f"teacher no-grad forward:  median {te_m * 1000:.0f} ms")
    print(f"ratio kd / (student step + teacher forward) = {kd_m / (st_m + te_m):.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
