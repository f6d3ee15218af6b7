"""The CSV that TensorFlow object-detection tutorials write: one row per box,
``filename,width,height,class,xmin,ymin,xmax,ymax`` (column order free; extra columns ignored).

* Files: ``*.csv`` with that header in the folder (``train_labels.csv``, ``test_labels.csv``,
  ``_annotations.csv``); a split's file is the one whose name holds the split as a word (``train_labels`` is
  ``train``); without a split, the one file, the one naming no split, or else every file.
* Class order, when ``class_names`` is not given, is the sorted set of classes of **every** CSV file of the
  folder, so the splits of one folder agree on labels. ``category_ids`` are 1..K.
* A row with an empty ``class`` (and empty coordinates) is an image without boxes (a negative).
* Images are looked up as COCO's reader does: ``<csv dir>/images``, ``../images``, ``<split>/``, the CSV's
  folder and its parent, whichever holds the most of a sample (raccoon: ``data/*.csv`` and ``images/``).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DatasetError, DetectionDataset, ImageRecord
from .coco import _guess_image_root
from .validate import (
    SkipReport,
    check_on_bad_box,
    finish_dataset,
    read_text_file,
    relative_file_name,
    report_class_names,
    require_nonempty,
    validate_boxes,
)

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


def _header(path: Path) -> list[str] | None:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return None
    return [c.strip().lower() for c in first.split(",")]


def is_tf_csv(path: Path) -> bool:
    head = _header(path)
    return head is not None and set(COLUMNS) <= set(head)


def find_csv_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return [p for p in sorted(folder.glob("*.csv")) if is_tf_csv(p)]


def _names_split(stem: str, split: str) -> bool:
    return re.search(rf"(^|[_.\-]){re.escape(split)}($|[_.\-\d])", stem) is not None


def find_csv(folder: str | Path, split: str | None) -> Path:
    """The CSV file of ``split`` in ``folder`` (see the module docstring)."""
    from .yolo import SPLIT_ALIASES

    folder = Path(folder)
    files = find_csv_files(folder)
    if not files:
        raise DatasetError(f"{folder}: no CSV with the columns {','.join(COLUMNS)}")
    if split is None:
        plain = [f for f in files if not any(_names_split(f.stem, s) for s in ("train", "val", "valid", "test"))]
        if len(files) == 1 or len(plain) == 1:
            return files[0] if len(files) == 1 else plain[0]
        raise DatasetError(f"{folder}: {len(files)} CSV files ({[f.name for f in files]}); name a split")

    for alias in SPLIT_ALIASES.get(split, (split,)):
        matches = [f for f in files if _names_split(f.stem, alias)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise DatasetError(f"{folder}: {len(matches)} CSV files for split {split!r} ({[f.name for f in matches]})")
    raise DatasetError(f"{folder}: no CSV file for split {split!r} (found: {[f.name for f in files]})")


def _rows(path: Path) -> list[dict[str, str]]:
    text = read_text_file(path, "CSV file")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    reader.fieldnames = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in reader.fieldnames]
    if missing:
        raise DatasetError(f"{path}: columns {missing} are missing (header: {reader.fieldnames})")
    return list(reader)


def _int(value: str, path: Path, row: int, col: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: field 'row {row} {col}' has value {value!r}: not a number") from None
    if number <= 0 or not number.is_integer():
        raise DatasetError(f"{path}: field 'row {row} {col}' has value {value!r}: not a positive integer")
    return int(number)


def read_tf_csv(
    source: str | Path,
    split: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    image_root: str | Path | None = None,
    name: str | None = None,
) -> DetectionDataset:
    """Read a TensorFlow-tutorial CSV (a file, or a folder holding one per split).

    Example:
        >>> ds = read_tf_csv("../shared/data/raccoon/data", split="test")  # doctest: +SKIP
        >>> len(ds), ds.class_names  # doctest: +SKIP
        (40, ['raccoon'])
    """
    check_on_bad_box(on_bad_box)
    source = Path(source)
    try:
        paths = [source if source.is_file() else find_csv(source, split)]
    except DatasetError:
        if split is not None or source.is_file() or not find_csv_files(source):
            raise
        paths = find_csv_files(source)  # no split named, one file per split: every image, as VOC reads it
    path = paths[0]
    rows = [(p, n, row) for p in paths for n, row in enumerate(_rows(p), start=2)]  # row 1 is the header
    report = SkipReport()
    if class_names is None:
        first_seen: dict[str, str] = {}
        others = [(f, n, row) for f in find_csv_files(path.parent) if f not in paths
                  for n, row in enumerate(_rows(f), start=2)]
        for other, n, row in rows + others:
            cls = (row.get("class") or "").strip()
            if cls:
                first_seen.setdefault(cls, f"{other}: field 'row {n} class'")
        class_names = sorted(first_seen)
        report_class_names(class_names, report, lambda i: first_seen[class_names[i]])
    else:
        report_class_names(list(class_names), report, lambda i: f"class_names[{i}]")
    class_names = list(class_names)
    label_of = {c: i + 1 for i, c in enumerate(class_names)}
    by_image: dict[str, dict] = {}
    owner: dict[str, Path] = {}  # the file that lists an image first: a later file's rows for it are not added
    for path, n, row in rows:
        file_name = (row.get("filename") or "").strip()
        if owner.setdefault(file_name, path) != path:
            continue
        if not file_name:
            raise DatasetError(f"{path}: field 'row {n} filename' is empty")
        width, height = _int(row["width"], path, n, "width"), _int(row["height"], path, n, "height")
        entry = by_image.setdefault(file_name, {"width": width, "height": height, "boxes": [], "labels": [],
                                                "fields": [], "raw": [], "names": [], "file": path})
        if (entry["width"], entry["height"]) != (width, height):
            raise DatasetError(f"{path}: field 'row {n} width/height' has value {width}x{height}: {file_name} has "
                               f"{entry['width']}x{entry['height']} in an earlier row")
        cls = (row.get("class") or "").strip()
        if not cls:
            continue  # a negative image
        coords = []
        for col in ("xmin", "ymin", "xmax", "ymax"):
            try:
                coords.append(float(row[col]))
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: field 'row {n} {col}' has value {row[col]!r}: not a number") from None
        if cls not in label_of:
            from .validate import bad_input

            bad_input(report, on_bad_box, "unknown_class",
                      f"{path}: field 'row {n} class' has value {cls!r}: unknown class (known: {class_names})", cls)
            continue
        entry["boxes"].append(coords)
        entry["labels"].append(label_of[cls])
        entry["fields"].append(f"row {n}")
        entry["raw"].append(",".join(row[c] for c in ("xmin", "ymin", "xmax", "ymax")))
        entry["names"].append(cls)
    names = list(by_image)
    path = paths[0]
    root = Path(image_root) if image_root is not None else _guess_image_root(path, names, split)
    records = []
    for image_id, file_name in enumerate(names):
        e = by_image[file_name]
        boxes, keep, _ = validate_boxes(np.array(e["boxes"], np.float64).reshape(-1, 4), e["width"], e["height"],
                                        file=e["file"], fields=e["fields"], raw_values=e["raw"], class_names=e["names"],
                                        on_bad_box=on_bad_box, report=report)
        records.append(ImageRecord(image_id=image_id, file_name=relative_file_name(root / file_name, root),
                                   width=e["width"], height=e["height"], boxes=boxes[keep],
                                   labels=np.array(e["labels"], np.int64)[keep]))
    require_nonempty(records, str(path), split)
    stem = path.stem if len(paths) == 1 else "all"
    ds = DetectionDataset(records, class_names, root=root, name=name or f"{path.parent.name}-{split or stem}")
    return finish_dataset(ds, report, split)
