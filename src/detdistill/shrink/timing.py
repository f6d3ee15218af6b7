"""Timing the candidates against the teacher on this machine, side by side in one process.

Every candidate and the teacher run batch 1 on the same images (the teacher's input: real images of the
dataset, resized by each model's own transform, which pairing makes the teacher's), interleaved image by
image with :func:`detdistill.models.timing.interleaved_times` — the timer of the demo and of
``benchmarks/speed.py`` — warm-up excluded. A speed-up is the ratio of two medians of that one run.

How a set of models is timed is one parameter, a :data:`Timer` (default :func:`cpu_timer`, eager PyTorch on
the CPU): the candidates' table and the trained student's final check both go through it, so another
runtime or precision is a different ``Timer`` passed to :func:`~detdistill.shrink.search` (its ``name``
enters the timing table's key, so a table measured one way is never reused for another).

The table is cached in the run folder (``timing.json``), keyed by what it measured (candidate ids, teacher
file hash, thread count, image count, the timer), so a resumed search does not time again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..models.timing import Latency, interleaved_times
from ..utils import atomic_write_text
from .candidates import Candidate, build_candidate

TEACHER = "teacher"

Timer = Callable[[dict[str, nn.Module], Sequence[torch.Tensor], int, int, Callable[[int], None] | None],
                 dict[str, list[float]]]
"""``timer(models, images, threads, warmup, progress) -> {name: seconds per image}``: every model on every
image, batch 1, warm-up excluded; ``progress(n)`` after each image when given."""


def cpu_timer(models: dict[str, nn.Module], images: Sequence[torch.Tensor], threads: int, warmup: int,
              progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Eager PyTorch on the CPU, models interleaved image by image (the demo's and ``benchmarks/speed.py``'s
    timer)."""
    return interleaved_times(models, images, threads, warmup, progress=progress)


def speed_up_ci(teacher_s: Sequence[float], student_s: Sequence[float], resamples: int = 2000,
                seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the speed-up (ratio of medians), resampling the paired timings.

    The timings are paired: entry ``i`` of each list was measured on the same image at the same moment
    (interleaved), so the pairs are resampled together and a load change moves both sides of a pair.

    >>> speed_up_ci([0.02] * 10, [0.01] * 10)
    (2.0, 2.0)
    >>> lo, hi = speed_up_ci([0.020, 0.024, 0.030, 0.021, 0.026], [0.010, 0.011, 0.016, 0.009, 0.012])
    >>> lo < 0.024 / 0.011 < hi
    True
    """
    import numpy as np

    t, s = np.asarray(teacher_s, float), np.asarray(student_s, float)
    if t.shape != s.shape or t.size == 0:
        raise ValueError(f"speed_up_ci: paired timings needed, got {t.size} and {s.size}")
    idx = np.random.default_rng(seed).integers(0, t.size, size=(resamples, t.size))
    ratios = np.median(t[idx], axis=1) / np.median(s[idx], axis=1)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return float(lo), float(hi)


def timer_name(timer: Timer) -> str:
    return str(getattr(timer, "name", getattr(timer, "__name__", type(timer).__name__)))


@dataclass(frozen=True)
class Timing:
    """One model's measured latency and its speed-up over the teacher (teacher median / its median)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float
    speed_up: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TimingTable:
    """Timings of the teacher (key :data:`TEACHER`) and every candidate id, and how they were measured."""

    rows: dict[str, Timing]
    threads: int
    images: int
    warmup: int
    clock: str
    key: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": {k: v.as_dict() for k, v in self.rows.items()}, "threads": self.threads,
                "images": self.images, "warmup": self.warmup, "clock": self.clock, "key": self.key}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TimingTable":
        return cls({k: Timing(**v) for k, v in data["rows"].items()}, int(data["threads"]), int(data["images"]),
                   int(data["warmup"]), str(data["clock"]), dict(data["key"]))


def timing_table(latencies: dict[str, Latency], threads: int, warmup: int, key: dict[str, Any]) -> TimingTable:
    """Speed-ups relative to the teacher's median, from latencies measured in one run."""
    ref = latencies[TEACHER].median_ms
    rows = {name: Timing(lat.median_ms, lat.p10_ms, lat.p90_ms, lat.images_per_s, ref / lat.median_ms)
            for name, lat in latencies.items()}
    images = next(iter(latencies.values())).images
    return TimingTable(rows, threads, images, warmup, "process CPU time" if threads == 1 else "wall", key)


def time_candidates(teacher: nn.Module, candidates: Sequence[Candidate], images: Sequence[torch.Tensor],
                    threads: int, warmup: int = 2, key: dict[str, Any] | None = None, progress: bool = True,
                    build: Callable[[Candidate], nn.Module] | None = None, timer: Timer = cpu_timer) -> TimingTable:
    """Time the teacher and every candidate (built untrained, or from the teacher for low-rank ones) with
    ``timer``."""
    from tqdm.auto import tqdm

    compressed: dict[float, nn.Module] = {}
    build = build or (lambda c: build_candidate(c, teacher, compressed=compressed))
    models: dict[str, nn.Module] = {TEACHER: teacher}
    for cand in tqdm(candidates, desc="shrink: build", unit="model", disable=not progress, leave=False):
        models[cand.id] = build(cand)
    bar = tqdm(total=len(images), desc=f"shrink: time {len(models)} models", unit="image", disable=not progress,
               leave=False)
    try:
        seconds = timer(models, images, threads, warmup, lambda n: bar.update(1))
    finally:
        bar.close()
    return timing_table({name: Latency.from_seconds(s) for name, s in seconds.items()}, threads, warmup, key or {})


def cached_timing(path: Path, key: dict[str, Any]) -> TimingTable | None:
    """The timing table in ``path`` if it measured exactly ``key``, else None (then time again)."""
    try:
        table = TimingTable.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return table if table.key == key else None


def save_timing(table: TimingTable, path: Path) -> Path:
    return atomic_write_text(json.dumps(table.as_dict(), indent=1), path)
