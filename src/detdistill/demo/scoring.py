"""Scoring the demo's models side by side: accuracy on the held-out test split, CPU images/s at batch 1."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..data.base import DetectionDataset
from ..models.timing import interleaved_times


@dataclass
class ModelRow:
    """One model of the demo's table, addressed by ``name`` (teacher, baseline, distilled)."""

    name: str
    mAP50: float
    AP: float
    images_per_s: float
    speed_up: float
    steps: int
    recipe: str
    params: int = 0
    gflops: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@torch.no_grad()
def measure_images_per_s(models: Mapping[str, nn.Module], images: Sequence[torch.Tensor],
                         threads: int, warmup: int = 2) -> dict[str, float]:
    """Batch-1 images/s of each model from the median over ``images``, models interleaved image by image
    (:func:`detdistill.models.timing.interleaved_times`)."""
    times = interleaved_times(models, images, threads, warmup)
    return {name: 1.0 / statistics.median(values) for name, values in times.items()}


def score_models(models: Mapping[str, nn.Module], test: DetectionDataset, *, steps: Mapping[str, int],
                 recipes: Mapping[str, str], threads: int, speed_images: int,
                 reference: str = "teacher") -> tuple[dict[str, ModelRow], dict[str, Any]]:
    """One :class:`ModelRow` per model (speed-up relative to ``reference``) and each model's EvalResult."""
    from ..eval.inference import evaluate_model
    from ..models.describe import count_flops

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = {name: evaluate_model(model, test, batch_size=8) for name, model in models.items()}
    finally:
        torch.set_num_threads(old)
    images = [test.load_image(i) for i in range(min(len(test), speed_images))]
    speed = measure_images_per_s(models, images, threads)
    rows: dict[str, ModelRow] = {}
    for name, model in models.items():
        rows[name] = ModelRow(
            name=name, mAP50=float(results[name].metrics["mAP50"]), AP=float(results[name].metrics["AP"]),
            images_per_s=speed[name], speed_up=speed[name] / speed[reference], steps=int(steps[name]),
            recipe=recipes[name], params=sum(p.numel() for p in model.parameters()),
            gflops=count_flops(model, images[0]) / 1e9)
    return rows, results
