"""YOLO txt reader: one ``labels/<stem>.txt`` per image, lines ``class cx cy w h`` normalised to [0, 1].

Layouts: a ``data.yaml`` (Ultralytics: ``path``, ``train``/``val``/``test`` as image folders, list files or
lists of them, ``names`` as a list or ``{index: name}``), or a folder with ``images/`` and ``labels/``
(``images/<split>/`` when splits exist) and class names in ``classes.txt``, ``obj.names`` or another
``*.names`` file. An image's label file is its path with the last ``images`` component replaced by
``labels`` and the suffix by ``.txt``; an image without a label file is a negative.

Image sizes come from the image headers (after EXIF orientation), because YOLO files do not store them.
``category_ids`` are the file's own 0-based class indices, so ``dataset.category_ids == [0, .., K-1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from .base import DatasetError, DetectionDataset, ImageRecord, optional_file, path_kind
from .validate import (
    SkipReport,
    bad_input,
    check_on_bad_box,
    finish_dataset,
    read_image_size,
    read_text_file,
    relative_file_name,
    report_class_names,
    require_nonempty,
    validate_boxes,
)
from .base import IMAGE_EXTENSIONS

DATA_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "valid": ("valid", "val")}


def find_data_yaml(root: str | Path) -> Path | None:
    root = Path(root)
    for n in DATA_YAML_NAMES:
        if optional_file(root / n, "dataset config"):
            return root / n
    return None


def is_yolo_folder(root: str | Path) -> bool:
    root = Path(root)
    return find_data_yaml(root) is not None or (
        (root / "images").is_dir() and (root / "labels").is_dir() and any((root / "labels").rglob("*.txt")))


def label_path_for(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


# Files that sit among images without being images (they are expected, not left out).
_NOT_IMAGES = {".txt", ".yaml", ".yml", ".json", ".cache", ".db", ".ds_store", ".md", ".npy"}


def _list_images(entry: Path, base: Path, where: str, report: SkipReport | None = None) -> list[Path]:
    if entry.is_dir():
        files = sorted(p for p in entry.rglob("*") if p.is_file())
        if report is not None:
            for p in files:
                if p.suffix.lower() not in IMAGE_EXTENSIONS and p.suffix.lower() not in _NOT_IMAGES \
                        and not p.name.startswith("."):
                    label = label_path_for(p)
                    also = f" (and its label file {label.name})" if label.is_file() else ""
                    report.add("unsupported_image", f"{p}: not a supported image type "
                               f"({', '.join(sorted(IMAGE_EXTENSIONS))}); left out{also}")
        return [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if entry.is_file() and entry.suffix == ".txt":
        out = []
        for n, ln in enumerate(read_text_file(entry, "image list").splitlines(), start=1):
            ln = ln.strip()
            if not ln:
                continue
            # Ultralytics reads "./x.jpg" relative to the list file; other lines relative to path: (or the list).
            candidates = [Path(ln)] if Path(ln).is_absolute() else [base / ln, entry.parent / ln]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DatasetError(f"{entry}: line {n} names image {ln!r}, which is not there (looked for "
                                   f"{' and '.join(str(c) for c in dict.fromkeys(candidates))})")
            out.append(found)
        return out
    kind = path_kind(entry)
    what = "no such image folder or list file" if kind == "missing" else \
        f"is a {kind if kind != 'file' else 'file that is not a .txt list'}, expected an image folder or a .txt list file"
    raise DatasetError(f"{where} has value {str(entry)!r}: {what}")


def _names_from_yaml(cfg: dict, path: Path) -> list[str] | None:
    names = cfg.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise DatasetError(f"{path}: field 'names' has keys {list(names)}: expected the integers "
                               f"0..{len(names) - 1}")
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: field 'names' has keys {keys}: expected 0..{len(keys) - 1}")
        return [str(names[k]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DatasetError(f"{path}: field 'names' has value {names!r}: expected a list or a mapping")


def _names_from_file(root: Path) -> tuple[list[str], Path] | None:
    candidates = [root / "classes.txt", root / "obj.names"] + sorted(root.glob("*.names"))
    for c in candidates:
        if optional_file(c, "class names file"):
            return [ln.strip() for ln in read_text_file(c, "class names file").splitlines() if ln.strip()], c
    return None


def _check_nc(cfg: dict | None, cfg_path: Path | None, names: list[str], source: str, report: SkipReport) -> None:
    """``nc`` in data.yaml must count the names; a disagreement is a problem (the names are what is used)."""
    if cfg is None or cfg_path is None or "nc" not in cfg:
        return
    nc = cfg["nc"]
    if not (isinstance(nc, int) and not isinstance(nc, bool)) or nc != len(names):
        report.add("nc_mismatch", f"{cfg_path}: field 'nc' has value {nc!r} but {source} lists {len(names)} class "
                                  f"names {names}; the names are used (fix nc or the names)")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(read_text_file(path, "data.yaml"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: malformed YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise DatasetError(f"{path}: top level has value {cfg!r}: expected a mapping")
    return cfg


def _entry_path(entry: str, base: Path, yaml_dir: Path) -> Path:
    """A ``train``/``val``/``test`` entry: relative to ``path:`` (as Ultralytics reads it), else to the yaml's
    folder; labelling-tool exports write ``../train/images`` meaning ``train/images`` beside the yaml, which
    Ultralytics also accepts."""
    candidates = [Path(entry)] if Path(entry).is_absolute() else [base / entry, yaml_dir / entry]
    if entry.startswith("../"):
        candidates += [base / entry[3:], yaml_dir / entry[3:]]
    return next((c for c in candidates if c.exists()), candidates[0])


def _images_for_split(root: Path, split: str | None, cfg: dict | None, cfg_path: Path | None,
                      report: SkipReport | None = None) -> list[Path]:
    if cfg is not None and cfg_path is not None:
        raw_base = cfg.get("path") or "."
        if not isinstance(raw_base, str):
            raise DatasetError(f"{cfg_path}: field 'path' has value {raw_base!r}: expected a folder path")
        base = Path(raw_base)
        base = base if base.is_absolute() else (root / base)
        keys = [k for k in ("train", "val", "test") if k in cfg] if split is None else \
            [k for k in SPLIT_ALIASES.get(split, (split,)) if k in cfg][:1]
        if split is not None and not keys:
            raise DatasetError(f"{cfg_path}: field {split!r} is missing (splits listed: "
                               f"{[k for k in cfg if k not in ('path', 'names', 'nc')]})")
        seen: dict[Path, None] = {}
        for k in keys:
            entries = cfg[k] if isinstance(cfg[k], list) else [cfg[k]]
            for e in entries:
                for p in _list_images(_entry_path(str(e), base, cfg_path.parent), base, f"{cfg_path}: field {k!r}",
                                      report):
                    seen.setdefault(p, None)
        if keys:
            return list(seen)
        # A data.yaml with only names: fall through to the folder layout.
    images = root / "images"
    if split is not None:
        for alias in SPLIT_ALIASES.get(split, (split,)):
            if (images / alias).is_dir():
                return _list_images(images / alias, root, "", report)
        raise DatasetError(f"{images}: no folder for split {split!r} "
                           f"(found: {sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []})")
    if not images.is_dir():
        raise DatasetError(f"{root}: not a YOLO folder (no data.yaml and no images/ folder)")
    return _list_images(images, root, "", report)


def _report_orphan_labels(images: list[Path], report: SkipReport) -> None:
    """Count label files that no listed image uses (a missing or unsupported image): their boxes are unused."""
    expected = {label_path_for(p) for p in images}
    folders = {p.parent for p in expected if p.parent.is_dir()}
    for folder in sorted(folders):
        for label in sorted(folder.glob("*.txt")):
            if label not in expected and label.name not in ("classes.txt",):
                report.add("label_without_image", f"{label}: label file without an image; its boxes are not read")


def _parse_label_file(path: Path, width: int, height: int, num_classes: int, on_bad_box: str,
                      report: SkipReport, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    text = read_text_file(path, "label file")
    rows, fields, raws, labels = [], [], [], []
    for n, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise DatasetError(f"{path}: field 'line {n}' has value {line.strip()!r}: expected 'class cx cy w h'")
        try:
            cls_f = float(tokens[0])
            cx, cy, w, h = (float(t) for t in tokens[1:])
        except ValueError:
            raise DatasetError(f"{path}: field 'line {n}' has value {line.strip()!r}: not numbers") from None
        if not cls_f.is_integer():
            raise DatasetError(f"{path}: field 'line {n} class' has value {tokens[0]!r}: not an integer index")
        cls = int(cls_f)
        if not 0 <= cls < num_classes:
            bad_input(report, on_bad_box, "label_out_of_range",
                      f"{path}: field 'line {n} class' has value {cls}: out of range 0..{num_classes - 1}")
            continue
        rows.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        fields.append(f"line {n}")
        raws.append(repr(line.strip()))
        labels.append(cls + 1)
    boxes = np.array(rows, np.float64).reshape(-1, 4)
    boxes, keep, _ = validate_boxes(boxes, width, height, file=path, fields=fields, raw_values=raws,
                                    class_names=[class_names[lb - 1] for lb in labels], on_bad_box=on_bad_box,
                                    report=report)
    return boxes[keep], np.array(labels, np.int64)[keep]


def read_yolo(
    root: str | Path,
    split: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    name: str | None = None,
) -> DetectionDataset:
    """Read a YOLO folder (see the module docstring for layouts).

    Example:
        >>> ds = read_yolo("my_yolo_set", split="val")  # doctest: +SKIP
        >>> ds.class_names, ds.category_ids  # doctest: +SKIP
        (['cat', 'dog'], [0, 1])
    """
    root = Path(root)
    check_on_bad_box(on_bad_box)
    cfg_path = find_data_yaml(root)
    cfg = _load_yaml(cfg_path) if cfg_path is not None else None
    report = SkipReport()
    where, source = (lambda i: f"class_names[{i}]"), "class_names"
    if class_names is None:
        class_names = _names_from_yaml(cfg, cfg_path) if cfg is not None else None
        if class_names:
            where, source = (lambda i: f"{cfg_path}: field 'names[{i}]'"), "field 'names'"
        else:
            found = _names_from_file(root)
            if found is None:
                raise DatasetError(f"{root}: no class names (give 'names' in data.yaml, a classes.txt/obj.names "
                                   f"file, or class_names)")
            class_names, names_file = found
            where, source = (lambda i: f"{names_file}: name {i + 1}"), str(names_file)
    class_names = list(class_names)
    report_class_names(class_names, report, where)
    _check_nc(cfg, cfg_path, class_names, source, report)
    images = _images_for_split(root, split, cfg, cfg_path, report)
    _report_orphan_labels(images, report)
    records = []
    for image_id, image in enumerate(images):
        width, height = read_image_size(image)
        label_file = label_path_for(image)
        if optional_file(label_file, "label file"):  # a folder there is an error, not a negative image
            boxes, labels = _parse_label_file(label_file, width, height, len(class_names), on_bad_box, report,
                                              class_names)
        else:
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        file_name = relative_file_name(image, root)
        records.append(ImageRecord(image_id=image_id, file_name=file_name, width=width, height=height,
                                   boxes=boxes, labels=labels))
    require_nonempty(records, str(root), split, report)
    ds = DetectionDataset(records, class_names, list(range(len(class_names))), root=root,
                          name=name or f"{root.name}-{split or 'all'}")
    return finish_dataset(ds, report, split)
