"""Inference speed of teachers and students: PyTorch and ONNX Runtime, batch 1 and 8, latency p50/p90.

Every model is measured in the same process, interleaved per repeat, with fixed threads and a warm-up; params
and GFLOPs (torch.utils.flop_counter) alongside. The ratio lines (student vs teacher images/s) come last.
Target for the default pair (cpu_base -> cpu_tiny): student >= 3x the teacher's images/s.

    .venv/bin/python benchmarks/speed.py                   # CPU-scale family at 160 px
    .venv/bin/python benchmarks/speed.py --bccd            # + the MobileNetV2-FPN pair and their _s8 forms, 640x480
    .venv/bin/python benchmarks/speed.py --torchvision     # + R50-FPN and MobileNetV3-FPN for scale
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detdistill.models import build_detector
from detdistill.models.describe import count_flops
from detdistill.models.timing import interleaved_times


def _time(fn, repeats: int, warmup: int = 2) -> list[float]:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _onnx_runner(model, size, tmp: Path):  # noqa: ANN001, ANN202
    try:
        import onnxruntime as ort

        from detdistill.models.export import export_onnx
    except ImportError:
        return None
    path = export_onnx(model, tmp / "m.onnx", sample_size=size)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image.numpy()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bccd", action="store_true")
    parser.add_argument("--torchvision", action="store_true")
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    groups = [("synthetic", (160, 160), ["cpu_base", "cpu_small", "cpu_tiny"], {})]
    if args.bccd:
        groups.append(("bccd", (480, 640), ["mobilenet_v2_fpn", "mobilenet_v2_050_fpn", "mobilenet_v2_050_fpn_s8",
                                            "mobilenet_v2_fpn_s8"], {}))
    if args.torchvision:
        groups.append(("torchvision", (480, 640), ["fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn"],
                       {"min_size": 480, "max_size": 640}))
    ratios = []
    print(f"{args.threads} threads, {args.repeats} repeats, images/s from the median")
    print(f"{'model':36s} {'input':>9s} {'params':>8s} {'GFLOPs':>7s} {'b1 img/s':>9s} {'p50 ms':>7s} "
          f"{'p90 ms':>7s} {'b8 img/s':>9s} {'ORT b1 img/s':>12s}")
    for group, (h, w), names, overrides in groups:
        image = torch.rand(3, h, w)
        batch8 = [torch.rand(3, h, w) for _ in range(8)]
        models = {n: build_detector(n, 7, **overrides).eval() for n in names}
        rows = {}
        with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
            # interleaved: every model sees the same machine state (the library's timer, as the demo and shrink)
            b1 = interleaved_times(models, [image] * args.repeats, args.threads, warmup=2)
            for n, m in models.items():
                b8 = statistics.median(_time(lambda: m(batch8), max(3, args.repeats // 4)))
                ort = None if args.no_onnx else _onnx_runner(m, (h, w), Path(tmp))
                ort_ips = None
                if ort is not None:
                    ort_ips = 1.0 / statistics.median(_time(lambda: ort(image), args.repeats))
                params = sum(p.numel() for p in m.parameters())
                gflops = count_flops(m, image) / 1e9
                med = statistics.median(b1[n])
                rows[n] = 1.0 / med
                print(f"{n:36s} {h}x{w:<5d} {params / 1e6:7.2f}M {gflops:7.2f} {1 / med:9.1f} {med * 1e3:7.1f} "
                      f"{_p(b1[n], 0.9) * 1e3:7.1f} {8 / b8:9.1f} "
                      f"{(f'{ort_ips:.1f}' if ort_ips else 'n/a'):>12s}")
        teacher = names[0]
        for n in names[1:]:
            ratios.append(f"[{group}] {n} / {teacher} images/s (batch 1) = {rows[n] / rows[teacher]:.2f}x")
    for line in ratios:
        print(line + ("  (target >= 3x)" if "cpu_tiny / cpu_base" in line else ""))


if __name__ == "__main__":
    main()
