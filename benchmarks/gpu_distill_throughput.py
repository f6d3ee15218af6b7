"""GPU distillation throughput: R50-FPN -> MobileNetV3-FPN Distiller steps vs plain student steps, with AMP.

Both run the Trainer's recipe on one GPU: fp16 autocast, GradScaler, channels_last, SGD. The anchor layouts
of the two torchvision models differ, so the RPN terms are off (the Distiller refuses them); the RCN soft and
bounded losses and the hints (paired by stride) are on. Steps are interleaved (distill, plain, distill, ...)
on the same batches after a warm-up, timed with CUDA synchronisation, median of many; the ratio line is last.
Target: distillation images/s >= 0.8x plain student training images/s.

    python benchmarks/gpu_distill_throughput.py                   # batch 8, 800 px (torchvision's default size)
    python benchmarks/gpu_distill_throughput.py --device cpu --size 256 --batch 2 --repeats 2   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detdistill.config import DistillConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.distill.distiller import Distiller
from detdistill.models import build_detector

TEACHER, STUDENT = "fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_step(module, optimizer, scaler, images, targets, device, amp) -> float:  # noqa: ANN001
    _sync(device)
    start = time.perf_counter()
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        losses = module(images, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(sum(losses.values())).backward()
    scaler.step(optimizer)
    scaler.update()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=800, help="image side; both models resize to it")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--classes", type=int, default=21, help="classes including background (VOC: 21)")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    kw = {"min_size": args.size, "max_size": args.size}
    teacher = build_detector(TEACHER, args.classes, **kw)
    student = build_detector(STUDENT, args.classes, **kw)
    plain = build_detector(STUDENT, args.classes, **kw)
    plain.load_state_dict(student.state_dict())
    distiller = Distiller(teacher, student, DistillConfig(rpn_soft=False, rpn_bounded=False)).to(device).train()
    plain = plain.to(device).train()
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    distiller.to(memory_format=fmt), plain.to(memory_format=fmt)

    def sgd(params):  # noqa: ANN001, ANN202
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)

    opt_kd = sgd([p for p in distiller.parameters() if p.requires_grad])
    opt_plain = sgd(plain.parameters())
    scaler_kd = torch.amp.GradScaler(device.type, enabled=amp)
    scaler_plain = torch.amp.GradScaler(device.type, enabled=amp)
    data = SyntheticShapes("train", num_images=args.batch * 4, config=SyntheticConfig(
        image_size=args.size, min_size=args.size // 16, max_size=args.size // 3))
    batches = []
    for b in range(4):
        items = [data[b * args.batch + i] for i in range(args.batch)]
        images = [img.to(device) for img, _ in items]  # 3-D; the transform batches them
        targets = [{k: v.to(device) for k, v in t.items()} for _, t in items]
        batches.append((images, targets))
    kd, st = [], []
    for i in range(args.warmup + args.repeats):
        images, targets = batches[i % len(batches)]
        a = _timed_step(distiller, opt_kd, scaler_kd, images, targets, device, amp)
        b = _timed_step(plain, opt_plain, scaler_plain, images, targets, device, amp)
        if i >= args.warmup:
            kd.append(a), st.append(b)
    peak = ""
    if device.type == "cuda":
        peak = f", peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
              f"cudnn {torch.backends.cudnn.version()}")
    kd_m, st_m = statistics.median(kd), statistics.median(st)
    print(f"teacher {TEACHER} ({sum(p.numel() for p in teacher.parameters()) / 1e6:.1f}M), student {STUDENT} "
          f"({sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M); batch {args.batch}, {args.size} px, "
          f"AMP {'fp16' if amp else 'off'}, {args.repeats} interleaved repeats{peak}")
    print(f"terms: {', '.join(k for k, on in distiller.plan.terms.items() if on)}; "
          f"hint pairs at strides {[p.stride for p in distiller.plan.hint_pairs]}")
    print(f"distillation step:     median {kd_m * 1000:.1f} ms  ({args.batch / kd_m:.1f} images/s)")
    print(f"student training step: median {st_m * 1000:.1f} ms  ({args.batch / st_m:.1f} images/s)")
    print(f"ratio distillation / plain student images/s = {st_m / kd_m:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
