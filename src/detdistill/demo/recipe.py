"""What the demo trains: the data, the teacher/student pair, one schedule for every model, the thread count."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The student's per-image fixed costs shrink with it: at 160 px the RoI heads, NMS over the proposals and
# the detections dominate a small backbone's time (a trained cpu_base teacher: backbone 5 ms, RPN 5 ms, RoI
# heads 16 ms per image on one thread), so a student that kept the teacher's 150 proposals and 100 detections
# would be barely faster than it (measured: 2.5x with cpu_tiny). Synthetic images hold 2-6 objects, so 20
# proposals and 20 detections lose little: a trained lean cpu_small scored 0.642 / 0.638 / 0.631 validation
# mAP@0.5 with 50 / 30 / 20 proposals, at 2.55x / 3.04x / 3.23x the teacher's images/s (benchmarks/demo_speed.py
# timer, one thread, a loaded machine). Training-time sampling is halved too (cheaper steps; 150 steps in,
# a student with the teacher's sampling was no better: 0.087 vs 0.095 validation mAP@0.5).
LEAN_STUDENT: dict[str, Any] = {
    "representation_size": 64,
    "rpn_post_nms_top_n_train": 150,
    "box_batch_size_per_image": 64,
    "rpn_pre_nms_top_n_test": 40,
    "rpn_post_nms_top_n_test": 20,
    "box_detections_per_img": 20,
}

ROLES = ("teacher", "baseline", "distilled")

# Shown beside a single-seed page when its folder holds no multi-seed result of the same recipe.
RECORDED_SPREAD_NOTE = (
    "Seeds spread a single run's mAP@0.5 with this recipe by ±0.025 (baseline) and ±0.018 (distilled), the std "
    "over 5 seeds measured on 2 cores (BENCHMARKS.md, demo); distilled − baseline was +0.106 (95 % CI [+0.088, "
    "+0.125]). `detdistill demo --seeds 3` measures the spread on your machine, and this page then shows it.")


@dataclass(frozen=True)
class DemoRecipe:
    """Sizes and budgets of the demo. Every model trains ``steps`` steps (a fair schedule, printed on the page).

    ``threads`` is fixed (and recorded) because the thread count alone changes a run's result. The teacher
    trains first, data-parallel over ``teacher_processes`` single-thread processes (``batch_size`` split
    between them; at 160 px a second thread in one process bought ~10 %, a second process 1.9x: 0.26 against
    0.50 s per step); then ``jobs`` single-thread students run side by side, a seed's baseline and distilled
    student together. The teacher beside the baseline, then the distilled student alone took 18.3 min.
    """

    preset: str = "default"
    teacher: str = "cpu_base"
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    student: str = "cpu_small"
    student_overrides: dict[str, Any] = field(default_factory=lambda: dict(LEAN_STUDENT))
    num_train: int = 1200
    num_val: int = 100
    num_test: int = 200
    steps: int = 1500
    batch_size: int = 4
    lr: float = 0.02
    warmup_steps: int = 50
    eval_every: int = 150
    """Validation every N steps, so each curve on the page has steps / eval_every points."""
    teacher_min_map: float = 0.3
    """Floor for the teacher check; the demo's teacher must clear it honestly (never switched off)."""
    threads: int = 1
    teacher_processes: int = 2
    jobs: int = 2
    speed_images: int = 40
    """Test images timed per model (batch 1, models interleaved image by image)."""

    def steps_per_model(self) -> dict[str, int]:
        return {role: self.steps for role in ROLES}

    def with_(self, **changes: Any) -> "DemoRecipe":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps_per_model"] = self.steps_per_model()
        return out


FULL = DemoRecipe()
QUICK = DemoRecipe(num_train=160, num_val=20, num_test=30, steps=60, eval_every=12, teacher_min_map=0.01,
                   speed_images=6)
