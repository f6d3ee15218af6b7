"""Every split a run reads, opened the one way: layout detected, ``data.auto_split`` applied, images checked
once before step 1 (:mod:`.image_check`).

``train``, ``distill``, ``ablate``, ``shrink``, ``cache-teacher`` and the study runner open their data through
:func:`open_config_datasets` (via ``engine.run.open_datasets``); ``evaluate`` and ``predict`` through
:func:`open_dataset` with ``auto_split``/``on_bad_image``. So a split made for the user is the same split for
every command, and a bad image is found before any work starts, never at step N.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..utils import atomic_write_text
from .base import DatasetError, DetectionDataset
from .image_check import ImageCheckReport, check_images, check_on_bad_image
from .open import open_auto_split, open_dataset
from .split import PARTS, split_summary, write_split

log = logging.getLogger("detdistill.data")


@dataclass
class PreparedData:
    """The splits of a run, and what was done to them before step 1."""

    train: DetectionDataset
    val: DetectionDataset | None
    test: DetectionDataset | None
    image_check: ImageCheckReport | None = None
    auto_split: dict[str, Any] | None = None  # split_summary() of data.auto_split, None without one
    parts: dict[str, DetectionDataset] = field(default_factory=dict, repr=False)

    def write_records(self, folder: str | Path) -> list[Path]:
        """Into the run folder: ``splits/`` (with ``data.auto_split``) and ``image_check.json``."""
        written = []
        if self.auto_split is not None:
            written.append(write_split(self.parts, self.auto_split["fractions"], self.auto_split["seed"], folder))
        if self.image_check is not None:
            written.append(atomic_write_text(json.dumps(self.image_check.to_dict(), indent=2),
                                             Path(folder) / "image_check.json"))
        return written


def _source_kwargs(d: Any, num: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"annotations_dir": d.annotations_dir, "images_dir": d.images_dir}
    if d.source.startswith("synthetic"):
        kwargs = {"seed": d.dataset_seed}
        if num is not None:
            kwargs["num_images"] = num
    return kwargs


def open_config_datasets(d: Any, *, progress: bool = False, cache_dir: str | Path | None = None,
                         log_fn: Callable[[str], None] | None = None) -> PreparedData:
    """The train/val/test datasets of a :class:`~detdistill.config.DataConfig` ``d``, checked before step 1.

    Reader errors name the config key that chose the split. With ``d.auto_split`` the splits are the parts
    of one seeded, stratified split (``d.train_split`` must be ``train``; ``val_split``/``test_split`` ``val``/
    ``test`` or null). Then every image of the splits is checked once (:func:`check_images`, cached) and
    ``d.on_bad_image`` applied: the datasets returned decode every image they hold.
    """
    check_on_bad_image(d.on_bad_image)
    keys = (("data.train_split", d.train_split, d.num_train_images), ("data.val_split", d.val_split,
            d.num_eval_images), ("data.test_split", d.test_split, d.num_eval_images))
    parts: dict[str, DetectionDataset] = {}
    summary = None
    if d.auto_split is not None:
        for (key, split, _), part in zip(keys, PARTS):
            if split is not None and split != part:
                raise DatasetError(f"{key}: value {split!r}; with data.auto_split the splits are train, val and "
                                   f"test: set {key}={part} (or null to leave the part unused)")
        parts = open_auto_split(d.source, list(d.auto_split), d.auto_split_seed, format=d.format,
                                on_bad_box=d.on_bad_box, **_source_kwargs(d, None))
        summary = split_summary(parts, d.auto_split, d.auto_split_seed)

    def opened(key: str, split: str | None, num: int | None) -> DetectionDataset | None:
        if split is None:
            return None
        if d.auto_split is not None:
            if split not in parts:
                raise DatasetError(f"{key}: data.auto_split={d.auto_split} leaves the part {split!r} empty "
                                   f"(source {d.source}); give it a larger fraction, or set {key}=null")
            return parts[split]
        try:
            return open_dataset(d.source, split=split, format=d.format, on_bad_box=d.on_bad_box,
                                **_source_kwargs(d, num))
        except DatasetError as exc:
            # The reader names the file; the run must also name the config key that chose the split.
            if key == "data.train_split" or f"data.{key}" in str(exc):
                raise
            raise DatasetError(f"{exc} [set by {key}={split}; choose another split, or {key}=null to skip it]") \
                from exc

    train, val, test = (opened(*k) for k in keys)
    assert train is not None
    report = check_images({"data.train_split": train, "data.val_split": val, "data.test_split": test},
                          d.on_bad_image, cache_dir=cache_dir, progress=progress)
    if report.checked:
        (log_fn or log.info)(report.summary())
    return PreparedData(train, val, test, report if report.checked else None, summary, parts)
