"""Layouts as people have them: one folder per split (labelling-tool exports), and what a folder holds when
no format matches.

Labelling tools (Roboflow, CVAT, Label Studio exports) write ``train/``, ``valid/`` (or ``val/``) and
``test/``, each a dataset of its own: a COCO json (``_annotations.coco.json``) beside its images, YOLO
``images/`` + ``labels/``, VOC XML beside the images, or a TensorFlow CSV (``_annotations.csv``). Such a
folder is opened split by split (``valid`` is the split ``val``), with one class list for all splits: the
names of every split, so a class missing from ``test/`` keeps its label.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Callable

from .base import IMAGE_EXTENSIONS, DatasetError, DetectionDataset, ImageRecord
from .validate import SkipReport, finish_dataset

SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("valid", "val", "validation"), "test": ("test", "testing")}
_ANNOTATION_SUFFIXES = (".xml", ".json", ".txt", ".csv", ".yaml", ".yml")


def canonical_split(split: str) -> str:
    """``valid``/``validation`` -> ``val``, ``training`` -> ``train``; other names unchanged."""
    for key, names in SPLIT_FOLDERS.items():
        if split == key or split in names:
            return key
    return split


def find_split_folders(root: str | Path, folder_format: Callable[[Path], str | None]) -> dict[str, Path]:
    """``{split: folder}`` for the split folders of ``root`` that hold a dataset (``folder_format`` says which)."""
    root = Path(root)
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if (root / name).is_dir() and folder_format(root / name) is not None:
                out[split] = root / name
                break
    return out


def _merge_names(lists: list[list[str]], sort: bool) -> list[str]:
    merged = list(dict.fromkeys(n for names in lists for n in names))
    return sorted(merged) if sort else merged


def open_split_folders(root: Path, folders: dict[str, Path], split: str | None, fmt: str,
                       open_folder: Callable[..., DetectionDataset], class_names: list[str] | None) -> DetectionDataset:
    """Open ``split`` (None: every split, one dataset) of a folder-per-split export."""
    if split is not None and canonical_split(split) not in folders:
        raise DatasetError(f"{root}: no folder for split {split!r} (found split folders: "
                           f"{[f.name for f in folders.values()]})")
    wanted = [canonical_split(split)] if split is not None else list(folders)
    if class_names is None:
        # One class list for every split: a class absent from one split must keep its label.
        opened = {s: open_folder(folders[s], class_names=None) for s in folders}
        lists = [list(ds.class_names) for ds in opened.values()]
        class_names = _merge_names(lists, sort=fmt in ("voc", "csv"))
        parts = {s: (opened[s] if list(opened[s].class_names) == class_names
                     else open_folder(folders[s], class_names=class_names)) for s in wanted}
    else:
        parts = {s: open_folder(folders[s], class_names=class_names) for s in wanted}
    if split is not None:
        ds = parts[wanted[0]]
        ds.name = f"{root.name}-{split}"
        ds.split = split
        return ds
    records: list[ImageRecord] = []
    skips = SkipReport()
    first = next(iter(parts.values()))
    for s, ds in parts.items():
        offset = len(records)
        for i in range(len(ds)):
            r = ds.records[i]
            path = ds.image_path(i)
            name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            records.append(dataclasses.replace(r, image_id=offset + i, file_name=name))
        part_skips = getattr(ds, "skips", None) or SkipReport()
        skips.counts.update(part_skips.counts)
        skips.removed_by_class.update(part_skips.removed_by_class)
        for reason, examples in part_skips.examples.items():
            skips.examples.setdefault(reason, []).extend(examples[: 5 - len(skips.examples.get(reason, []))])
    ds = DetectionDataset(records, first.class_names, first.category_ids, root=root, name=f"{root.name}-all")
    return finish_dataset(ds, skips, None)


def describe_folder(root: str | Path, limit: int = 6) -> str:
    """What ``root`` holds, by folder and file type: ``164 .xml in annots/, 164 .jpg in images/``."""

    root = Path(root)
    if not root.is_dir():
        return "nothing (not a folder)"
    found: list[tuple[int, str, str]] = []
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        counts = Counter(p.suffix.lower() for p in folder.iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS + _ANNOTATION_SUFFIXES)
        where = "the folder itself" if folder == root else f"{folder.name}/"
        found.extend((n, suffix, where) for suffix, n in counts.items())
    if not found:
        return "no images or annotation files in it or in the folders just below"
    found.sort(key=lambda t: (-t[0], t[1]))
    text = ", ".join(f"{n} {suffix} in {where}" for n, suffix, where in found[:limit])
    if len(found) > limit:
        text += f", and {len(found) - limit} more kinds"
    return text


def guess_from_files(root: str | Path) -> str:
    """A hint for an unmatched folder: which format its files look like and how to name it."""
    text = describe_folder(root)
    if ".xml" in text:
        return ("looks like VOC XML under other names; pass --format voc (data.format=voc) and name the folders: "
                "--annotations-dir DIR --images-dir DIR (data.annotations_dir / data.images_dir)")
    if ".json" in text:
        return "looks like COCO json; pass the .json file itself as the source, or --format coco"
    if ".csv" in text:
        return ("looks like a CSV; a TensorFlow CSV needs the columns filename,width,height,class,xmin,ymin,xmax,"
                "ymax (--format csv)")
    if ".txt" in text:
        return "looks like YOLO labels; YOLO needs images/ + labels/ or a data.yaml (--format yolo)"
    return "name the format with --format (data.format)"

