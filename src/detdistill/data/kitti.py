"""KITTI 2D object labels reader.

Layout: ``label_2/<id>.txt`` + ``image_2/<id>.png`` (directly under the folder or under ``training/``);
splits, when wanted, as id lists ``ImageSets/<split>.txt`` or ``splits/<split>.txt``. Each label line is
``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]``; only ``type`` and the 2D box
are used.

``DontCare`` regions are ignored (by the format's definition they are not objects). Other types go through
``class_map`` (type -> class name, or None to ignore that type on purpose, e.g. ``{"Misc": None}``); a type
missing from a given ``class_map`` is an ``unknown_class`` (error, or a counted skip). Without a
``class_map`` every type is its own class. Class order, unless ``class_names`` is given: the sorted mapped
names found in the whole folder. Image sizes come from the image headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

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
from .base import IMAGE_EXTENSIONS

IGNORED_TYPES = frozenset({"DontCare"})


def find_kitti_root(root: str | Path) -> Path | None:
    root = Path(root)
    for base in (root, root / "training"):
        if (base / "label_2").is_dir() and (base / "image_2").is_dir():
            return base
    return None


def _parse_lines(path: Path) -> list[tuple[int, str, list[float], str]]:
    out = []
    for n, line in enumerate(read_text_file(path, "KITTI label file").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) not in (15, 16):
            raise DatasetError(f"{path}: field 'line {n}' has value {line.strip()!r}: expected 15 values "
                               f"(type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y)")
        try:
            coords = [float(t) for t in tokens[4:8]]
        except ValueError:
            raise DatasetError(f"{path}: field 'line {n} bbox' has value {' '.join(tokens[4:8])!r}: not numbers") from None
        out.append((n, tokens[0], coords, " ".join(tokens[4:8])))
    return out


def read_kitti(
    root: str | Path,
    split: str | None = None,
    *,
    class_map: Mapping[str, str | None] | None = None,
    class_names: Sequence[str] | None = None,
    on_bad_box: str = "error",
    name: str | None = None,
) -> DetectionDataset:
    """Read a KITTI object folder (see the module docstring).

    Example:
        >>> ds = read_kitti("kitti", class_map={"Car": "car", "Van": "car", "Pedestrian": "person",
        ...                                     "Misc": None})  # doctest: +SKIP
        >>> ds.class_names  # doctest: +SKIP
        ['car', 'person']
    """
    root = Path(root)
    check_on_bad_box(on_bad_box)
    base = find_kitti_root(root)
    if base is None:
        raise DatasetError(f"{root}: not a KITTI folder (expected label_2/ and image_2/)")
    label_dir, image_dir = base / "label_2", base / "image_2"
    all_labels = sorted(label_dir.glob("*.txt"))
    if split is None:
        label_files = all_labels
    else:
        for cand in (base / "ImageSets" / f"{split}.txt", root / "ImageSets" / f"{split}.txt",
                     base / "splits" / f"{split}.txt", root / "splits" / f"{split}.txt"):
            if optional_file(cand, "split list"):
                ids = [ln.split()[0] for ln in read_text_file(cand, "split list").splitlines() if ln.strip()]
                label_files = [label_dir / f"{i}.txt" for i in ids]
                break
        else:
            raise DatasetError(f"{root}: no split list for split {split!r} (looked for ImageSets/{split}.txt and "
                               f"splits/{split}.txt)")
    parsed = {}
    for p in label_files:
        parsed[p] = _parse_lines(require_file(p, "label file"))

    def mapped(t: str) -> str | None:
        return class_map.get(t) if class_map is not None else t

    report = SkipReport()
    if class_names is None:
        found: dict[str, str] = {}  # mapped name -> the file and line that first gives it
        lines, ignored = 0, 0
        for p in all_labels:
            for n, t, _, _ in parsed.get(p) or _parse_lines(p):
                lines += 1
                if t not in IGNORED_TYPES and (class_map is None or t in class_map) and mapped(t) is not None:
                    found.setdefault(mapped(t), f"{p}: field 'line {n} type'")
                elif t in IGNORED_TYPES or (class_map is not None and class_map.get(t, "") is None):
                    ignored += 1
        if not found and lines and ignored == lines:
            by_map = " or mapped to None by class_map" if class_map is not None else ""
            raise DatasetError(f"{label_dir}: every label is DontCare{by_map} ({lines} lines in {len(all_labels)} "
                               "files), so there is no class to train or score; label the objects, or map their "
                               "types with class_map")
        class_names = sorted(found)
        report_class_names(class_names, report, lambda i: found[class_names[i]])
    else:
        report_class_names(list(class_names), report, lambda i: f"class_names[{i}]")
    class_names = list(class_names)
    label_of = {n: i + 1 for i, n in enumerate(class_names)}
    records = []
    for image_id, p in enumerate(label_files):
        image = next((image_dir / (p.stem + e) for e in IMAGE_EXTENSIONS
                      if optional_file(image_dir / (p.stem + e), "image file")),
                     image_dir / (p.stem + ".png"))
        width, height = read_image_size(image)
        rows, labels, fields, raws, names = [], [], [], [], []
        for n, t, coords, raw in parsed[p]:
            if t in IGNORED_TYPES or (class_map is not None and t in class_map and class_map[t] is None):
                continue
            cname = mapped(t)
            if cname is None or cname not in label_of:
                bad_input(report, on_bad_box, "unknown_class",
                          f"{p}: field 'line {n} type' has value {t!r}: unknown class (class map/names: "
                          f"{sorted(class_map) if class_map is not None else class_names})", t)
                continue
            rows.append(coords)
            labels.append(label_of[cname])
            fields.append(f"line {n} bbox")
            raws.append(repr(raw))
            names.append(cname)
        boxes = np.array(rows, np.float64).reshape(-1, 4)
        boxes, keep, _ = validate_boxes(boxes, width, height, file=p, fields=fields, raw_values=raws,
                                        class_names=names, on_bad_box=on_bad_box, report=report)
        records.append(ImageRecord(image_id=image_id, file_name=relative_file_name(image, root), width=width,
                                   height=height, boxes=boxes[keep], labels=np.array(labels, np.int64)[keep]))
    require_nonempty(records, str(root), split)
    ds = DetectionDataset(records, class_names, root=root, name=name or f"{root.name}-{split or 'all'}")
    return finish_dataset(ds, report, split)
