"""Candidate BCCD students for a speed target: each timed against the trained teacher, interleaved image by image.

Untrained students (speed depends on the architecture and the test-time proposals, not on the weights; trained
models then drift by a few per cent, so keep a margin), batch 1, fixed threads, warm-up excluded, through the
demo's timer (:func:`detdistill.demo.scoring.measure_images_per_s`). Used to pick the full-regime student of
issue #30 (BENCHMARKS.md, "Full regime: a student >= 8x faster").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed_students_bccd.py --teacher runs/bccd/teacher/last.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from detdistill.data.open import open_dataset
from detdistill.demo.scoring import measure_images_per_s
from detdistill.models import build_detector, load_detector

ROOT = Path(__file__).resolve().parents[1]
FEW = {"rpn_pre_nms_top_n_test": 167, "rpn_post_nms_top_n_test": 100}  # a third of the teacher's 500 / 300
SLIM = {"fpn_channels": 32, "representation_size": 128}
CANDIDATES: dict[str, tuple[str, dict]] = {
    "s16 w0.5 (mobilenet_v2_050_fpn)": ("mobilenet_v2_050_fpn", {}),
    "s8 w0.5 (mobilenet_v2_050_fpn_s8)": ("mobilenet_v2_050_fpn_s8", {}),
    "s8 w0.5, proposals 167/100": ("mobilenet_v2_050_fpn_s8", FEW),
    "s8 w0.35 fpn32 head128, proposals 167/100": ("mobilenet_v2_050_fpn_s8", {"width_mult": 0.35, **SLIM, **FEW}),
    "s8 w0.35 fpn24 head128, proposals 167/100": ("mobilenet_v2_050_fpn_s8",
                                                  {"width_mult": 0.35, **SLIM, "fpn_channels": 24, **FEW}),
    "s8 w0.35 fpn32 head128, proposals 100/50": ("mobilenet_v2_050_fpn_s8", {
        "width_mult": 0.35, **SLIM, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50}),
    "s16 w0.35 fpn32 head128, proposals 167/100": ("mobilenet_v2_050_fpn", {"width_mult": 0.35, **SLIM, **FEW}),
    "s8 w0.25 fpn32 head128, proposals 167/100": ("mobilenet_v2_050_fpn_s8", {"width_mult": 0.25, **SLIM, **FEW}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="the trained BCCD teacher checkpoint")
    parser.add_argument("--bccd", type=Path, default=ROOT.parent / "shared" / "data" / "bccd")
    parser.add_argument("--images", type=int, default=20, help="test images timed (each model on each)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    test = open_dataset(str(args.bccd), split="test", on_bad_box="skip")
    images = [test.load_image(i) for i in range(min(args.images, len(test)))]
    models = {"teacher": load_detector(args.teacher).eval()}
    for name, (entry, overrides) in CANDIDATES.items():
        models[name] = build_detector(entry, test.num_classes, **overrides).eval()
    speed = measure_images_per_s(models, images, threads=args.threads)
    print(f"batch 1, {args.threads} thread(s), {len(images)} test images, interleaved; untrained students")
    print("| model | params | images/s | vs teacher |\n|---|---|---|---|")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {params:.2f} M | {speed[name]:.1f} | {speed[name] / speed['teacher']:.2f}x |")


if __name__ == "__main__":
    main()
