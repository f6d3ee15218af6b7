"""Timing the candidates against the teacher on this machine, side by side in one process.

Every candidate and the teacher run batch 1 on the same images (the teacher's input: real images of the
dataset, resized by each model's own transform, which pairing makes the teacher's), interleaved image by
image with :func:`detdistill.models.timing.interleaved_times` — the timer of the demo and of
``benchmarks/speed.py`` — warm-up excluded. A speed-up is the ratio of two medians of that one run.

The table is cached in the run folder (``timing.json``), keyed by what it measured (candidate ids, teacher
file hash, thread count, image count), so a resumed search does not time again.
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
                    build: Callable[[Candidate], nn.Module] | None = None) -> TimingTable:
    """Time the teacher and every candidate (built untrained, or from the teacher for low-rank ones)."""
    from tqdm.auto import tqdm

    compressed: dict[float, nn.Module] = {}
    build = build or (lambda c: build_candidate(c, teacher, compressed=compressed))
    models: dict[str, nn.Module] = {TEACHER: teacher}
    for cand in tqdm(candidates, desc="shrink: build", unit="model", disable=not progress, leave=False):
        models[cand.id] = build(cand)
    bar = tqdm(total=len(images), desc=f"shrink: time {len(models)} models", unit="image", disable=not progress,
               leave=False)
    try:
        seconds = interleaved_times(models, images, threads, warmup, progress=lambda n: bar.update(1))
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
