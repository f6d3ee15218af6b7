"""Fakes for the search tests: training that writes the run's initial model, scores from a table."""

from __future__ import annotations

from pathlib import Path

from detdistill.engine.run import build_model
from detdistill.models import save_detector
from detdistill.shrink import search
from detdistill.shrink.candidates import TEST_TIERS

TIERS = (TEST_TIERS[-1],)  # the lean tier only: two candidates from the tiny family
# Validation prefers the 32-wide box head, test the 64-wide one: a search that chose on test would pick head 64.
VAL = {32: 0.6, 64: 0.4, 128: 0.5}
TEST = {32: 0.3, 64: 0.9, 128: 0.8}


class FakeTraining:
    """Writes the run's initial model as its last.pt; records every call; can stop at the n-th call."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[Path, bool]] = []
        self.stop_at = stop_at

    def __call__(self, cfg, data, distill, log) -> None:  # noqa: ANN001
        self.calls.append((Path(cfg.train.out_dir), distill))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        assert data.test is None, "a training run must not see the test split"
        model = build_model(cfg, data.train.num_classes)
        save_detector(Path(cfg.train.out_dir) / "last.pt", model, data.train.class_names)


class FakeScores:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model, dataset, threads) -> dict[str, float]:  # noqa: ANN001
        head = int(model.roi_heads.box_head.fc6.out_features)
        self.calls.append((dataset.name, head))
        table = TEST if dataset.name.endswith("test") else VAL
        return {"mAP50": table[head], "AP": table[head] / 2}


def _search(teacher_path: Path, cfg, out: Path, family, **kwargs):  # noqa: ANN001, ANN003, ANN202
    args = {"target_speedup": 0.01, "budget_steps": 2, "candidates": 2, "finalists": 2, "timing_images": 2,
            "families": [family],
            "lowrank_ratios": (), "tiers": TIERS, "progress": False, "report": False, "log": lambda line: None}
    return search(teacher_path, cfg, out=out, **{**args, **kwargs})
