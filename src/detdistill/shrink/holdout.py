"""Validation for the search: the dataset's own split, or a seeded hold-out of the training split.

The search chooses on validation and never on test. A validation split that shares images with the training
split (BCCD's ``val`` is part of ``trainval``) would choose on images the candidates trained on, so it is
treated as absent: the hold-out takes its place, and its image list is written to the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.base import DatasetError, DetectionDataset
from ..utils import atomic_write_text

HOLDOUT_FILE = "holdout.json"


class SubsetDataset(DetectionDataset):
    """The images ``indices`` of ``base``, in that order (images are read through ``base``)."""

    def __init__(self, base: DetectionDataset, indices: Sequence[int], name: str) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        super().__init__(base.records.take(self.indices), base.class_names, base.category_ids, root=None,
                         transforms=base.transforms, name=name)

    def image_path(self, idx: int) -> Path:
        return self.base.image_path(self.indices[idx])

    def load_image(self, idx: int) -> torch.Tensor:
        return self.base.load_image(self.indices[idx])


def overlapping_images(train: DetectionDataset, val: DetectionDataset) -> int:
    """How many of ``val``'s images are also in ``train`` (by resolved image path)."""
    seen = {str(train.image_path(i)) for i in range(len(train))}
    return sum(str(val.image_path(i)) in seen for i in range(len(val)))


def holdout_split(train: DetectionDataset, fraction: float, seed: int) -> tuple[SubsetDataset, SubsetDataset]:
    """A seeded random ``fraction`` of ``train`` (at least one image, and one left to train on) as validation.

    >>> from detdistill.data.synthetic import SyntheticShapes
    >>> fit, val = holdout_split(SyntheticShapes("train", num_images=10), 0.2, seed=0)
    >>> len(fit), len(val), sorted(set(fit.indices) | set(val.indices)) == list(range(10))
    (8, 2, True)
    """
    n = len(train)
    if n < 2:
        raise DatasetError(f"{train.name}: {n} training image(s) cannot be split into a training and a hold-out "
                           "part; give the config a validation split (data.val_split) or more training images")
    k = min(n - 1, max(1, int(round(fraction * n))))
    order = np.random.default_rng(seed).permutation(n)
    val_idx, fit_idx = sorted(order[:k].tolist()), sorted(order[k:].tolist())
    return (SubsetDataset(train, fit_idx, f"{train.name}[-holdout]"),
            SubsetDataset(train, val_idx, f"{train.name}[holdout]"))


def write_holdout(path: Path, val: SubsetDataset, fraction: float, seed: int, reason: str) -> Path:
    info: dict[str, Any] = {"reason": reason, "seed": seed, "fraction": fraction, "train_images": len(val.base),
                            "holdout_images": [str(val.base.records.file_name(i)) for i in val.indices],
                            "holdout_indices": val.indices}
    return atomic_write_text(json.dumps(info, indent=1), path)
