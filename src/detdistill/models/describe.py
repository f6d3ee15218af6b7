"""What a detector costs: parameters, GFLOPs at a given input, CPU latency (median and p90 at batch 1)."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .factory import build_detector
from .registry import get_entry, list_models
from ..errors import ModelError


@dataclass(frozen=True)
class ModelDescription:
    """Costs of one detector at ``image_size`` (the raw input; ``model_input`` is after the model's resize).

    ``gflops`` counts one eval forward at batch 1 (``torch.utils.flop_counter``: a multiply-add is 2 FLOPs;
    RoI ops and NMS are not counted). Latencies are wall-clock milliseconds with ``threads`` CPU threads.
    """

    name: str
    params: int
    trainable_params: int
    gflops: float
    latency_ms_median: float
    latency_ms_p90: float
    image_size: tuple[int, int]
    model_input: tuple[int, int]
    threads: int
    runs: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_flops(model: nn.Module, image: torch.Tensor) -> int:
    """FLOPs of one eval forward of ``model`` on ``image`` (C×H×W)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model([image])
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def describe(model: nn.Module, image_size: tuple[int, int] = (160, 160), threads: int = 2, runs: int = 10,
             warmup: int = 2, name: str | None = None) -> ModelDescription:
    """Measure ``model`` on a random image of ``image_size`` (fixed seed) on CPU.

    Example:
        >>> from detdistill.models import build_detector
        >>> d = describe(build_detector("cpu_tiny", 7), (160, 160), runs=1, warmup=0)
        >>> d.params == sum(p.numel() for p in build_detector("cpu_tiny", 7).parameters())
        True
    """
    if runs < 1 or warmup < 0 or threads < 1:
        raise ModelError(f"describe needs runs >= 1, warmup >= 0, threads >= 1 (got {runs}, {warmup}, {threads})")
    h, w = image_size
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = count_flops(model, image)
    transform = getattr(model, "transform", None)
    model_input = tuple(transform([image])[0].tensors.shape[-2:]) if transform is not None else (h, w)
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        torch.set_num_threads(threads)
        with torch.no_grad():
            for i in range(warmup + runs):
                start = time.perf_counter()
                model([image])
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    spec_name = getattr(model, "detdistill_spec", {}).get("name", type(model).__name__)
    return ModelDescription(
        name=name or spec_name, params=params, trainable_params=trainable, gflops=flops / 1e9,
        latency_ms_median=statistics.median(times), latency_ms_p90=float(np.percentile(times, 90)),
        image_size=(h, w), model_input=(int(model_input[0]), int(model_input[1])), threads=threads, runs=runs,
    )


def describe_zoo(names: Sequence[str] | None = None, num_classes: int = 7, image_size: tuple[int, int] = (160, 160),
                 threads: int = 2, runs: int = 3, warmup: int = 1, **overrides: Any) -> list[ModelDescription]:
    """:func:`describe` each registered model (``weights=None``), built with ``num_classes`` and ``overrides``."""
    rows = []
    for name in names or list_models():
        get_entry(name)
        model = build_detector(name, num_classes, **overrides)
        rows.append(describe(model, image_size, threads=threads, runs=runs, warmup=warmup, name=name))
    return rows


def format_table(rows: Sequence[ModelDescription]) -> str:
    """A Markdown table of :func:`describe` results."""
    lines = ["| model | params | GFLOPs | model input | CPU latency median / p90 (ms) |",
             "| --- | ---: | ---: | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r.name} | {r.params / 1e6:.2f} M | {r.gflops:.2f} | {r.model_input[0]}×{r.model_input[1]} "
                     f"| {r.latency_ms_median:.0f} / {r.latency_ms_p90:.0f} |")
    if rows:
        r = rows[0]
        lines.append(f"\nraw input {r.image_size[0]}×{r.image_size[1]}, batch 1, {r.threads} threads, "
                     f"{r.runs} timed runs")
    return "\n".join(lines)
