"""Conversion of any :class:`DetectionDataset` to other formats (COCO ground truth first: evaluation's input)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..utils import atomic_write_text
from .base import DetectionDataset
from .validate import read_text_file
from .base import DatasetError


def to_coco_dict(dataset: DetectionDataset) -> dict[str, Any]:
    """COCO ground-truth dict: images, annotations (source category ids), categories.

    Boxes are written as ``[x, y, w, h]``; ``area`` is the record's (the COCO file's own area when the
    source is COCO, otherwise the box area); VOC ``difficult`` is kept as an extra ``ignore`` flag that
    COCO tools pass through.
    """
    images, annotations = [], []
    ann_id = 1
    for idx, rec in enumerate(dataset.records):
        images.append({"id": int(rec.image_id), "file_name": str(rec.file_name),
                       "width": int(rec.width), "height": int(rec.height)})
        for box, label, crowd, difficult, area in zip(rec.boxes, rec.labels, rec.iscrowd, rec.difficult, rec.area):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": ann_id,
                "image_id": int(rec.image_id),
                "category_id": int(dataset.label_to_category_id(int(label))),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(area),
                "iscrowd": int(crowd),
                "ignore": int(difficult),
            })
            ann_id += 1
    categories = [{"id": int(cid), "name": name, "supercategory": "object"}
                  for cid, name in zip(dataset.category_ids, dataset.class_names)]
    return {"info": {"description": dataset.name}, "images": images, "annotations": annotations,
            "categories": categories}


def write_coco(dataset: DetectionDataset, path: str | Path) -> Path:
    """Write the COCO ground-truth JSON of ``dataset`` to ``path`` (atomically)."""
    return atomic_write_text(json.dumps(to_coco_dict(dataset)), path)


# ---------------------------------------------------------------------------------------- folder exports
# Conversions write a folder that the matching reader opens again with the same split name, so converting
# train and test into one ``out`` builds one multi-split dataset (split lists, per-split JSON, data.yaml
# entries merge). Images are copied byte for byte (EXIF and grayscale stay; readers decode them the same
# way); datasets that make their pixels in memory (a subclass overriding ``load_image``, e.g. the synthetic
# one) are rendered to PNG. VOC and YOLO have no crowd flag: crowd boxes are written as plain boxes.

CONVERT_TARGETS = ("coco", "voc", "yolo")


def _in_memory(dataset: DetectionDataset) -> bool:
    return type(dataset).load_image is not DetectionDataset.load_image


def _stem(file_name: str) -> str:
    # Nested sources (images/train/a.jpg) flatten to one folder: keep the sub-path in the name, unique.
    p = Path(file_name)
    return "__".join(x for x in p.with_suffix("").parts if x not in ("/", "..", "."))


def _export_images(dataset: DetectionDataset, image_dir: Path) -> list[str]:
    """Copy (or render) every image into ``image_dir``; returns the new file names, in record order."""
    from PIL import Image

    image_dir.mkdir(parents=True, exist_ok=True)
    names, seen = [], set()
    memory = _in_memory(dataset)
    common = None
    if not memory:
        # Drop the prefix every file shares (e.g. JPEGImages/) so names stay short.
        parents = {Path(r.file_name).parent for r in dataset.records}
        common = parents.pop() if len(parents) == 1 else None
    for idx, rec in enumerate(dataset.records):
        rel = Path(rec.file_name)
        if common is not None:
            rel = rel.relative_to(common)
        stem = _stem(str(rel))
        if memory:
            name = stem + ".png"
            array = (dataset.load_image(idx).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy())
            Image.fromarray(array, "RGB").save(image_dir / name)
        else:
            src = dataset.image_path(idx)
            if not src.is_file():
                raise FileNotFoundError(f"{src}: image file not found (record {rec.image_id} of {dataset.name})")
            name = stem + src.suffix.lower()
            shutil.copyfile(src, image_dir / name)
        if name in seen:
            raise DatasetError(f"{dataset.name}: two images export to the same file name {name!r}")
        seen.add(name)
        names.append(name)
    return names


def _renamed(dataset: DetectionDataset, names: list[str]) -> DetectionDataset:
    records = [dataclasses.replace(r, file_name=n) for r, n in zip(dataset.records, names)]
    return DetectionDataset(records, dataset.class_names, dataset.category_ids, name=dataset.name)


def _num(v: float) -> str:
    return str(int(round(v))) if abs(v - round(v)) < 1e-6 else f"{v:.3f}".rstrip("0").rstrip(".")


def export_coco(dataset: DetectionDataset, out: str | Path, split: str = "all") -> Path:
    """``out/annotations/<split>.json`` + ``out/images/``; returns the JSON path.

    Example:
        >>> from detdistill.data import SyntheticShapes
        >>> export_coco(SyntheticShapes("val", num_images=2), "/tmp/coco_out", "val")  # doctest: +SKIP
        PosixPath('/tmp/coco_out/annotations/val.json')
    """
    out = Path(out)
    names = _export_images(dataset, out / "images")
    return write_coco(_renamed(dataset, names), out / "annotations" / f"{split}.json")


def _voc_xml(rec: Any, file_name: str, class_names: list[str]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", rec.width), ("height", rec.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(v))
    ET.SubElement(root, "segmented").text = "0"
    for box, label, difficult in zip(rec.boxes, rec.labels, rec.difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[int(label) - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(bool(difficult)))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, tag).text = _num(float(v))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_split_list(path: Path, ids: list[str]) -> None:
    atomic_write_text("".join(f"{i}\n" for i in ids), path)


def export_voc(dataset: DetectionDataset, out: str | Path, split: str = "all") -> Path:
    """``out/Annotations/*.xml``, ``out/JPEGImages/``, ``out/ImageSets/Main/<split>.txt``; returns ``out``."""
    out = Path(out)
    names = _export_images(dataset, out / "JPEGImages")
    for rec, name in zip(dataset.records, names):
        atomic_write_text(_voc_xml(rec, name, dataset.class_names), out / "Annotations" / (Path(name).stem + ".xml"))
    _write_split_list(out / "ImageSets" / "Main" / f"{split}.txt", [Path(n).stem for n in names])
    return out


def export_yolo(dataset: DetectionDataset, out: str | Path, split: str = "all") -> Path:
    """``out/images/<split>/``, ``out/labels/<split>/*.txt``, ``out/data.yaml``; returns the yaml path.

    Lines are ``label-1 cx cy w h`` normalised by the image size, 6 decimals (well within a pixel).
    """
    out = Path(out)
    names = _export_images(dataset, out / "images" / split)
    for rec, name in zip(dataset.records, names):
        lines = []
        for (x1, y1, x2, y2), label in zip(rec.boxes.astype(np.float64), rec.labels):
            cx, cy = (x1 + x2) / 2 / rec.width, (y1 + y2) / 2 / rec.height
            w, h = (x2 - x1) / rec.width, (y2 - y1) / rec.height
            lines.append(f"{int(label) - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        atomic_write_text("".join(lines), out / "labels" / split / (Path(name).stem + ".txt"))
    yaml_path = out / "data.yaml"
    cfg: dict[str, Any] = {}
    if yaml_path.is_file():
        cfg = yaml.safe_load(read_text_file(yaml_path, "data.yaml")) or {}
        old = cfg.get("names")
        old_list = [old[k] for k in sorted(old)] if isinstance(old, dict) else old
        if old_list is not None and list(old_list) != list(dataset.class_names):
            raise DatasetError(f"{yaml_path}: field 'names' has value {old_list!r}, which differs from this "
                               f"dataset's classes {dataset.class_names}; write to another folder")
    cfg[split] = f"images/{split}"
    cfg["nc"] = len(dataset.class_names)
    cfg["names"] = {i: n for i, n in enumerate(dataset.class_names)}
    atomic_write_text(yaml.safe_dump(cfg, sort_keys=False), yaml_path)
    return yaml_path


def convert_dataset(dataset: DetectionDataset, to: str, out: str | Path, split: str | None = None) -> Path:
    """Write ``dataset`` as ``to`` (``coco``, ``voc`` or ``yolo``) under ``out`` with split name ``split``
    (default: the dataset's own split, else ``all``); the matching reader opens the result again.

    Example:
        >>> from detdistill.data import SyntheticShapes, open_dataset
        >>> convert_dataset(SyntheticShapes("val", num_images=2), "voc", "/tmp/voc_out")  # doctest: +SKIP
        PosixPath('/tmp/voc_out')
        >>> len(open_dataset("/tmp/voc_out", split="val"))  # doctest: +SKIP
        2
    """
    split = split or getattr(dataset, "split", None) or "all"
    writers = {"coco": export_coco, "voc": export_voc, "yolo": export_yolo}
    if to not in writers:
        raise DatasetError(f"field 'to' has value {to!r}; choose one of {list(CONVERT_TARGETS)}")
    return writers[to](dataset, out, split)
