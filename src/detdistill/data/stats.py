"""Dataset statistics: what ``detdistill data stats`` prints and plots.

Counts are of what the files annotate: boxes a reader skipped or dropped (see
:mod:`detdistill.data.validate`) are counted in ``annotated`` and listed as problems, so the totals match
a dataset's own documentation (bccd: 4888 boxes, two of them zero-area). Box sizes use COCO's area bounds
(small < 32², medium < 96², large otherwise) on the record's area (the COCO file's own area where present,
else the box area).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_write_text
from .base import DetectionDataset
from .validate import check_images

SMALL_AREA, MEDIUM_AREA = 32.0**2, 96.0**2
SIZE_BUCKETS = ("small", "medium", "large")


@dataclass
class ClassStats:
    name: str
    boxes: int  # kept by the reader
    removed: int  # skipped or dropped by the reader (still annotated in the files)
    images: int  # images with at least one kept box of this class
    small: int
    medium: int
    large: int

    @property
    def annotated(self) -> int:
        return self.boxes + self.removed


@dataclass
class DatasetStats:
    name: str
    images: int
    negatives: int
    boxes: int
    removed: int
    boxes_per_image_min: int
    boxes_per_image_mean: float
    boxes_per_image_max: int
    classes: list[ClassStats]
    problems: dict[str, int]
    problem_examples: dict[str, list[str]]
    image_problems: list[str] | None = None
    box_sqrt_areas: list[float] = field(default_factory=list, repr=False)

    @property
    def annotated(self) -> int:
        return self.boxes + self.removed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("box_sqrt_areas")
        d["annotated"] = self.annotated
        for c, cd in zip(self.classes, d["classes"]):
            cd["annotated"] = c.annotated
        return d


def checked_image_problems(dataset: DetectionDataset) -> list[str]:
    """The pre-flight check's findings (:mod:`.image_check`, cached): what a run would leave out, and the
    truncated files ``data.on_bad_image=repair`` (the default) would decode as far as they go."""
    from .image_check import check_images as preflight, checkable

    if not checkable(dataset):
        return check_images(dataset)  # generated images: decoded through the dataset itself
    report = preflight([dataset], "repair", apply=False)
    return report.skipped + [f"{m.removesuffix('; decoded as far as it goes')} (repairable: data.on_bad_image=repair "
                             "decodes it as far as it goes; skip or error leave it out or stop)" for m in report.repaired]


def size_bucket(area: np.ndarray) -> np.ndarray:
    """0 small, 1 medium, 2 large (COCO's bounds)."""
    return np.digitize(np.asarray(area, np.float64), [SMALL_AREA, MEDIUM_AREA])


def dataset_stats(dataset: DetectionDataset, check: bool = False) -> DatasetStats:
    """Statistics of ``dataset``; ``check=True`` also decodes every image (missing, corrupt, size mismatch).

    Example:
        >>> from detdistill.data import SyntheticShapes
        >>> s = dataset_stats(SyntheticShapes("val", num_images=3, seed=0))
        >>> s.images, s.boxes == sum(c.boxes for c in s.classes)
        (3, True)
    """
    k = len(dataset.class_names)
    # Whole-dataset array operations on the record table: a COCO-size set takes a second, not a minute.
    table = dataset.records
    labels = table.labels - 1
    counts = np.bincount(labels, minlength=k)[:k]
    per_image = table.num_boxes
    present = np.zeros((len(table), k), bool)  # (image, class) pairs with a kept box
    present[table.box_image_index, labels] = True
    image_counts = present.sum(axis=0)
    buckets = np.bincount(labels * 3 + size_bucket(table.area), minlength=3 * k)[:3 * k].reshape(k, 3)
    sqrt_areas: list[float] = np.sqrt(np.clip(table.area, 0, None)).tolist()
    skips = getattr(dataset, "skips", None)
    removed_by_class = dict(skips.removed_by_class) if skips is not None else {}
    classes = [ClassStats(n, int(counts[i]), int(removed_by_class.get(n, 0)), int(image_counts[i]),
                          *(int(b) for b in buckets[i])) for i, n in enumerate(dataset.class_names)]
    # Removed boxes of names outside class_names (unknown classes) still count as annotated in the total.
    removed = sum(removed_by_class.values())
    return DatasetStats(
        name=dataset.name, images=len(dataset), negatives=int((per_image == 0).sum()), boxes=int(counts.sum()),
        removed=int(removed),
        boxes_per_image_min=int(per_image.min()) if len(per_image) else 0,
        boxes_per_image_mean=float(per_image.mean()) if len(per_image) else 0.0,
        boxes_per_image_max=int(per_image.max()) if len(per_image) else 0,
        classes=classes,
        problems=dict(skips.counts) if skips is not None else {},
        problem_examples={r: list(v) for r, v in skips.examples.items()} if skips is not None else {},
        image_problems=checked_image_problems(dataset) if check else None,
        box_sqrt_areas=sqrt_areas,
    )


def format_stats(stats: DatasetStats) -> str:
    """A plain-text table plus summary lines and problems."""
    header = ("class", "annotated", "kept", "removed", "images", "small", "medium", "large")
    rows = [(c.name, c.annotated, c.boxes, c.removed, c.images, c.small, c.medium, c.large) for c in stats.classes]
    total = ("total", stats.annotated, stats.boxes, stats.removed, stats.images - stats.negatives,
             sum(c.small for c in stats.classes), sum(c.medium for c in stats.classes),
             sum(c.large for c in stats.classes))
    table = [header, *rows, total]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]

    def fmt(r: tuple) -> str:
        return "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))

    lines = [f"dataset {stats.name}: {stats.images} images ({stats.negatives} without boxes), "
             f"{stats.annotated} boxes annotated, {stats.boxes} kept, {stats.removed} removed",
             f"boxes per image: min {stats.boxes_per_image_min}, mean {stats.boxes_per_image_mean:.1f}, "
             f"max {stats.boxes_per_image_max}",
             "", fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows),
             "  ".join("-" * w for w in widths), fmt(total), ""]
    lines.append("images: images with a kept box of the class; small/medium/large: kept boxes by COCO area "
                 "(< 32x32, < 96x96, larger)")
    if stats.problems:
        lines.append("problems found:")
        for reason, n in sorted(stats.problems.items()):
            lines.append(f"  {reason}: {n}")
            lines.extend(f"    {ex}" for ex in stats.problem_examples.get(reason, []))
    else:
        lines.append("problems found: none")
    if stats.image_problems is not None:
        lines.append(f"image check: {len(stats.image_problems)} problems" if stats.image_problems
                     else "image check: every image decodes to its annotated size")
        lines.extend(f"  {p}" for p in stats.image_problems)
    return "\n".join(lines)


def plot_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Histogram PNG: boxes per class (kept and removed) and the box-size distribution (√area)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [c.name for c in stats.classes]
    x = np.arange(len(names))
    ax1.bar(x, [c.boxes for c in stats.classes], label="kept")
    ax1.bar(x, [c.removed for c in stats.classes], bottom=[c.boxes for c in stats.classes], label="removed")
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.set_ylabel("boxes")
    ax1.set_title(f"{stats.name}: boxes per class")
    ax1.legend()
    sizes = np.asarray(stats.box_sqrt_areas)
    if len(sizes):
        ax2.hist(sizes, bins=40, color="tab:gray")
    for bound in (32, 96):
        ax2.axvline(bound, color="tab:red", linestyle="--")
    ax2.set_xlabel("sqrt(box area), pixels (COCO bounds at 32 and 96)")
    ax2.set_ylabel("boxes")
    ax2.set_title("box sizes")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_stats_json(stats: DatasetStats, path: str | Path) -> Path:
    return atomic_write_text(json.dumps(stats.to_dict(), indent=2), path)
