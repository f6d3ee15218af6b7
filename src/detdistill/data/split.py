"""Splits made for the user (``data.auto_split=[0.8, 0.1, 0.1]``, ``data.auto_split_seed``): seeded,
stratified, stable.

:func:`stratified_split` assigns every image to ``train``, ``val`` or ``test``:

* **stable**: the assignment depends only on the images' file names, their classes and the seed (not on the
  order a reader lists them), so two opens of the same files give the same split and another seed another;
* **stratified** (iterative stratification, Sechidis et al. 2011, as in scikit-multilearn): classes are taken
  rarest first, and each class first gets one image in every part that lacks it (while it has images left:
  "where it can"), then its other images go to the part that most wants that class, ties broken by the part
  that most wants images overall; images without boxes fill the parts last. Part sizes follow the
  fractions to within a few images, and every class with at least as many images as parts appears in each.

The parts become the splits ``train``, ``val`` and ``test``; a run writes them into its folder
(:func:`write_split`) and ``detdistill data stats --auto-split`` prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils import atomic_write_text
from .base import DatasetError, DetectionDataset

PARTS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float], where: str = "data.auto_split") -> list[float]:
    values = [float(f) for f in fractions]
    if len(values) != 3 or any(not np.isfinite(f) or f < 0 for f in values) or values[0] <= 0 \
            or abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(f"{where}: value {list(fractions)!r}; expected [train, val, test] fractions >= 0 that sum "
                           "to 1, train > 0 (e.g. [0.8, 0.1, 0.1])")
    return values


def stratified_split(file_names: Sequence[str], classes: Sequence[Sequence[int]], fractions: Sequence[float],
                     seed: int) -> np.ndarray:
    """The part (0 train, 1 val, 2 test) of each image; ``classes[i]``: the labels of image ``i``'s boxes.

    Example:
        >>> parts = stratified_split([f"{i}.jpg" for i in range(10)], [[1]] * 10, [0.8, 0.1, 0.1], seed=0)
        >>> np.bincount(parts, minlength=3).tolist()
        [8, 1, 1]
    """
    f = np.asarray(check_fractions(fractions), np.float64)
    n = len(file_names)
    if n == 0:
        return np.zeros(0, np.int64)
    # Stable: every decision is made in file-name order, with a seeded tie-break key per image.
    canonical = np.argsort(np.asarray(file_names, dtype=object), kind="stable")
    key = np.empty(n, np.int64)
    key[canonical] = np.random.default_rng(seed).permutation(n)
    present = [np.unique(np.asarray(c, np.int64)) for c in classes]
    labels = sorted({int(c) for p in present for c in p})
    column = {c: k for k, c in enumerate(labels)}
    images_of: dict[int, list[int]] = {c: [] for c in labels}
    for i, p in enumerate(present):
        for c in p:
            images_of[int(c)].append(i)
    count = np.array([len(images_of[c]) for c in labels], np.float64)
    want_class = count[:, None] * f[None, :]
    want = np.floor(n * f)  # whole-image quotas, the remainder to the largest fractional parts
    for p in np.argsort(-(n * f - want), kind="stable")[: n - int(want.sum())]:
        want[p] += 1
    positive = [p for p in np.argsort(-f, kind="stable") if f[p] > 0]
    part = np.full(n, -1, np.int64)
    holds = np.zeros((len(labels), 3), bool)

    def assign(i: int, p: int) -> None:
        part[i] = p
        want[p] -= 1
        for c in present[i]:
            want_class[column[int(c)], p] -= 1
            holds[column[int(c)], p] = True

    for c in sorted(labels, key=lambda c: (len(images_of[c]), c)):
        k = column[c]
        todo = sorted((i for i in images_of[c] if part[i] < 0), key=lambda i: key[i])
        for p in positive:  # one image in each part that lacks the class, while there are images
            if todo and not holds[k, p]:
                assign(todo.pop(0), p)
        for i in todo:
            assign(i, max(_open(positive, want), key=lambda p: (want_class[k, p], want[p], -p)))
    for i in sorted(np.flatnonzero(part < 0).tolist(), key=lambda i: key[i]):
        assign(i, max(positive, key=lambda p: (want[p], -p)))
    return part


def _open(parts: list[int], want: np.ndarray) -> list[int]:
    """The parts still below their size (all of them once every part is full)."""
    return [p for p in parts if want[p] > 0] or parts


def split_dataset(dataset: DetectionDataset, fractions: Sequence[float], seed: int) -> dict[str, DetectionDataset]:
    """``dataset`` cut into ``train``/``val``/``test`` datasets (a part with fraction 0 is left out)."""
    import copy

    table = dataset.records
    names = [table.file_name(i) for i in range(len(table))]
    starts = table.box_offsets
    classes = [table.labels[starts[i]:starts[i + 1]] for i in range(len(table))]
    parts = stratified_split(names, classes, fractions, seed)
    out: dict[str, DetectionDataset] = {}
    for p, split in enumerate(PARTS):
        idx = np.flatnonzero(parts == p)
        if not len(idx):
            continue
        ds = copy.copy(dataset)
        ds.records = table.take(idx)
        ds.split = split
        ds.name = f"{dataset.name.rsplit('-', 1)[0]}-{split}"
        ds.auto_split = {"fractions": list(map(float, fractions)), "seed": int(seed)}
        out[split] = ds
    return out


def split_summary(parts: dict[str, DetectionDataset], fractions: Sequence[float], seed: int) -> dict:
    """What :func:`write_split` records and ``data stats`` prints: sizes and per-class images of each part."""
    any_ds = next(iter(parts.values()))
    summary: dict = {"fractions": list(map(float, fractions)), "seed": int(seed), "parts": {}}
    for split, ds in parts.items():
        t = ds.records
        per_class = {}
        for k, name in enumerate(ds.class_names):
            has = np.zeros(len(t), bool)
            has[t.box_image_index[t.labels == k + 1]] = True
            per_class[name] = int(has.sum())
        summary["parts"][split] = {"images": len(ds), "boxes": int(len(t.labels)), "images_per_class": per_class}
    summary["class_names"] = list(any_ds.class_names)
    return summary


def format_split(summary: dict) -> str:
    """Lines for ``data stats``: one per part, with its images and per-class image counts."""
    f = summary["fractions"]
    lines = [f"auto split {f} (seed {summary['seed']}):"]
    for split, info in summary["parts"].items():
        per = ", ".join(f"{n} {c}" for n, c in info["images_per_class"].items())
        lines.append(f"  {split}: {info['images']} images, {info['boxes']} boxes; images with each class: {per}")
    return "\n".join(lines)


def write_split(parts: dict[str, DetectionDataset], fractions: Sequence[float], seed: int, folder: str | Path) -> Path:
    """``folder/splits/<part>.txt`` (one image path a line, as the reader names it) and
    ``folder/splits/auto_split.json`` (fractions, seed, sizes); each written atomically."""
    out = Path(folder) / "splits"
    for split, ds in parts.items():
        names = [ds.records.file_name(i) for i in range(len(ds))]
        atomic_write_text("".join(n + "\n" for n in names), out / f"{split}.txt")
    atomic_write_text(json.dumps(split_summary(parts, fractions, seed), indent=2), out / "auto_split.json")
    return out
