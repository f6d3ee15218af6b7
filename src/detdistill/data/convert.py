"""Conversion of any :class:`DetectionDataset` to other formats (COCO ground truth first: evaluation's input)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text
from .base import DetectionDataset


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
