"""Pascal VOC XML reader.

Two layouts are recognised:

* VOC: ``Annotations/*.xml``, ``JPEGImages/``, splits in ``ImageSets/Main/<split>.txt`` (e.g. bccd);
* raccoon-style: ``annotations/*.xml``, ``images/``, splits in ``splits/<split>.txt``.

Conventions:

* Class order, when ``class_names`` is not given, is the sorted set of names found in **every** XML file of
  the folder (not only the split's), so that train and test splits of one folder agree on labels. For
  bccd that is ``["Platelets", "RBC", "WBC"]``.
* Coordinates are taken as written (``xmin, ymin, xmax, ymax`` in pixels, no 1-based shift), as
  torchvision's references do; a box with ``xmin == xmax`` therefore has zero area (bccd has two).
* ``difficult`` is kept (VOC mAP ignores such boxes); ``truncated`` and ``pose`` are not used.
* ``image_id`` is the position in the split list. Grayscale, RGBA and palette images are decoded to RGB.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DatasetError, DetectionDataset, ImageRecord, optional_file, require_file
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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_LAYOUTS = (("Annotations", "JPEGImages", Path("ImageSets") / "Main"), ("annotations", "images", Path("splits")))


@dataclass
class VocLayout:
    annotations: Path
    images: Path
    splits: Path


@dataclass
class _VocObject:
    name: str
    coords: list[float]
    raw: str
    difficult: bool
    field: str


@dataclass
class _VocFile:
    path: Path
    file_name: str
    width: int
    height: int
    objects: list[_VocObject]


def find_voc_layout(root: str | Path) -> VocLayout | None:
    """The folders of a VOC-like tree, or None when ``root`` is not one."""
    root = Path(root)
    for ann, img, splits in _LAYOUTS:
        if (root / ann).is_dir() and (root / img).is_dir() and any((root / ann).glob("*.xml")):
            return VocLayout(root / ann, root / img, root / splits)
    return None


def _text(node: ET.Element, tag: str, path: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{path}: field '{where}{tag}' is missing")
    return child.text.strip()


def _number(text: str, path: Path, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{path}: field '{field}' has value {text!r}: not a number") from None


def parse_voc_xml(path: str | Path) -> _VocFile:
    """Parse one annotation file; malformed XML or missing fields raise :class:`DatasetError`."""
    path = require_file(path, "annotation file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: malformed XML ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if root.tag != "annotation":
        raise DatasetError(f"{path}: field 'annotation' is missing (root element is <{root.tag}>)")
    fn_node = root.find("filename")
    file_name = fn_node.text.strip() if fn_node is not None and fn_node.text and fn_node.text.strip() else ""
    width = height = 0
    size = root.find("size")
    if size is not None:
        for tag in ("width", "height"):
            node = size.find(tag)
            if node is not None and node.text and node.text.strip():
                value = _number(node.text.strip(), path, f"size.{tag}")
                if value < 0 or not float(value).is_integer():
                    raise DatasetError(f"{path}: field 'size.{tag}' has value {node.text.strip()!r}: "
                                       f"not a non-negative integer")
                if tag == "width":
                    width = int(value)
                else:
                    height = int(value)
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k}]."
        name = _text(obj, "name", path, where)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{path}: field '{where}bndbox' is missing")
        texts = [_text(bnd, t, path, where + "bndbox.") for t in ("xmin", "ymin", "xmax", "ymax")]
        coords = [_number(t, path, f"{where}bndbox.{tag}") for t, tag in zip(texts, ("xmin", "ymin", "xmax", "ymax"))]
        diff_node = obj.find("difficult")
        diff_text = diff_node.text.strip() if diff_node is not None and diff_node.text else "0"
        if diff_text not in ("0", "1"):
            raise DatasetError(f"{path}: field '{where}difficult' has value {diff_text!r}: expected 0 or 1")
        objects.append(_VocObject(name, coords, "(xmin, ymin, xmax, ymax) = (" + ", ".join(texts) + ")",
                                  diff_text == "1", where + "bndbox"))
    return _VocFile(path, file_name, width, height, objects)


def _read_split_ids(layout: VocLayout, split: str) -> list[str]:
    path = layout.splits / f"{split}.txt"
    if not optional_file(path, "split file"):
        available = sorted(p.stem for p in layout.splits.glob("*.txt")) if layout.splits.is_dir() else []
        raise DatasetError(f"{path}: split file not found for split {split!r} (available: {available})")
    # VOC's per-class lists carry a second column ("id  1"); the id is the first token.
    return [line.split()[0] for line in read_text_file(path, "split file").splitlines() if line.strip()]


def _image_file(layout: VocLayout, parsed: _VocFile) -> Path:
    if parsed.file_name:
        return layout.images / parsed.file_name
    for ext in IMAGE_EXTENSIONS:  # <filename> is optional in hand-written files: fall back to the stem
        candidate = layout.images / (parsed.path.stem + ext)
        if optional_file(candidate, "image file"):
            return candidate
    return layout.images / (parsed.path.stem + ".jpg")


def read_voc(
    root: str | Path,
    split: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    name: str | None = None,
) -> DetectionDataset:
    """Read a Pascal VOC folder (see the module docstring for layouts and conventions).

    Args:
        root: the folder holding ``Annotations/`` + ``JPEGImages/`` (or ``annotations/`` + ``images/``).
        split: a split list name (``train``, ``test``, ...); None reads every XML file.
        class_names: the label order; default: sorted names found in the whole folder.
        on_bad_box: ``error`` or ``skip`` (see :mod:`detdistill.data.validate`).

    Example:
        >>> ds = read_voc("../shared/data/bccd", split="test")  # doctest: +SKIP
        >>> len(ds), ds.class_names  # doctest: +SKIP
        (72, ['Platelets', 'RBC', 'WBC'])
    """
    root = Path(root)
    check_on_bad_box(on_bad_box)
    layout = find_voc_layout(root)
    if layout is None:
        raise DatasetError(f"{root}: not a Pascal VOC folder (expected Annotations/*.xml + JPEGImages/, "
                           f"or annotations/*.xml + images/)")
    all_xml = sorted(layout.annotations.glob("*.xml"))
    if split is None:
        xml_files = all_xml
    else:
        ids = _read_split_ids(layout, split)
        xml_files = [layout.annotations / f"{i}.xml" for i in ids]
        for path in xml_files:
            if not optional_file(path, "annotation file"):
                raise DatasetError(f"{layout.splits / (split + '.txt')}: id {path.stem!r} has no annotation file {path}")
    parsed = [parse_voc_xml(p) for p in xml_files]
    report = SkipReport()
    if class_names is None:
        wanted = set(xml_files)
        others = [parse_voc_xml(p) for p in all_xml if p not in wanted]
        first_seen: dict[str, str] = {}  # name -> the file and field that first gives it
        for f in parsed + others:
            for o in f.objects:
                first_seen.setdefault(o.name, f"{f.path}: field '{o.field[:-len('bndbox')]}name'")
        class_names = sorted(first_seen)
        report_class_names(class_names, report, lambda i: first_seen[class_names[i]])
    else:
        report_class_names(list(class_names), report, lambda i: f"class_names[{i}]")
    class_names = list(class_names)
    label_of = {n: i + 1 for i, n in enumerate(class_names)}
    records = []
    for image_id, f in enumerate(parsed):
        image_path = _image_file(layout, f)
        width, height = f.width, f.height
        if width == 0 or height == 0:
            width, height = read_image_size(image_path)
            report.add("size_from_image", f"{f.path}: field 'size' is missing or zero; read "
                                          f"{width}x{height} from {image_path}")
        objs = []
        for o in f.objects:
            if o.name not in label_of:
                bad_input(report, on_bad_box, "unknown_class",
                          f"{f.path}: field '{o.field[:-len('bndbox')]}name' has value {o.name!r}: unknown class "
                          f"(known: {class_names})", o.name)
                continue
            objs.append(o)
        boxes = np.array([o.coords for o in objs], np.float64).reshape(-1, 4)
        boxes, keep, _ = validate_boxes(boxes, width, height, file=f.path, fields=[o.field for o in objs],
                                        raw_values=[o.raw for o in objs], class_names=[o.name for o in objs],
                                        on_bad_box=on_bad_box, report=report)
        objs = [o for o, k in zip(objs, keep) if k]
        records.append(ImageRecord(
            image_id=image_id, file_name=relative_file_name(image_path, root), width=width, height=height,
            boxes=boxes[keep], labels=[label_of[o.name] for o in objs],
            difficult=np.array([o.difficult for o in objs], bool),
        ))
    require_nonempty(records, str(root), split)
    ds = DetectionDataset(records, class_names, root=root, name=name or f"{root.name}-{split or 'all'}")
    return finish_dataset(ds, report, split)
