"""Batch-1 CPU timing of several detectors side by side: the one timer of the demo, ``shrink`` and the benchmarks.

Speed-ups are ratios measured in one run, never numbers taken from a table: every model is timed on the same
images, interleaved image by image, after a warm-up that is not counted.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DetDistillError


def clock_for(threads: int) -> Callable[[], float]:
    """The timer of a measurement: the process's CPU time with one thread, wall time with more.

    With one thread, CPU time equals wall time on an idle machine but leaves out the time the process waits
    for a core on a shared one; time slicing otherwise inflates a short call (a student) more than a long
    one (the teacher) and shrinks the ratio (measured: 5.2x idle, 2.8x wall-clock under a load of 13 on 2
    cores). With several threads CPU time would add the threads up, so wall time it is.
    """
    return time.process_time if threads == 1 else time.perf_counter


@torch.no_grad()
def interleaved_times(models: Mapping[str, nn.Module], images: Sequence[torch.Tensor], threads: int,
                      warmup: int = 2, progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Seconds per image of each model at batch 1, models interleaved image by image (warm-up not counted).

    Interleaving puts every model under the same machine state at the same moment; the rotation keeps any
    one model from always running right after another. Timed with :func:`clock_for` ``(threads)``.
    ``progress(n)`` is called after each image with the number of images done.

    >>> from detdistill.models import build_detector
    >>> m = build_detector("cpu_tiny", 3)
    >>> t = interleaved_times({"a": m, "b": m}, [torch.rand(3, 64, 64)] * 2, threads=1, warmup=0)
    >>> [len(v) for v in t.values()]
    [2, 2]
    """
    if not images:
        raise DetDistillError("interleaved_times: no images to time; pass one image or more")
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
            if progress is not None:
                progress(i + 1)
    finally:
        torch.set_num_threads(old)
    return times


@dataclass(frozen=True)
class Latency:
    """Milliseconds per image of one model: median and the 10th / 90th percentiles (the spread)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    images: int

    @property
    def images_per_s(self) -> float:
        return 1000.0 / self.median_ms

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> "Latency":
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(float(statistics.median(ms.tolist())), float(np.percentile(ms, 10)), float(np.percentile(ms, 90)),
                   len(ms))
