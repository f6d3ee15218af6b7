"""The pre-flight image check: every image of a run decoded once, before step 1, with the outcome cached.

A run must never die at step N on an image. :func:`check_images` decodes each image file of the datasets it
is given (a JPEG at 1/8 scale: libjpeg still reads every entropy-coded block, so a truncated or corrupt file
is found for a fraction of the cost), compares the decoded size with the annotated one, and acts on
``on_bad_image`` -- the same rule for ``train``, ``distill``, ``evaluate``, ``predict``, ``cache-teacher`` and
``data.unlabeled``:

============================ ================================ ======================= ======================
image                        ``repair`` (default)             ``skip``                ``error``
============================ ================================ ======================= ======================
truncated (decodes partway)  decoded as far as it goes,       left out, counted       the run stops before
                             logged and counted ``repaired``  ``skipped``             step 1, naming every
cannot be decoded at all,    left out, counted ``skipped``    left out, counted       bad file at once
missing, or size disagrees                                    ``skipped``
============================ ================================ ======================= ======================

The dataset then honours the decision: a left-out image is removed from its records, a repaired one is
decoded with truncation allowed for that image alone (``DetectionDataset.repaired_images``).

The verdicts are cached per dataset root, keyed by each file's path, size and mtime, in
``$DETDISTILL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/detdistill`` or ``~/.cache/detdistill``) under
``image-check/``, written atomically; a second run decodes only the files that changed. Generated datasets
(``synthetic``), whose images are not files, are not checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..utils import atomic_write_text
from .base import DatasetError, DetectionDataset, decode_image_and_size

log = logging.getLogger("detdistill.data")

ON_BAD_IMAGE_CHOICES = ("error", "skip", "repair")
CACHE_VERSION = 1
_OK, _TRUNCATED, _BAD = "ok", "truncated", "bad"


class BadImageError(DatasetError):
    """``on_bad_image=error`` and some images cannot be decoded: the message names every one."""


def check_on_bad_image(value: str) -> str:
    if value not in ON_BAD_IMAGE_CHOICES:
        raise DatasetError(f"field 'data.on_bad_image' has value {value!r}; choose one of {list(ON_BAD_IMAGE_CHOICES)}")
    return value


def default_cache_dir() -> Path:
    """Where verdicts are cached: ``$DETDISTILL_CACHE_DIR``, else ``$XDG_CACHE_HOME/detdistill``, else
    ``~/.cache/detdistill``."""
    env = os.environ.get("DETDISTILL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "detdistill"


def cache_file_for(root: Path, cache_dir: Path) -> Path:
    """The cache file of one dataset root (its name, plus a hash of its absolute path)."""
    key = hashlib.sha1(str(root.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir / "image-check" / f"{root.name or 'root'}-{key}.json"


@dataclass
class ImageCheckReport:
    """What the check found: counts, one line per repaired/left-out file, and how much was decoded."""

    on_bad_image: str
    checked: int = 0
    decoded: int = 0  # files decoded in this pass; the others' verdicts came from the cache
    repaired: list[str] = field(default_factory=list)  # one message per file
    skipped: list[str] = field(default_factory=list)
    repaired_files: list[str] = field(default_factory=list, repr=False)  # the paths, as the dataset spells them
    skipped_files: list[str] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    cache_files: list[str] = field(default_factory=list)

    @property
    def cached(self) -> int:
        return self.checked - self.decoded

    def summary(self) -> str:
        text = (f"image check: {self.checked} images, {self.decoded} decoded, {self.cached} from the cache, "
                f"{self.seconds:.1f} s; {len(self.repaired)} repaired, {len(self.skipped)} left out "
                f"(data.on_bad_image={self.on_bad_image})")
        return text

    def lines(self) -> list[str]:
        return ([self.summary()] + [f"  repaired: {m}" for m in self.repaired]
                + [f"  left out: {m}" for m in self.skipped])

    def to_dict(self) -> dict[str, Any]:
        return {"on_bad_image": self.on_bad_image, "checked": self.checked, "decoded": self.decoded,
                "cached": self.cached, "repaired": list(self.repaired), "skipped": list(self.skipped),
                "seconds": round(self.seconds, 3), "cache_files": list(self.cache_files)}


def checkable(dataset: DetectionDataset) -> bool:
    """Whether ``dataset``'s images are files decoded by the shared path (generated images are not)."""
    return bool(getattr(dataset, "image_files", False)) and len(dataset) > 0


def verdict(path: Path) -> tuple[str, int, int, str]:
    """``(status, width, height, message)`` of one file: ``ok``, ``truncated`` (decodes only with truncation
    allowed) or ``bad``; width and height are those of the decoded (EXIF-oriented) image."""
    try:
        _, (width, height) = decode_image_and_size(path, draft=True)
        return _OK, width, height, ""
    except DatasetError as exc:
        first = str(exc)
    if "truncated" not in first:
        return _BAD, 0, 0, first
    try:
        _, (width, height) = decode_image_and_size(path, draft=True, allow_truncated=True)
    except DatasetError as exc:
        return _BAD, 0, 0, str(exc)
    return _TRUNCATED, width, height, first


def _image_keys(ds: DetectionDataset) -> list[str]:
    """Each image's absolute path as a string: the cache key (a COCO-size set: built without a Path per image)."""
    if type(ds).image_path is not DetectionDataset.image_path or ds.root is None:
        return [os.path.abspath(ds.image_path(i)) for i in range(len(ds))]
    root = os.path.abspath(ds.root) + os.sep
    table = ds.records
    blob, cuts = table.names.tobytes(), table.name_offsets.tolist()
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        name = blob[a:b].decode("utf-8", "surrogateescape")
        joined = name if name.startswith(os.sep) else root + name
        out.append(os.path.normpath(joined) if "./" in name or "/." in name or "//" in name else joined)
    return out


def _load_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or unreadable: checked afresh and rewritten
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def check_images(datasets: Mapping[str, DetectionDataset | None] | Iterable[DetectionDataset], on_bad_image: str = "repair",
                 *, cache_dir: str | Path | None | bool = None, progress: bool = False,
                 apply: bool = True) -> ImageCheckReport:
    """Check every image of ``datasets`` once (see the module docstring) and apply ``on_bad_image`` to them.

    ``datasets``: name -> dataset (None entries skipped), or a list; messages name each file.
    ``cache_dir``: None for :func:`default_cache_dir`, ``False`` for no cache. ``apply=False`` only reports
    (``data stats``). Raises :class:`BadImageError` under ``error`` when any file is bad, naming every one.

    Example::

        report = check_images({"train": train, "val": val}, "repair")
        print(report.summary())  # image check: 364 images, 0 decoded, 364 from the cache, ...
    """
    check_on_bad_image(on_bad_image)
    items = list(datasets.items()) if isinstance(datasets, Mapping) else [(d.name, d) for d in datasets]
    items = [(n, d) for n, d in items if d is not None and checkable(d)]
    report = ImageCheckReport(on_bad_image)
    start = time.perf_counter()
    use_cache = cache_dir is not False
    base_dir = (default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)) if use_cache \
        else None
    caches: dict[Path, dict[str, list]] = {}
    dirty: set[Path] = set()
    verdicts: dict[str, tuple[str, int, int, str]] = {}  # per absolute path, so splits sharing images decode once
    paths_of = {}
    total = sum(len(d) for _, d in items)
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="image check", unit="img", dynamic_ncols=True, mininterval=1.0)
    for name, ds in items:
        root = Path(ds.root) if ds.root is not None else Path(ds.image_path(0)).parent
        cache_path = cache_file_for(root, base_dir) if base_dir is not None else None
        if cache_path is not None and cache_path not in caches:
            caches[cache_path] = _load_cache(cache_path)
        cache = caches.get(cache_path, {}) if cache_path is not None else {}
        paths = _image_keys(ds)
        paths_of[name] = paths
        for key in paths:
            if key not in verdicts:
                stat = _stat_key(key)
                hit = cache.get(key)
                if stat is not None and hit is not None and hit[0] == stat[0] and hit[1] == stat[1]:
                    verdicts[key] = (hit[2], hit[3], hit[4], hit[5])
                else:
                    verdicts[key] = verdict(Path(key))
                    report.decoded += 1
                    if stat is not None and cache_path is not None:
                        cache[key] = [stat[0], stat[1], *verdicts[key]]
                        dirty.add(cache_path)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    for cache_path in sorted(dirty):
        atomic_write_text(json.dumps({"version": CACHE_VERSION, "files": caches[cache_path]}), cache_path)
    report.cache_files = [str(p) for p in caches]
    bad: list[str] = []
    decisions: dict[str, tuple[np.ndarray, frozenset[str]]] = {}
    for name, ds in items:
        keep = np.ones(len(ds), bool)
        repaired: set[str] = set()
        widths, heights = ds.records.widths, ds.records.heights
        for i, key in enumerate(paths_of[name]):
            status, w, h, message = verdicts[key]
            report.checked += 1
            size_ok = status == _BAD or (w, h) == (int(widths[i]), int(heights[i]))
            if status == _OK and size_ok:
                continue
            p = ds.image_path(i)  # the dataset's own spelling of the path (what its decoding looks up)
            if not size_ok:
                status, message = _BAD, (f"{p}: annotated size (width={int(widths[i])}, height={int(heights[i])}) "
                                         f"disagrees with the decoded image (width={w}, height={h})")
            if on_bad_image == "error":
                bad.append(message)
            elif status == _TRUNCATED and on_bad_image == "repair":
                repaired.add(str(p))
                report.repaired.append(f"{message}; decoded as far as it goes")
                report.repaired_files.append(str(p))
            else:
                keep[i] = False
                report.skipped.append(message)
                report.skipped_files.append(str(p))
        decisions[name] = (keep, frozenset(repaired))
    report.seconds = time.perf_counter() - start
    if bad:
        raise BadImageError(f"{len(bad)} of {report.checked} images cannot be used (data.on_bad_image=error), found "
                            f"before step 1: {'; '.join(bad)}. Fix or remove them, or set data.on_bad_image=repair "
                            "(decode truncated files as far as they go, leave out the rest) or skip")
    if apply:
        for name, ds in items:
            keep, repaired = decisions[name]
            if not keep.all():
                if not keep.any():
                    raise DatasetError(f"{ds.name}: none of its {len(ds)} images can be decoded (e.g. "
                                       f"{report.skipped[0]}); fix or replace them")
                ds.records = ds.records.take(np.flatnonzero(keep))
            if repaired:
                ds.repaired_images = ds.repaired_images | repaired
    if apply:  # a report-only check (data stats) prints its findings itself
        for line in report.repaired:
            log.warning("repaired %s", line)
        for line in report.skipped:
            log.warning("left out %s", line)
    return report
