"""COCO JSON reader.

* Category ids (non-contiguous in real files, e.g. 1..90 with gaps) are sorted and mapped to contiguous
  labels 1..K; ``dataset.category_ids`` maps them back, so predictions can be written in the file's ids.
* ``iscrowd`` is kept (training loaders drop crowd boxes, evaluation ignores them, as torchvision's
  references do); ``ignore`` (what :func:`detdistill.data.convert.to_coco_dict` writes for VOC's
  ``difficult``) becomes ``difficult``. Both must be 0, 1 or a JSON boolean: ``"0"`` is refused, not read
  as true; the file's ``area`` is kept (COCO AP's size ranges use it) except
  for clipped boxes, whose area becomes the clipped box's.
* Images without annotations are kept as negatives. ``image_id`` is the file's id.
* Images are looked up under ``image_root``; by default the first of ``<json dir>/images``,
  ``<json dir>/../images``, ``<json dir>/<split>``, ``<json dir>/../<split>``, ``<json dir>``,
  ``<json dir>/..`` that holds the most of a sample of the images (one missing image does not send every
  look-up to the wrong folder).
* Duplicate annotation ids are kept (training does not use them) but counted as the problem
  ``duplicate_annotation_id``; :func:`duplicate_annotation_ids` finds them for evaluation, which must refuse
  them (COCOeval matches by id).
* Annotations are held in a :class:`~detdistill.data.base.RecordTable` (flat arrays, no per-image Python
  objects) and checked column by column; when a column fails, a per-entry pass finds the first bad entry,
  so messages name the file, field and value of the first offender.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
import operator
from operator import itemgetter
from itertools import chain, repeat
from typing import Any, Sequence

import numpy as np

from .base import DatasetError, DetectionDataset, RecordTable, box_area, optional_file
from .validate import (
    SkipReport,
    bad_input,
    check_on_bad_box,
    finish_dataset,
    report_class_names,
    require_nonempty,
    validate_boxes,
)


_NUMBER = (int, float)
_INT64_MAX = 2**63 - 1
_MAX_SIDE = 2**31 - 1  # pixels; larger sizes are corrupt files (and overflow the size arrays)


def _field(obj: dict, key: str, path: Path, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DatasetError(f"{path}: field '{where}{key}' is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetError(f"{path}: field '{where}{key}' has value {value!r}: expected {getattr(kind, '__name__', kind)}")
    return value


def _flag(obj: dict, key: str, path: Path, where: str) -> int:
    """A 0/1 flag (``iscrowd``, ``ignore``): absent is 0; ``"0"``, ``null`` or 2 are errors, not guesses."""
    value = obj.get(key, 0)
    if type(value) not in (int, bool) or value not in (0, 1):
        raise DatasetError(f"{path}: field '{where}{key}' has value {value!r}: expected 0, 1, true or false")
    return int(value)


def _size(obj: dict, key: str, path: Path, where: str) -> int:
    value = _field(obj, key, path, where, _NUMBER)
    if not (0 < value <= _MAX_SIDE):  # False for NaN; a huge int compares without overflowing
        raise DatasetError(f"{path}: field '{where}{key}' has value {value!r}: expected a finite positive number "
                           f"of pixels (at most {_MAX_SIDE})")
    return int(value)


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; errors (missing, not UTF-8, malformed, nested too deeply) name the file."""
    path = Path(path)
    if not optional_file(path, "annotation file"):
        raise FileNotFoundError(f"{path}: annotation file not found")
    return _parse(path, _decode(path, path.read_bytes()))


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                           f"JSON files are UTF-8") from None


def _parse(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc})") from None
    except RecursionError:
        raise DatasetError(f"{path}: malformed JSON (arrays or objects nested too deeply to be an annotation "
                           f"file)") from None


def duplicate_annotation_ids(annotations: Sequence[Any]) -> list[tuple[int, Any, int]]:
    """``(index, id, first_index)`` for every annotation whose integer ``id`` an earlier one already has.

    Example:
        >>> duplicate_annotation_ids([{"id": 4}, {"id": 5}, {"id": 4}, {}])
        [(2, 4, 0)]
    """
    first: dict[Any, int] = {}
    out = []
    for k, ann in enumerate(annotations):
        aid = ann.get("id") if isinstance(ann, dict) else None
        if type(aid) is not int:
            continue
        if aid in first:
            out.append((k, aid, first[aid]))
        else:
            first[aid] = k
    return out


def _guess_image_root(json_path: Path, file_names: Sequence[str], split: str | None) -> Path:
    here = json_path.parent
    candidates = [here / "images", here.parent / "images"]
    if split:
        candidates += [here / split, here.parent / split, here / "images" / split, here.parent / "images" / split]
    candidates += [here, here.parent]
    if not file_names:
        return here
    # A sample spread over the file, not the first image alone: one missing image must not pick the folder.
    sample = sorted({int(i) for i in np.linspace(0, len(file_names) - 1, min(len(file_names), 16))})
    best, best_hits = here, 0
    for c in candidates:
        hits = sum((c / file_names[i]).is_file() for i in sample)
        if hits > best_hits:
            best, best_hits = c, hits
        if hits == len(sample):
            break
    return best


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


class _NotStreamable(Exception):
    """The streaming parse met something it leaves to the whole-document path (which names the problem)."""


_WS = re.compile(r"[ \t\n\r]*")
_SEP = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_CHUNK = 50_000  # annotations parsed one by one before trying a cut again
_CHUNK_CHARS = 4_000_000  # ~30k COCO annotations
_CUT = re.compile(r"\}[ \t\n\r]*,[ \t\n\r]*\{")


class _AnnotationColumns:
    """The annotations as arrays, built chunk by chunk while the file is parsed (see :func:`_stream_coco`)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, part: dict[str, np.ndarray]) -> None:
        self.parts.append(part)

    def finish(self) -> dict[str, np.ndarray]:
        if not self.parts:
            self.parts.append(_columns([]))
        out = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        self.parts = []
        return out


def _stream_coco(path: Path, text: str) -> dict[str, Any]:
    """The top-level object of ``text`` with ``annotations`` as :class:`_AnnotationColumns`.

    The annotations array is parsed a few MB at a time (:func:`_stream_array`) and each piece turned into
    arrays at once, so the tree of 860k annotation dicts (~0.6 GB for COCO train2017) never exists whole;
    the small sections (images, categories) become Python objects as usual. Anything unusual (another top
    level, a repeated key, a defect in an entry) raises :class:`_NotStreamable`: the whole-document path then
    parses the file again and names the problem.
    """
    scan = json.JSONDecoder().scan_once
    ws = _WS.match
    out: dict[str, Any] = {}
    try:
        idx = ws(text, 0).end()
        if text[idx] != "{":
            raise _NotStreamable
        idx = ws(text, idx + 1).end()
        while text[idx] != "}":
            key, idx = scan(text, idx)
            idx = ws(text, idx).end()
            if text[idx] != ":" or key in out:
                raise _NotStreamable
            idx = ws(text, idx + 1).end()
            if key == "annotations" and text[idx] == "[":
                columns = _AnnotationColumns()
                idx = ws(text, idx + 1).end()
                if text[idx] != "]":
                    idx = _stream_array(text, idx, columns)
                idx = ws(text, idx).end()
                if text[idx] != "]":
                    raise _NotStreamable
                out[key] = columns
                idx += 1
            else:
                out[key], idx = scan(text, idx)
            idx = ws(text, idx).end()
            if text[idx] == ",":
                idx = ws(text, idx + 1).end()
            elif text[idx] != "}":
                raise _NotStreamable
        if ws(text, idx + 1).end() != len(text):
            raise _NotStreamable
    except (StopIteration, IndexError, ValueError, RecursionError, TypeError) as exc:
        raise _NotStreamable from exc
    return out


def _stream_array(text: str, idx: int, columns: _AnnotationColumns) -> int:
    """Parse the array elements from ``text[idx]`` (the first one) into ``columns``; return the index after
    the last element.

    A few MB at a time: cut before the next ``}, {`` past the chunk size and parse the piece as one array
    with ``json.loads`` (C speed). A cut inside an element (a nested ``}, {``, or one in a string) leaves a
    piece that is never valid JSON, so such a piece, and the tail of the array, go element by element.
    """
    scan = json.JSONDecoder().scan_once
    sep = _SEP.match
    while True:
        cut = _CUT.search(text, idx + _CHUNK_CHARS) if len(text) > idx + _CHUNK_CHARS else None
        if cut is not None:
            try:
                chunk = json.loads("[" + text[idx:cut.start() + 1] + "]")
            except (ValueError, RecursionError):
                chunk = None
            if chunk is not None:
                columns.add(_checked_columns(chunk))
                idx = cut.end() - 1
                continue
        chunk = []
        while True:
            obj, idx = scan(text, idx)
            chunk.append(obj)
            m = sep(text, idx)
            if m is None:
                columns.add(_checked_columns(chunk))
                return idx
            idx = m.end()
            if cut is not None and len(chunk) == _CHUNK:
                break
        columns.add(_checked_columns(chunk))


def _checked_columns(chunk: list) -> dict[str, np.ndarray]:
    cols = _columns(chunk)
    if cols is None:
        raise _NotStreamable
    return cols


def _columns(anns: list) -> dict[str, np.ndarray] | None:
    """Per-annotation arrays, or None when any entry fails a structural check (the caller then finds it).

    Checks: ``image_id``/``category_id`` integers, ``bbox`` a list of 4 numbers, ``iscrowd``/``ignore`` 0/1
    or booleans. ``area`` is -1 where the file has no usable number; ``id``'s mask marks integer ids.
    """
    n = len(anns)
    try:
        iids = list(map(itemgetter("image_id"), anns))
        cids = list(map(itemgetter("category_id"), anns))
        bboxes = list(map(itemgetter("bbox"), anns))
        if not (_types_within(iids, (int,)) and _types_within(cids, (int,)) and _types_within(bboxes, (list,))
                and set(map(len, bboxes)) <= {4}):
            return None
        coord_types = list(map(type, chain.from_iterable(bboxes)))
        kinds = set(coord_types)
        if not kinds <= {int, float}:
            return None
        # Which coordinates the file wrote as integers, so messages quote a bbox as written ([1, 2.5, ...]).
        if len(kinds) == 1:
            bbox_int = np.full((n, 4), kinds == {int}, bool)
        else:
            bbox_int = np.fromiter(map(operator.is_, coord_types, repeat(int)), bool, 4 * n).reshape(n, 4)
        del coord_types
        crowd = list(map(dict.get, anns, repeat("iscrowd"), repeat(0)))
        ignore = list(map(dict.get, anns, repeat("ignore"), repeat(0)))
        if not (_types_within(crowd, (int, bool)) and set(crowd) <= {0, 1}
                and _types_within(ignore, (int, bool)) and set(ignore) <= {0, 1}):
            return None
        cols = {
            "image_id": np.fromiter(iids, np.int64, n), "category_id": np.fromiter(cids, np.int64, n),
            "bbox": np.fromiter(chain.from_iterable(bboxes), np.float64, 4 * n).reshape(n, 4),
            "bbox_int": bbox_int,
            "iscrowd": np.fromiter(crowd, np.uint8, n), "ignore": np.fromiter(ignore, bool, n),
        }
    except (KeyError, TypeError, OverflowError):
        return None
    areas = list(map(dict.get, anns, repeat("area"), repeat(-1.0)))
    try:
        if not _types_within(areas, _NUMBER):
            raise OverflowError
        cols["area"] = np.fromiter(areas, np.float64, n)
    except OverflowError:
        cols["area"] = np.array([_finite_float(v) for v in areas], np.float64).reshape(n)
    ids = list(map(dict.get, anns, repeat("id")))
    try:
        if not _types_within(ids, (int,)):
            raise OverflowError
        cols["id"], cols["id_ok"] = np.fromiter(ids, np.int64, n), np.ones(n, bool)
    except OverflowError:  # ids missing, not integers or huge: only the integer ones are compared
        id_ok = np.fromiter((type(v) is int and -_INT64_MAX <= v <= _INT64_MAX for v in ids), bool, n)
        cols["id"] = np.fromiter((v if ok else 0 for v, ok in zip(ids, id_ok.tolist())), np.int64, n)
        cols["id_ok"] = id_ok
    return cols


def _finite_float(v: Any) -> float:
    try:
        return float(v) if type(v) in (int, float) else -1.0
    except OverflowError:
        return -1.0


def _read_document(path: Path) -> dict[str, Any]:
    """The file's top level, with ``annotations`` already as arrays when the file is well formed."""
    if not optional_file(path, "annotation file"):
        raise FileNotFoundError(f"{path}: annotation file not found")
    text = _decode(path, path.read_bytes())
    # Parsed JSON has no reference cycles, so the cycle collector has nothing to find; left on, it walks every
    # live object (torch's included) again and again while the parser allocates a million containers.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _read_text(path, text)
    finally:
        if gc_was_enabled:
            gc.enable()


def _read_text(path: Path, text: str) -> Any:
    try:
        return _stream_coco(path, text)
    except _NotStreamable:
        pass
    data = _parse(path, text)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        anns = data["annotations"]
        cols = _columns(anns)
        if cols is None:
            data["annotations"] = _BadAnnotations(anns)
        else:
            columns = _AnnotationColumns()
            columns.add(cols)
            data["annotations"] = columns
    return data


class _BadAnnotations:
    """Annotations with a structural defect somewhere: :func:`_first_bad_annotation` names the first."""

    def __init__(self, anns: list) -> None:
        self.anns = anns


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
    data = _read_document(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level has type {type(data).__name__}; expected an object with images, "
                           f"annotations, categories")
    images = _field(data, "images", path, "", list)
    anns = data.get("annotations", [])
    if isinstance(anns, list):
        anns = _BadAnnotations(anns) if anns else _AnnotationColumns()
    if not isinstance(anns, (_AnnotationColumns, _BadAnnotations)):
        raise DatasetError(f"{path}: field 'annotations' has value of type {type(anns).__name__}: expected list")
    cats = _field(data, "categories", path, "", list)
    cat_name: dict[int, str] = {}
    cat_index: dict[int, int] = {}  # id -> position in 'categories', for messages
    for k, cat in enumerate(cats):
        cid = _field(cat, "id", path, f"categories[{k}].", int)
        cname = _field(cat, "name", path, f"categories[{k}].", str)
        if cid in cat_name:
            raise DatasetError(f"{path}: field 'categories[{k}].id' has value {cid}: duplicate category id")
        cat_name[cid] = cname
        cat_index[cid] = k
    umbrella = None  # a category that only names the others' supercategory (labelling-tool exports)
    if class_names is None:
        category_ids = sorted(cat_name)
        class_names = [cat_name[c] for c in category_ids]
        umbrella = _umbrella_category(cats, cat_name)
    else:
        class_names = list(class_names)
        by_name = {v: k for k, v in cat_name.items()}
        missing = [n for n in class_names if n not in by_name]
        if missing:
            raise DatasetError(f"{path}: field 'categories' lacks class names {missing} (has {sorted(by_name)})")
        category_ids = [by_name[n] for n in class_names]
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}

    ids, file_names, widths, heights = _image_columns(images, path)
    del data, images
    if isinstance(anns, _BadAnnotations):
        _first_bad_annotation(anns.anns, path, set(ids), label_of, cat_name, on_bad_box)
        raise AssertionError(f"{path}: annotations failed a column check that no entry fails")  # pragma: no cover
    cols = anns.finish()
    report = SkipReport()
    if umbrella is not None and len(category_ids) > 1 and not np.any(cols["category_id"] == umbrella):
        # Roboflow-style exports list the dataset's name as category 0, the supercategory of every class, with
        # no box: a class the model would have to learn from nothing.
        k = category_ids.index(umbrella)
        report.add("supercategory_dropped", f"{path}: field 'categories[{cat_index[umbrella]}]' ({cat_name[umbrella]!r}, "
                                            f"id {umbrella}) is only the supercategory of the others and has no "
                                            "annotation; not a class")
        category_ids, class_names = category_ids[:k] + category_ids[k + 1:], class_names[:k] + class_names[k + 1:]
    report_class_names(class_names, report, lambda i: f"{path}: field 'categories[{cat_index[category_ids[i]]}].name'")

    # Which image and which label each annotation has; the first bad one (in file order) stops the read.
    image_ids = np.array(ids, np.int64)
    by_id = np.argsort(image_ids, kind="stable")
    pos = np.minimum(np.searchsorted(image_ids[by_id], cols["image_id"]), max(len(ids) - 1, 0))
    image_index = by_id[pos] if len(ids) else np.zeros(len(cols["image_id"]), np.int64)
    no_image = (image_ids[image_index] != cols["image_id"]) if len(ids) else np.ones(len(image_index), bool)
    known_cats = np.array(category_ids, np.int64)
    by_cat = np.argsort(known_cats)
    cpos = np.minimum(np.searchsorted(known_cats[by_cat], cols["category_id"]), max(len(known_cats) - 1, 0))
    unknown = (known_cats[by_cat][cpos] != cols["category_id"]) if len(known_cats) else np.ones(len(cpos), bool)
    labels_all = np.where(unknown, 0, by_cat[cpos] + 1) if len(known_cats) else np.zeros(len(cpos), np.int64)
    stop = no_image | (unknown if on_bad_box == "error" else False)
    if stop.any():
        k = int(np.flatnonzero(stop)[0])
        if no_image[k]:
            raise DatasetError(f"{path}: field 'annotations[{k}].image_id' has value {int(cols['image_id'][k])}: "
                               f"no such image")
    for k in np.flatnonzero(unknown).tolist():
        cid = int(cols["category_id"][k])
        bad_input(report, on_bad_box, "unknown_class", _unknown_category(path, k, cid, cat_name), cat_name.get(cid))
    for k, aid, first in _duplicates(cols["id"], cols["id_ok"]):
        report.add("duplicate_annotation_id",
                   f"{path}: field 'annotations[{k}].id' has value {aid}: duplicate of annotations[{first}].id")

    # Boxes grouped by image in the file's image order, each image's in annotation order (as listed).
    known_k = np.flatnonzero(~unknown)
    kept_k = known_k[np.argsort(image_index[known_k], kind="stable")]
    img_of_box = image_index[kept_k]
    xywh = cols["bbox"][kept_k]
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    bbox, bbox_int, category = cols["bbox"], cols["bbox_int"], cols["category_id"]

    def as_written(i: int) -> str:
        k = kept_k[i]
        return "[" + ", ".join(str(int(v)) if is_int else repr(float(v)) for v, is_int in zip(bbox[k], bbox_int[k])) + "]"

    boxes, keep, clipped = validate_boxes(
        boxes, widths[img_of_box], heights[img_of_box], file=path,
        fields=lambda i: f"annotations[{kept_k[i]}].bbox", raw_values=as_written,
        class_names=lambda i: cat_name[int(category[kept_k[i]])], on_bad_box=on_bad_box, report=report)
    final_k, boxes, clipped, img_of_box = kept_k[keep], boxes[keep], clipped[keep], img_of_box[keep]
    area = cols["area"][final_k]
    area = np.where((area < 0) | clipped, box_area(boxes), area).astype(np.float32)

    if not len(ids):
        require_nonempty([], str(path), split)
    encoded = [n.encode("utf-8", "surrogatepass") for n in file_names]
    table = RecordTable(
        image_ids=image_ids, widths=widths, heights=heights,
        names=np.frombuffer(b"".join(encoded), np.uint8).copy(),
        name_offsets=np.concatenate([[0], np.cumsum([len(e) for e in encoded], dtype=np.int64)]),
        box_offsets=np.concatenate([[0], np.cumsum(np.bincount(img_of_box, minlength=len(ids)), dtype=np.int64)]),
        boxes=boxes, labels=labels_all[final_k], iscrowd=cols["iscrowd"][final_k],
        difficult=cols["ignore"][final_k], area=area)
    if image_root is None:
        image_root = _guess_image_root(path, file_names, split)
    ds = DetectionDataset(table, class_names, category_ids, root=image_root, name=name or f"{path.stem}")
    return finish_dataset(ds, report, split)


def _duplicates(ids: np.ndarray, valid: np.ndarray) -> list[tuple[int, int, int]]:
    """:func:`duplicate_annotation_ids` on arrays: ``(index, id, first_index)`` in file order."""
    k = np.flatnonzero(valid)
    order = k[np.argsort(ids[k], kind="stable")]
    sorted_ids = ids[order]
    repeat = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1]) + 1
    if not len(repeat):
        return []
    group_start = np.flatnonzero(np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]]))
    first_of = order[group_start[np.searchsorted(group_start, repeat, side="right") - 1]]
    return sorted((int(order[r]), int(sorted_ids[r]), int(f)) for r, f in zip(repeat, first_of))


def _unknown_category(path: Path, k: int, cid: int, cat_name: dict[int, str]) -> str:
    known = "unknown category" if cid not in cat_name else f"category {cat_name[cid]!r} not in class_names"
    return f"{path}: field 'annotations[{k}].category_id' has value {cid}: {known}"


def _types_within(values: Any, allowed: tuple[type, ...]) -> bool:
    return set(map(type, values)) <= set(allowed)


def _image_columns(images: list, path: Path) -> tuple[list[int], list[str], np.ndarray, np.ndarray]:
    """The images' ids, file names, widths and heights, checked; an error names the first bad image."""
    try:
        ids = [im["id"] for im in images]
        names = [im["file_name"] for im in images]
        ws = [im["width"] for im in images]
        hs = [im["height"] for im in images]
        ok = (_types_within(ids, (int,)) and _types_within(names, (str,)) and _types_within(ws, _NUMBER)
              and _types_within(hs, _NUMBER) and all(map(str.strip, names)))
        if ok:
            w, h = np.array(ws, np.float64), np.array(hs, np.float64)
            ok = bool(np.all((w > 0) & (w <= _MAX_SIDE) & (h > 0) & (h <= _MAX_SIDE)))  # NaN/inf fail too
            ok = ok and len(set(ids)) == len(ids) and (not ids or -_INT64_MAX <= min(ids) and max(ids) <= _INT64_MAX)
    except (KeyError, TypeError, OverflowError):
        ok = False
    if not ok:
        _first_bad_image(images, path)
        raise AssertionError(f"{path}: images failed a column check that no entry fails")  # pragma: no cover
    return ids, names, w.astype(np.int64), h.astype(np.int64)


def _first_bad_image(images: list, path: Path) -> None:
    seen: set[int] = set()
    for k, img in enumerate(images):
        where = f"images[{k}]."
        iid = _field(img, "id", path, where, int)
        if not _field(img, "file_name", path, where, str).strip():
            raise DatasetError(f"{path}: field 'images[{k}].file_name' of image id {iid} has value "
                               f"{img['file_name']!r}: an empty file name names no image; give the image's file "
                               "name (relative to the images folder)")
        _size(img, "width", path, where)
        _size(img, "height", path, where)
        if not -_INT64_MAX <= iid <= _INT64_MAX:
            raise DatasetError(f"{path}: field 'images[{k}].id' has value {iid}: outside the 64-bit integer range")
        if iid in seen:
            raise DatasetError(f"{path}: field 'images[{k}].id' has value {iid}: duplicate image id")
        seen.add(iid)


def _umbrella_category(cats: list, cat_name: dict[int, str]) -> int | None:
    """The id of a category whose name is the ``supercategory`` of every other category, or None."""
    for cid, name in cat_name.items():
        others = [c for c in cats if c.get("id") != cid]
        if others and all(isinstance(c, dict) and c.get("supercategory") == name for c in others):
            return cid
    return None


def _first_bad_annotation(anns: list, path: Path, image_ids: set[int], label_of: dict[int, int],
                          cat_name: dict[int, str], on_bad_box: str) -> None:
    """The checks of :func:`_columns` entry by entry, in file order: raises on the first failure (an
    unknown category under ``on_bad_box="error"`` counts, as it would have stopped the read there)."""
    scratch = SkipReport()
    for k, ann in enumerate(anns):
        where = f"annotations[{k}]."
        iid = _field(ann, "image_id", path, where, int)
        if iid not in image_ids:
            raise DatasetError(f"{path}: field 'annotations[{k}].image_id' has value {iid}: no such image")
        cid = _field(ann, "category_id", path, where, int)
        if not -_INT64_MAX <= cid <= _INT64_MAX:
            raise DatasetError(f"{path}: field 'annotations[{k}].category_id' has value {cid}: outside the 64-bit "
                               f"integer range")
        bbox = _field(ann, "bbox", path, where, list)
        if len(bbox) != 4 or not all(isinstance(v, _NUMBER) and not isinstance(v, bool) and abs(v) < 1e308
                                     or isinstance(v, float) for v in bbox):
            raise DatasetError(f"{path}: field 'annotations[{k}].bbox' has value {bbox!r}: expected [x, y, w, h]")
        if cid not in label_of:
            bad_input(scratch, on_bad_box, "unknown_class", _unknown_category(path, k, cid, cat_name))
        _flag(ann, "iscrowd", path, where)
        _flag(ann, "ignore", path, where)
