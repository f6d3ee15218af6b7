"""Unlabelled images for distillation (``data.unlabeled``): a folder of images, or any dataset split with its
labels dropped.

``data.unlabeled=PATH`` reads every image file under ``PATH`` (sorted, recursively); ``data.unlabeled=SOURCE:SPLIT``
opens ``SOURCE`` (any format :func:`~detdistill.data.open.open_dataset` reads, ``synthetic`` included) and
keeps only its images. Every target then has no boxes and ``labelled = False``: the Distiller runs the
supervised losses only on labelled images and the teacher-driven terms on all (:mod:`detdistill.distill.distiller`).

Bad input gets the handling labelled data gets: a file that cannot be decoded is counted, logged and left
out; a folder with no images is a :class:`DatasetError` naming it; and an unlabelled image whose bytes equal
those of an image in the validation or test split is refused (:func:`refuse_overlap`), because training on
the images a model is scored on inflates the score.

Example::

    unlabeled = open_unlabeled("../shared/data/bccd:test")   # labels of that split ignored
    refuse_overlap(unlabeled, {"data.test_split": test})     # DatasetError: every image overlaps
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from ..utils import file_sha256
from .base import DatasetError, DetectionDataset, ImageRecord, Target
from .validate import SkipReport
from .base import IMAGE_EXTENSIONS

log = logging.getLogger("detdistill.data")

LABELLED_KEY = "labelled"
"""Target key of the labelled flag (a bool tensor); a target without it counts as labelled."""

_SYNTHETIC_PRESETS = ("easy", "default", "hard")


def is_labelled(target: Target) -> bool:
    """Whether ``target`` carries ground truth (``labelled`` absent or true)."""
    flag = target.get(LABELLED_KEY)
    return True if flag is None else bool(flag)


class UnlabeledDataset(DetectionDataset):
    """Images without annotations: every target has no boxes and ``labelled = False``.

    ``base``: the dataset whose images these are (``SOURCE:SPLIT``; its decoding is reused, so generated
    images work too); None for a folder of image files under ``root``. ``skips`` counts the files left out.
    """

    def __init__(self, records: list[ImageRecord], name: str, *, root: str | Path | None = None,
                 base: DetectionDataset | None = None, skips: SkipReport | None = None, spec: str = "") -> None:
        super().__init__(records, class_names=list(base.class_names) if base is not None else [], root=root,
                         name=name)
        self.base = base
        self.skips = skips if skips is not None else SkipReport()
        self.spec = spec

    @property
    def image_files(self) -> bool:  # type: ignore[override]
        return self.base.image_files if self.base is not None else True

    def image_path(self, idx: int) -> Path:
        return self.base.image_path(idx) if self.base is not None else super().image_path(idx)

    def load_image(self, idx: int) -> torch.Tensor:
        return self.base.load_image(idx) if self.base is not None else super().load_image(idx)

    def get_target(self, idx: int) -> Target:
        target = self.records.target(idx)
        target[LABELLED_KEY] = torch.tensor(False)
        return target


def read_image_folder(folder: str | Path, progress: bool = False, on_bad_image: str = "repair",
                      cache_dir: str | Path | None | bool = None) -> UnlabeledDataset:
    """Every image file under ``folder`` (recursively, sorted by path) as an :class:`UnlabeledDataset`.

    Every file is checked once before use (:mod:`detdistill.data.image_check`, cached) and ``on_bad_image``
    applied: ``repair`` keeps truncated files (decoded as far as they go), ``skip`` leaves them out; files that
    cannot be decoded are left out, counted in ``skips`` (reason ``unreadable_image``) and logged in one line;
    ``error`` stops naming every bad file. A folder without a single decodable image is a :class:`DatasetError`.
    """
    from .image_check import BadImageError, check_images, check_on_bad_image
    from .validate import read_image_size

    check_on_bad_image(on_bad_image)
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"data.unlabeled: {root} is not a folder; give a folder of images or SOURCE:SPLIT of "
                           "a dataset (e.g. ../shared/data/bccd:trainval)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"data.unlabeled: {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in it or below; "
                           "point data.unlabeled at a folder of images, or at SOURCE:SPLIT of a dataset")
    skips = SkipReport()
    records: list[ImageRecord] = []
    unreadable: list[str] = []
    for path in files:
        try:
            width, height = read_image_size(path)
        except DatasetError as exc:
            unreadable.append(str(exc))
            continue
        records.append(ImageRecord(len(records), str(path.relative_to(root)), width, height))
    if unreadable and on_bad_image == "error":
        raise BadImageError(f"data.unlabeled: {len(unreadable)} of {len(files)} files in {root} cannot be decoded "
                            f"(data.on_bad_image=error): {'; '.join(unreadable)}")
    ds = UnlabeledDataset(records, f"{root.name}(unlabelled)", root=root, skips=skips, spec=str(folder))
    if records:
        report = check_images({"data.unlabeled": ds}, on_bad_image, cache_dir=cache_dir, progress=progress,
                              apply=False)
        left_out = set(report.skipped_files)
        keep = [i for i in range(len(ds)) if str(ds.image_path(i)) not in left_out]
        unreadable += report.skipped
        ds.repaired_images = frozenset(report.repaired_files)
        for message in report.repaired:  # kept, so not a skip: logged, and counted in ds.image_check
            log.warning("data.unlabeled: repaired %s", message)
        ds.image_check = report
        if len(keep) < len(ds):
            ds.records = ds.records.take(keep)
    for message in unreadable:
        skips.add("unreadable_image", message)
    if unreadable:
        log.warning("data.unlabeled: %d of %d files in %s cannot be decoded and are left out (e.g. %s)",
                    len(unreadable), len(files), root, unreadable[0])
    if not len(ds):
        raise DatasetError(f"data.unlabeled: none of the {len(files)} image files in {root} can be decoded "
                           f"(e.g. {unreadable[0]}); fix or replace them")
    return ds


def split_spec(spec: str) -> tuple[str, str | None]:
    """``SOURCE:SPLIT`` -> ``(SOURCE, SPLIT)``; a plain folder -> ``(folder, None)``.

    ``SOURCE:SPLIT`` needs SOURCE to exist (or be ``synthetic`` / ``synthetic:<preset>``), so a folder whose
    name holds a colon still reads as a folder.

    >>> split_spec("synthetic:train")
    ('synthetic', 'train')
    >>> split_spec("synthetic:hard:val")
    ('synthetic:hard', 'val')
    """
    text = str(spec)
    if ":" in text:
        source, split = text.rsplit(":", 1)
        synthetic = source == "synthetic" or (source.startswith("synthetic:")
                                              and source.split(":", 1)[1] in _SYNTHETIC_PRESETS)
        if synthetic and source == "synthetic" and split in _SYNTHETIC_PRESETS:
            raise DatasetError(f"data.unlabeled: value {text!r} names a preset but no split; write "
                               f"{text}:train (SOURCE:SPLIT)")
        if split and (synthetic or Path(source).exists()):
            return source, split
    return text, None


def open_unlabeled(spec: str, *, format: str | None = None, progress: bool = False,  # noqa: A002
                   on_bad_image: str = "repair", **kwargs: Any) -> UnlabeledDataset:
    """``data.unlabeled``: a folder of images, or ``SOURCE:SPLIT`` of any supported dataset (labels dropped).

    ``format`` and ``kwargs`` (``seed``, ``num_images`` for synthetic data) go to
    :func:`~detdistill.data.open.open_dataset`. Boxes of a ``SOURCE:SPLIT`` are never read as targets, so
    bad boxes there are skipped rather than refused.

    >>> ds = open_unlabeled("synthetic:val", num_images=3)
    >>> len(ds), int(ds[0][1]["boxes"].shape[0]), bool(ds[0][1]["labelled"])
    (3, 0, False)
    """
    source, split = split_spec(spec)
    if split is None:
        return read_image_folder(source, progress=progress, on_bad_image=on_bad_image)
    from .open import open_dataset

    base = open_dataset(source, split=split, format=format, on_bad_box="skip", on_bad_image=on_bad_image, **kwargs)
    records = [ImageRecord(int(base.records.image_ids[i]), base.records.file_name(i), int(base.records.widths[i]),
                           int(base.records.heights[i])) for i in range(len(base))]
    if not records:
        raise DatasetError(f"data.unlabeled: split {split!r} of {source} has no images; choose another split")
    return UnlabeledDataset(records, f"{base.name}(unlabelled)", root=base.root, base=base, spec=str(spec))


def content_hash(dataset: DetectionDataset, idx: int) -> str:
    """SHA-256 of image ``idx``'s file bytes (of its decoded pixels when it has no file, e.g. generated)."""
    path = Path(dataset.image_path(idx))
    if path.is_file():
        return file_sha256(path)
    return hashlib.sha256(dataset.load_image(idx).numpy().tobytes()).hexdigest()


def refuse_overlap(unlabeled: DetectionDataset, evaluation: Mapping[str, DetectionDataset | None],
                   progress: bool = False) -> None:
    """Refuse (:class:`DatasetError`) unlabelled images whose content equals an evaluation image's.

    ``evaluation``: config key -> dataset (``{"data.test_split": test}``); None entries are skipped. Images
    are compared by the SHA-256 of their file bytes, so a copy under another name is caught too.
    """
    from tqdm.auto import tqdm

    sets = {key: ds for key, ds in evaluation.items() if ds is not None}
    if not sets:
        return
    seen: dict[str, tuple[str, int]] = {}
    for key, ds in sets.items():
        for i in range(len(ds)):
            seen.setdefault(content_hash(ds, i), (key, i))
    clashes: dict[str, list[tuple[int, int]]] = {}
    for j in tqdm(range(len(unlabeled)), desc="overlap check", unit="img", disable=not progress, dynamic_ncols=True):
        hit = seen.get(content_hash(unlabeled, j))
        if hit is not None:
            clashes.setdefault(hit[0], []).append((j, hit[1]))
    if clashes:
        key, pairs = next(iter(clashes.items()))
        ds = sets[key]
        j, i = pairs[0]
        total = sum(len(p) for p in clashes.values())
        raise DatasetError(
            f"data.unlabeled: {total} of {len(unlabeled)} unlabelled images have the same content as images of the "
            f"evaluation split{'s' if len(clashes) > 1 else ''} {', '.join(f'{k}={sets[k].name}' for k in clashes)} "
            f"(e.g. {unlabeled.image_path(j)} = {ds.image_path(i)}); a model must not train on the images it is "
            "scored on. Remove them from data.unlabeled, or choose SOURCE:SPLIT of another split")
