"""``open_dataset``: turn ``--data PATH --split S`` into a dataset, detecting the format when not given.

Detection rules (a folder may match more than one; then the format must be named):

========= ==================================================================================
format    recognised by
========= ==================================================================================
synthetic the source string ``synthetic`` or ``synthetic:<preset>`` (easy, default, hard)
coco      a ``.json`` file, or a folder with ``*.json`` or ``annotations/*.json``
voc       ``Annotations/*.xml`` + ``JPEGImages/``, ``annotations/*.xml`` + ``images/``; else any folder of
          VOC XML (``annots/``, ``xml/``, ``labels/``, or beside the images) and the folder of its images
yolo      ``data.yaml``, or ``images/`` + ``labels/*.txt``
kitti     ``label_2/`` + ``image_2/`` (or under ``training/``)
csv       a ``.csv`` file, or ``*.csv``, with the columns ``filename,width,height,class,xmin,...,ymax``
========= ==================================================================================

A folder with none of these but with split folders (``train/``, ``valid/`` or ``val/``, ``test/``), each
holding one of them, is a labelling-tool export: its format is its split folders' (:mod:`.layouts`).
When nothing matches, the error lists what the folder holds and how to name the format and folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DatasetError, DetectionDataset
from .coco import find_coco_json, read_coco
from .kitti import find_kitti_root, read_kitti
from .layouts import describe_folder, find_split_folders, guess_from_files, open_split_folders
from .split import check_fractions, split_dataset
from .synthetic import SyntheticConfig, SyntheticShapes
from .tfcsv import find_csv_files, is_tf_csv, read_tf_csv
from .validate import SkipReport, check_on_bad_box
from .voc import find_voc_layout, read_voc
from .yolo import _names_from_file as _yolo_names_file
from .yolo import is_yolo_folder, read_yolo

FORMATS = ("coco", "voc", "yolo", "kitti", "csv", "synthetic")


def _is_coco_folder(path: Path) -> bool:
    return any(path.glob("*.json")) or any((path / "annotations").glob("*.json"))


def _canonical_voc(path: Path) -> bool:
    return any((path / ann).is_dir() and (path / img).is_dir() and any((path / ann).glob("*.xml"))
               for ann, img in (("Annotations", "JPEGImages"), ("annotations", "images")))


def _found_formats(path: Path, generic_voc: bool = True) -> list[str]:
    """The formats whose files are in ``path`` itself (not in split folders)."""
    tests = (("coco", _is_coco_folder), ("voc", _canonical_voc), ("yolo", is_yolo_folder),
             ("kitti", find_kitti_root), ("csv", lambda p: bool(find_csv_files(p))))
    found = [fmt for fmt, test in tests if test(path)]
    if not found and generic_voc and find_voc_layout(path) is not None:
        found = ["voc"]
    return found


def _folder_format(path: Path) -> str | None:
    found = _found_formats(path)
    return found[0] if len(found) == 1 else None


def detect_format(source: str | Path) -> str:
    """The format of ``source`` (one of :data:`FORMATS`); a clear error when unknown or ambiguous.

    Example:
        >>> detect_format("synthetic:hard")
        'synthetic'
    """
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        return "synthetic"
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset path not found")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        if path.suffix.lower() == ".csv" and is_tf_csv(path):
            return "csv"
        raise DatasetError(f"{path}: cannot tell the format of this file (a COCO annotation file ends in .json, a "
                           f"TensorFlow CSV has the columns filename,width,height,class,xmin,ymin,xmax,ymax)")
    found = _found_formats(path, generic_voc=False)
    if not found:
        splits = find_split_folders(path, _folder_format)
        kinds = sorted({f for f in (_folder_format(p) for p in splits.values()) if f})
        if len(kinds) == 1:
            return kinds[0]
        if len(kinds) > 1:
            raise DatasetError(f"{path}: the split folders hold different formats "
                               f"({', '.join(f'{p.name}/: {_folder_format(p)}' for p in splits.values())})")
        found = _found_formats(path)
    if not found:
        raise DatasetError(f"{path}: unknown dataset format; found {describe_folder(path)}: {guess_from_files(path)}. "
                           "Readable: COCO json, VOC XML + images, YOLO data.yaml or images/+labels/, KITTI "
                           "label_2/+image_2/, TensorFlow CSV, or train/ valid/ test/ folders of one of them")
    if len(found) > 1:
        raise DatasetError(f"{path}: ambiguous dataset format, looks like {' and '.join(found)}; "
                           f"choose one with format=... (--format {found[0]})")
    return found[0]


def open_dataset(
    source: str | Path,
    split: str | None = None,
    format: str | None = None,  # noqa: A002 - the user-facing name (--format)
    *,
    on_bad_box: str = "error",
    class_map: dict | None = None,
    class_names: list[str] | None = None,
    annotations_dir: str | None = None,
    images_dir: str | None = None,
    auto_split: list[float] | None = None,
    auto_split_seed: int = 0,
    on_bad_image: str | None = None,
    **kwargs: Any,
) -> DetectionDataset:
    """Open any supported dataset; the result carries ``skips`` (a :class:`SkipReport`) and ``split``.

    Args:
        source: a path, or ``synthetic`` / ``synthetic:<preset>``.
        split: the split to read (None: every image; ``train`` for synthetic).
        format: one of :data:`FORMATS`; detected when None.
        on_bad_box: ``error`` or ``skip`` (see :mod:`detdistill.data.validate`).
        class_map: KITTI type -> class name (None ignores a type).
        class_names: the label order (default: each reader's documented order).
        annotations_dir, images_dir: VOC's XML and image folders, relative to ``source`` (default: found).
        auto_split, auto_split_seed: ``[train, val, test]`` fractions: ``split`` is then that part of a seeded,
            stratified split of every image (:mod:`detdistill.data.split`), the same part ``train`` uses.
        on_bad_image: ``repair``/``skip``/``error``: check every image first and apply the rule
            (:mod:`detdistill.data.image_check`; the report is ``dataset.image_check``); None: no check.
        kwargs: ``seed``, ``num_images``, ``config`` for synthetic; ``image_root`` for COCO.

    Example:
        >>> ds = open_dataset("synthetic", split="val", num_images=4)
        >>> len(ds), ds.num_classes, ds.skips.total
        (4, 7, 0)
        >>> ds = open_dataset("../shared/data/raccoon", split="train")  # doctest: +SKIP
        >>> len(ds)  # doctest: +SKIP
        160
    """
    check_on_bad_box(on_bad_box)
    if auto_split is not None or on_bad_image is not None:
        if auto_split is not None:
            if split not in ("train", "val", "test"):
                raise DatasetError(f"split {split!r}: with auto_split, name the part to read: train, val or test")
            parts = open_auto_split(source, auto_split, auto_split_seed, format=format, on_bad_box=on_bad_box,
                                    class_map=class_map, class_names=class_names, annotations_dir=annotations_dir,
                                    images_dir=images_dir, **kwargs)
            if split not in parts:
                raise DatasetError(f"auto_split={auto_split} leaves the part {split!r} empty; give it a larger fraction")
            ds = parts[split]
        else:
            ds = open_dataset(source, split, format, on_bad_box=on_bad_box, class_map=class_map,
                              class_names=class_names, annotations_dir=annotations_dir, images_dir=images_dir, **kwargs)
        if on_bad_image is not None:
            from .image_check import check_images

            ds.image_check = check_images({ds.name: ds}, on_bad_image)
        return ds
    fmt = format or detect_format(source)
    if fmt not in FORMATS:
        raise DatasetError(f"field 'format' has value {fmt!r}; choose one of {list(FORMATS)}")
    if fmt == "synthetic":
        text = str(source)
        preset = text.split(":", 1)[1] if ":" in text else None
        config = kwargs.get("config") or (SyntheticConfig.preset(preset) if preset else None)
        ds: DetectionDataset = SyntheticShapes(split or "train", num_images=kwargs.get("num_images"),
                                               seed=kwargs.get("seed", 0), config=config)
        ds.skips = SkipReport()
        return ds
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset path not found")

    def open_folder(folder: Path, split: str | None = split,
                    class_names: list[str] | None = class_names) -> DetectionDataset:
        return _open_path(folder, split, fmt, on_bad_box, class_map, class_names, annotations_dir, images_dir,
                          kwargs)

    if path.is_dir() and annotations_dir is None and images_dir is None and not _found_formats(path, False):
        folders = find_split_folders(path, _folder_format)
        if folders:
            if fmt == "yolo" and class_names is None:  # split folders share the export's classes.txt
                found = _yolo_names_file(path)
                class_names = found[0] if found else None
            ds = open_split_folders(path, folders, split, fmt,
                                    lambda folder, class_names: open_folder(folder, None, class_names), class_names)
            inner = describe_layout(next(iter(folders.values())), fmt, annotations_dir, images_dir)
            ds.layout = f"split folders {', '.join(f.name + '/' for f in folders.values())} each: {inner}"
            return ds
    ds = open_folder(path)
    ds.layout = describe_layout(path, fmt, annotations_dir, images_dir)
    return ds


def describe_layout(path: Path, fmt: str, annotations_dir: str | None = None, images_dir: str | None = None) -> str:
    """One line naming the files a dataset was read from (what ``data stats`` prints first)."""
    def rel(p: Path) -> str:
        return "beside it" if p == path else (str(p.relative_to(path)) + "/" if p.is_relative_to(path) else str(p))

    if path.is_file():
        return f"{fmt} file {path.name}"
    if fmt == "voc":
        layout = find_voc_layout(path, annotations_dir, images_dir)
        if layout is not None:
            where = "beside the XML" if layout.images == layout.annotations else f"in {rel(layout.images)}"
            return f"VOC XML in {rel(layout.annotations).replace('beside it', './')}, images {where}"
    if fmt == "csv":
        return f"TensorFlow CSV {', '.join(f.name for f in find_csv_files(path))}"
    if fmt == "coco":
        files = sorted(path.glob("*.json")) + sorted((path / "annotations").glob("*.json"))
        return f"COCO json {', '.join(rel(f.parent).replace('beside it', '') + f.name for f in files)}"
    if fmt == "yolo":
        from .yolo import find_data_yaml

        yaml_path = find_data_yaml(path)
        return f"YOLO {yaml_path.name}" if yaml_path is not None else "YOLO images/ + labels/"
    return fmt


def _open_path(path: Path, split: str | None, fmt: str, on_bad_box: str, class_map: dict | None,
               class_names: list[str] | None, annotations_dir: str | None, images_dir: str | None,
               kwargs: dict[str, Any]) -> DetectionDataset:
    if fmt == "csv":
        return read_tf_csv(path, split, class_names=class_names, on_bad_box=on_bad_box,
                           image_root=kwargs.get("image_root"))
    if fmt == "coco":
        json_path = path if path.is_file() else find_coco_json(path, split)
        return read_coco(json_path, kwargs.get("image_root"), split=split, class_names=class_names,
                         on_bad_box=on_bad_box)
    if path.is_file():
        raise DatasetError(f"{path}: a {fmt} dataset is a folder, not a file")
    if fmt == "voc":
        return read_voc(path, split, class_names=class_names, on_bad_box=on_bad_box, annotations_dir=annotations_dir,
                        images_dir=images_dir)
    if fmt == "yolo":
        return read_yolo(path, split, class_names=class_names, on_bad_box=on_bad_box)
    return read_kitti(path, split, class_map=class_map, class_names=class_names, on_bad_box=on_bad_box)


def open_auto_split(source: str, fractions: list[float], seed: int, *, format: str | None = None,  # noqa: A002
                    on_bad_box: str = "error", **kwargs: Any) -> dict[str, DetectionDataset]:
    """Every image of ``source`` (its own splits ignored), cut into ``train``/``val``/``test``."""
    check_fractions(fractions)
    whole = open_dataset(source, None, format, on_bad_box=on_bad_box, **kwargs)
    return split_dataset(whole, fractions, seed)
