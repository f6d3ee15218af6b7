"""``open_dataset``: turn ``--data PATH --split S`` into a dataset, detecting the format when not given.

Detection rules (a folder may match more than one; then the format must be named):

========= ==================================================================================
format    recognised by
========= ==================================================================================
synthetic the source string ``synthetic`` or ``synthetic:<preset>`` (easy, default, hard)
coco      a ``.json`` file, or a folder with ``*.json`` or ``annotations/*.json``
voc       ``Annotations/*.xml`` + ``JPEGImages/``, or ``annotations/*.xml`` + ``images/``
yolo      ``data.yaml``, or ``images/`` + ``labels/*.txt``
kitti     ``label_2/`` + ``image_2/`` (or under ``training/``)
========= ==================================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DatasetError, DetectionDataset
from .coco import find_coco_json, read_coco
from .kitti import find_kitti_root, read_kitti
from .synthetic import SyntheticConfig, SyntheticShapes
from .validate import SkipReport, check_on_bad_box
from .voc import find_voc_layout, read_voc
from .yolo import is_yolo_folder, read_yolo

FORMATS = ("coco", "voc", "yolo", "kitti", "synthetic")


def _is_coco_folder(path: Path) -> bool:
    return any(path.glob("*.json")) or any((path / "annotations").glob("*.json"))


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
        raise DatasetError(f"{path}: cannot tell the format of this file (a COCO annotation file ends in .json)")
    found = [fmt for fmt, test in (("coco", _is_coco_folder), ("voc", find_voc_layout),
                                   ("yolo", is_yolo_folder), ("kitti", find_kitti_root)) if test(path)]
    if not found:
        raise DatasetError(f"{path}: unknown dataset format (expected COCO json, VOC Annotations/+JPEGImages/, "
                           f"YOLO data.yaml or images/+labels/, or KITTI label_2/+image_2/)")
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
    if fmt == "coco":
        json_path = path if path.is_file() else find_coco_json(path, split)
        return read_coco(json_path, kwargs.get("image_root"), split=split, class_names=class_names,
                         on_bad_box=on_bad_box)
    if path.is_file():
        raise DatasetError(f"{path}: a {fmt} dataset is a folder, not a file")
    if fmt == "voc":
        return read_voc(path, split, class_names=class_names, on_bad_box=on_bad_box)
    if fmt == "yolo":
        return read_yolo(path, split, class_names=class_names, on_bad_box=on_bad_box)
    return read_kitti(path, split, class_map=class_map, class_names=class_names, on_bad_box=on_bad_box)
