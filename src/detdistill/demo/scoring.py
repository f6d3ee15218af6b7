"""Scoring the demo's models side by side: accuracy on the held-out test split, CPU images/s at batch 1."""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..data.base import DetectionDataset


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


def clock_for(threads: int) -> Callable[[], float]:
    """The timer of a measurement: the process's CPU time with one thread, wall time with more.

    With one thread, CPU time equals wall time on an idle machine but leaves out the time the process waits
    for a core on a shared one; time slicing otherwise inflates a short call (a student) more than a long
    one (the teacher) and shrinks the ratio (measured: 5.2x idle, 2.8x wall-clock under a load of 13 on 2
    cores). With several threads CPU time would add the threads up, so wall time it is.
    """
    return time.process_time if threads == 1 else time.perf_counter


@torch.no_grad()
def measure_images_per_s(models: Mapping[str, nn.Module], images: Sequence[torch.Tensor],
                         threads: int, warmup: int = 2) -> dict[str, float]:
    """Batch-1 images/s of each model from the median over ``images``, models interleaved image by image.

    Interleaving puts every model under the same machine state at the same moment; the rotation keeps any
    one model from always running right after another. Timed with :func:`clock_for` ``(threads)``.
    """
    if not images:
        raise ValueError("measure_images_per_s: no images to time")
    clock = clock_for(threads)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for model in models.values():
            model.eval()
            for image in images[:warmup]:
                model([image])
        for i, image in enumerate(images):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                start = clock()
                models[name]([image])
                times[name].append(clock() - start)
    finally:
        torch.set_num_threads(old)
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
