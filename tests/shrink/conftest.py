"""A tiny teacher checkpoint, a tiny synthetic config and a small candidate grid for the shrink tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from detdistill.config import ExperimentConfig
from detdistill.data.synthetic import CLASS_NAMES
from detdistill.models import build_detector, save_detector
from detdistill.shrink.candidates import Family



@pytest.fixture(scope="session")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    model = build_detector("cpu_tiny", len(CLASS_NAMES) + 1, min_size=64, max_size=64)
    save_detector(path, model, CLASS_NAMES)
    return path


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.num_train_images = 6
    cfg.data.num_eval_images = 4
    cfg.train.batch_size = 2
    cfg.train.max_steps = 2
    cfg.train.device = "cpu"
    cfg.train.progress = False
    cfg.distill.teacher_min_map = 0.0
    cfg.distill.teacher_eval_images = 1
    return cfg


def _tiny_family() -> Family:
    """One width, one FPN width, two box-head widths: two architectures (times the test-time tiers)."""
    return Family("cpu", "cpu_small", "widths", (0.25,), (16,), (32, 64), base_widths=(32, 64, 128),
                  takes_strides=True)


@pytest.fixture
def tiny_family() -> Family:
    return _tiny_family()


@pytest.fixture(scope="module")
def tiny_family_module() -> Family:
    return _tiny_family()
