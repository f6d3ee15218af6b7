"""COCO JSON reader.

* Category ids (non-contiguous in real files, e.g. 1..90 with gaps) are sorted and mapped to contiguous
  labels 1..K; ``dataset.category_ids`` maps them back, so predictions can be written in the file's ids.
* ``iscrowd`` is kept; ``ignore`` (what :func:`detdistill.data.convert.to_coco_dict` writes for VOC's
  ``difficult``) becomes ``difficult``; the file's ``area`` is kept (COCO AP's size ranges use it) except
  for clipped boxes, whose area becomes the clipped box's.
* Images without annotations are kept as negatives. ``image_id`` is the file's id.
* Images are looked up under ``image_root``; by default the first of ``<json dir>/images``,
  ``<json dir>/../images``, ``<json dir>/<split>``, ``<json dir>/../<split>``, ``<json dir>``,
  ``<json dir>/..`` that holds the first image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import DatasetError, DetectionDataset, ImageRecord, box_area
from .validate import SkipReport, bad_input, check_on_bad_box, finish_dataset, require_nonempty, validate_boxes


def _field(obj: dict, key: str, path: Path, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DatasetError(f"{path}: field '{where}{key}' is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetError(f"{path}: field '{where}{key}' has value {value!r}: expected {getattr(kind, '__name__', kind)}")
    return value


def load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc})") from None


def _guess_image_root(json_path: Path, first_file: str | None, split: str | None) -> Path:
    here = json_path.parent
    candidates = [here / "images", here.parent / "images"]
    if split:
        candidates += [here / split, here.parent / split, here / "images" / split, here.parent / "images" / split]
    candidates += [here, here.parent]
    if first_file is not None:
        for c in candidates:
            if (c / first_file).is_file():
                return c
    return here


def find_coco_json(folder: str | Path, split: str | None) -> Path:
    """The annotation file of ``split`` in ``folder`` or ``folder/annotations``.

    A file matches a split when its stem ends with the split name, alone or after ``_``/``-``/``.``,
    optionally followed by digits (``train.json``, ``instances_train2017.json``; ``trainval`` is not
    ``train``).
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    if not files:
        raise DatasetError(f"{folder}: no COCO annotation JSON found (looked in {folder} and {folder / 'annotations'})")
    if split is None:
        if len(files) == 1:
            return files[0]
        raise DatasetError(f"{folder}: {len(files)} annotation files ({[f.name for f in files]}); name a split")
    pattern = re.compile(rf"(^|[_.\-]){re.escape(split)}\d*$")
    matches = [f for f in files if pattern.search(f.stem)]
    if len(matches) != 1:
        what = "no annotation file" if not matches else f"{len(matches)} annotation files"
        raise DatasetError(f"{folder}: {what} for split {split!r} (found: {[f.name for f in files]})")
    return matches[0]


def read_coco(
    annotation_file: str | Path,
    image_root: str | Path | None = None,
    *,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    name: str | None = None,
) -> DetectionDataset:
    """Read a COCO ground-truth JSON file (see the module docstring for conventions).

    ``class_names`` restricts and orders the classes by name: categories not in it become
    ``unknown_class`` (an error, or a counted skip under ``on_bad_box="skip"``).

    Example:
        >>> ds = read_coco("annotations/instances_val2017.json")  # doctest: +SKIP
        >>> ds.category_ids[:3], ds.num_classes  # doctest: +SKIP
        ([1, 2, 3], 81)
    """
    path = Path(annotation_file)
    check_on_bad_box(on_bad_box)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level has type {type(data).__name__}; expected an object with images, "
                           f"annotations, categories")
    images = _field(data, "images", path, "", list)
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError(f"{path}: field 'annotations' has value of type {type(anns).__name__}: expected list")
    cats = _field(data, "categories", path, "", list)
    cat_name: dict[int, str] = {}
    for k, cat in enumerate(cats):
        cid = _field(cat, "id", path, f"categories[{k}].", int)
        cname = _field(cat, "name", path, f"categories[{k}].", str)
        if cid in cat_name:
            raise DatasetError(f"{path}: field 'categories[{k}].id' has value {cid}: duplicate category id")
        cat_name[cid] = cname
    if class_names is None:
        category_ids = sorted(cat_name)
        class_names = [cat_name[c] for c in category_ids]
    else:
        class_names = list(class_names)
        by_name = {v: k for k, v in cat_name.items()}
        missing = [n for n in class_names if n not in by_name]
        if missing:
            raise DatasetError(f"{path}: field 'categories' lacks class names {missing} (has {sorted(by_name)})")
        category_ids = [by_name[n] for n in class_names]
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}

    image_info: dict[int, dict] = {}
    order: list[int] = []
    for k, img in enumerate(images):
        iid = _field(img, "id", path, f"images[{k}].", int)
        fname = _field(img, "file_name", path, f"images[{k}].", str)
        w = _field(img, "width", path, f"images[{k}].", (int, float))
        h = _field(img, "height", path, f"images[{k}].", (int, float))
        if w <= 0 or h <= 0:
            raise DatasetError(f"{path}: field 'images[{k}].width/height' has value {w}x{h}: not positive")
        if iid in image_info:
            raise DatasetError(f"{path}: field 'images[{k}].id' has value {iid}: duplicate image id")
        image_info[iid] = {"file_name": fname, "width": int(w), "height": int(h), "anns": []}
        order.append(iid)
    report = SkipReport()
    for k, ann in enumerate(anns):
        iid = _field(ann, "image_id", path, f"annotations[{k}].", int)
        if iid not in image_info:
            raise DatasetError(f"{path}: field 'annotations[{k}].image_id' has value {iid}: no such image")
        cid = _field(ann, "category_id", path, f"annotations[{k}].", int)
        bbox = _field(ann, "bbox", path, f"annotations[{k}].", list)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise DatasetError(f"{path}: field 'annotations[{k}].bbox' has value {bbox!r}: expected [x, y, w, h]")
        if cid not in label_of:
            known = "unknown category" if cid not in cat_name else f"category {cat_name[cid]!r} not in class_names"
            bad_input(report, on_bad_box, "unknown_class",
                      f"{path}: field 'annotations[{k}].category_id' has value {cid}: {known}", cat_name.get(cid))
            continue
        image_info[iid]["anns"].append((k, ann, bbox, cid))

    records = []
    for iid in order:
        info = image_info[iid]
        rows = info["anns"]
        boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for _, _, b, _ in rows], np.float64).reshape(-1, 4)
        boxes, keep, clipped = validate_boxes(
            boxes, info["width"], info["height"], file=path,
            fields=[f"annotations[{k}].bbox" for k, *_ in rows],
            raw_values=[repr(b) for _, _, b, _ in rows],
            class_names=[cat_name[c] for *_, c in rows], on_bad_box=on_bad_box, report=report)
        rows = [r for r, k in zip(rows, keep) if k]
        boxes, clipped = boxes[keep], clipped[keep]
        area = np.array([float(a.get("area", -1.0)) if isinstance(a.get("area"), (int, float)) else -1.0
                         for _, a, _, _ in rows], np.float32)
        own = box_area(boxes)
        area = np.where((area < 0) | clipped, own, area).astype(np.float32)
        records.append(ImageRecord(
            image_id=iid, file_name=info["file_name"], width=info["width"], height=info["height"], boxes=boxes,
            labels=[label_of[c] for *_, c in rows],
            iscrowd=np.array([int(a.get("iscrowd", 0)) for _, a, _, _ in rows], np.int64),
            difficult=np.array([bool(a.get("ignore", 0)) for _, a, _, _ in rows], bool),
            area=area,
        ))
    require_nonempty(records, str(path), split)
    if image_root is None:
        image_root = _guess_image_root(path, records[0].file_name, split)
    ds = DetectionDataset(records, class_names, category_ids, root=image_root,
                          name=name or f"{path.stem}")
    return finish_dataset(ds, report, split)
