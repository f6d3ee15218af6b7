"""Pascal VOC XML reader.

Layouts recognised (:func:`find_voc_layout`):

* VOC: ``Annotations/*.xml``, ``JPEGImages/``, splits in ``ImageSets/Main/<split>.txt`` (e.g. bccd);
* raccoon-style: ``annotations/*.xml``, ``images/``, splits in ``splits/<split>.txt``;
* any other folder names (``annots/``, ``xml/``, ``labels/`` beside ``images/``, ``img/``...), or XML files
  beside their images; each image is found from ``<filename>`` or, failing that, the XML's stem.

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

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import IMAGE_EXTENSIONS, DatasetError, DetectionDataset, ImageRecord, optional_file, path_kind, require_file
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


def find_voc_layout(root: str | Path, annotations_dir: str | Path | None = None,
                    images_dir: str | Path | None = None) -> VocLayout | None:
    """The folders of a VOC-like tree, or None when ``root`` is not one.

    The canonical layouts first; then any folder of VOC XML files (``root`` itself or one folder in it:
    ``annots/``, ``xml/``, ``labels/``...) with the folder that holds the images they name (``<filename>``, else
    the XML's stem): the XML folder itself (XML beside its images), ``root``, or another folder in it.
    ``annotations_dir`` / ``images_dir`` (relative to ``root``) name the folders instead of guessing.
    """
    root = Path(root)
    splits = root / "ImageSets" / "Main" if (root / "ImageSets" / "Main").is_dir() else root / "splits"
    if annotations_dir is None and images_dir is None:
        for ann, img, split_dir in _LAYOUTS:
            if (root / ann).is_dir() and (root / img).is_dir() and any((root / ann).glob("*.xml")):
                return VocLayout(root / ann, root / img, root / split_dir)
    if not root.is_dir():
        return None
    if annotations_dir is not None:
        ann_dir = root / annotations_dir
        if not ann_dir.is_dir():
            raise DatasetError(f"{ann_dir}: annotations folder not found (data.annotations_dir={annotations_dir!r})")
    else:
        folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        counted = [(sum(1 for _ in f.glob("*.xml")), f) for f in folders]
        counted = [(n, f) for n, f in counted if n and _looks_like_voc(next(f.glob("*.xml")))]
        if not counted:
            return None
        ann_dir = max(counted, key=lambda t: t[0])[1]
    if images_dir is not None:
        img_dir = root / images_dir
        if not img_dir.is_dir():
            raise DatasetError(f"{img_dir}: images folder not found (data.images_dir={images_dir!r})")
        return VocLayout(ann_dir, img_dir, splits)
    sample = sorted(ann_dir.glob("*.xml"))
    sample = [sample[int(i)] for i in sorted({int(k) for k in np.linspace(0, len(sample) - 1, min(len(sample), 16))})]
    wanted = [_filename_of(p) for p in sample]
    candidates = [ann_dir, root] + sorted(p for p in root.iterdir() if p.is_dir() and p != ann_dir)
    best, best_hits = None, 0
    for c in candidates:
        hits = sum(_image_in(c, name, xml.stem) is not None for name, xml in zip(wanted, sample))
        if hits > best_hits:
            best, best_hits = c, hits
    return VocLayout(ann_dir, best, splits) if best is not None else None


def _looks_like_voc(xml: Path) -> bool:
    try:
        with open(xml, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b"<annotation" in head


def _filename_of(xml: Path) -> str:
    """``<filename>`` of a VOC file without parsing all of it ('' when absent)."""
    try:
        text = xml.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    m = re.search(r"<filename>\s*([^<]*?)\s*</filename>", text)
    return m.group(1) if m else ""


def _image_in(folder: Path, file_name: str, stem: str) -> Path | None:
    """The image of one XML in ``folder``: ``<filename>`` as written, else the XML's stem with an image suffix
    (labelling tools write ``<filename>`` without a suffix, or with another one than the file's)."""
    if file_name and Path(file_name).name == file_name and (folder / file_name).is_file():
        return folder / file_name
    for base in dict.fromkeys([stem, Path(file_name).stem if file_name else stem]):
        for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
            if (folder / (base + ext)).is_file():
                return folder / (base + ext)
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
    found = _image_in(layout.images, parsed.file_name, parsed.path.stem)
    if found is not None:
        return found
    # Not there: the name the file gives, so the error (and the pre-flight check) names what was looked for.
    return layout.images / (parsed.file_name or parsed.path.stem + ".jpg")


def read_voc(
    root: str | Path,
    split: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    name: str | None = None,
    annotations_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
) -> DetectionDataset:
    """Read a Pascal VOC folder (see the module docstring for layouts and conventions).

    Args:
        root: the folder holding ``Annotations/`` + ``JPEGImages/`` (or ``annotations/`` + ``images/``).
        split: a split list name (``train``, ``test``, ...); None reads every XML file.
        class_names: the label order; default: sorted names found in the whole folder.
        on_bad_box: ``error`` or ``skip`` (see :mod:`detdistill.data.validate`).
        annotations_dir, images_dir: the XML and image folders relative to ``root`` (default: found, see
            :func:`find_voc_layout`).

    Example:
        >>> ds = read_voc("../shared/data/bccd", split="test")  # doctest: +SKIP
        >>> len(ds), ds.class_names  # doctest: +SKIP
        (72, ['Platelets', 'RBC', 'WBC'])
    """
    root = Path(root)
    check_on_bad_box(on_bad_box)
    layout = find_voc_layout(root, annotations_dir, images_dir)
    if layout is None:
        from .layouts import describe_folder

        raise DatasetError(f"{root}: not a Pascal VOC folder (no folder of VOC XML files with their images; found "
                           f"{describe_folder(root)}); name the folders with data.annotations_dir=DIR "
                           "data.images_dir=DIR (--annotations-dir/--images-dir)")
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
        if split is not None and path_kind(image_path) == "missing":  # other kinds: named when decoded
            # The split file chose this image: name both (the pre-flight check would only name the image).
            raise DatasetError(f"{layout.splits / (split + '.txt')}: id {f.path.stem!r} names image {image_path} "
                               f"(from {f.path}), which is not there; restore the image or remove the id")
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
