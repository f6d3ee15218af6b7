"""CPU images/s of the demo's teacher and student at batch 1, measured side by side (interleaved), one thread.

Builds both from the demo's recipe (``detdistill.demo.FULL``), untrained, or loads trained checkpoints, and
times them on the demo's test images with the demo's own timer. Run it on an otherwise idle machine: on a
loaded one, time slicing inflates short calls more than long ones and the ratio shrinks.

    .venv/bin/python benchmarks/demo_speed.py
    .venv/bin/python benchmarks/demo_speed.py --teacher T.pt --student S.pt --recipe-proposals --score
"""

from __future__ import annotations

import argparse

import torch

from detdistill.demo import FULL, _test_split
from detdistill.demo.scoring import measure_images_per_s
from detdistill.models import build_detector, load_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (default: untrained, from the recipe)")
    parser.add_argument("--student", default=None, help="student checkpoint (default: untrained, from the recipe)")
    parser.add_argument("--recipe-proposals", action="store_true",
                        help="give a loaded student the recipe's test-time proposal counts (a checkpoint trained "
                             "with other ones)")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--score", action="store_true", help="also score both on the demo's test split (mAP@0.5)")
    parser.add_argument("--threads", type=int, default=FULL.threads)
    args = parser.parse_args()
    torch.manual_seed(0)
    test = _test_split(FULL)
    models = {
        "teacher": load_detector(args.teacher) if args.teacher else
        build_detector(FULL.teacher, test.num_classes, **FULL.teacher_overrides),
        "student": load_detector(args.student) if args.student else
        build_detector(FULL.student, test.num_classes, **FULL.student_overrides),
    }
    if args.recipe_proposals:
        rpn = models["student"].rpn
        rpn._pre_nms_top_n["testing"] = FULL.student_overrides["rpn_pre_nms_top_n_test"]
        rpn._post_nms_top_n["testing"] = FULL.student_overrides["rpn_post_nms_top_n_test"]
    images = [test.load_image(i) for i in range(min(args.images, len(test)))]
    speed = measure_images_per_s(models, images, args.threads)
    for name, value in speed.items():
        params = sum(p.numel() for p in models[name].parameters())
        print(f"{name:8s} {params / 1e6:5.2f} M params  {value:7.1f} images/s")
    if args.score:
        from detdistill.eval.inference import evaluate_model

        maps = {n: float(evaluate_model(m, test, batch_size=8).metrics["mAP50"]) for n, m in models.items()}
        print(f"test mAP@0.5 ({len(test)} images): teacher {maps['teacher']:.3f}, student {maps['student']:.3f} "
              f"({maps['student'] / maps['teacher'] * 100:.0f} % of the teacher's; target >= 85 %)")
    print(f"images/s student / teacher = {speed['student'] / speed['teacher']:.2f}x "
          f"(batch 1, {args.threads} thread(s), {len(images)} test images, interleaved; target >= 3x)")


if __name__ == "__main__":
    main()
