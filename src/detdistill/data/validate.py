"""Bad-input rules shared by every reader: one place decides what is an error, a clip, a drop or a skip.

Every reader hands its boxes to :func:`validate_boxes` and its class look-ups to :func:`bad_input`, so the
same defect gets the same outcome in COCO, VOC, YOLO and KITTI. Messages always name the file, the field
and the value as written in the file.

======================================= ======================== ========================================
defect                                  ``on_bad_box="error"``   ``on_bad_box="skip"``
======================================= ======================== ========================================
coordinate NaN or inf                   :class:`DatasetError`    box skipped, counted ``non_finite``
x2 < x1 or y2 < y1                      :class:`DatasetError`    box skipped, counted ``inverted``
zero width or height (bccd has two)     :class:`DatasetError`    box skipped, counted ``zero_area``
unknown class name                      :class:`DatasetError`    box skipped, counted ``unknown_class``
label index out of range (YOLO)         :class:`DatasetError`    box skipped, counted ``label_out_of_range``
box partly outside the image            clipped, counted ``clipped`` (both modes: the object is real;
                                        overshoots up to CLIP_TOLERANCE px are clipped uncounted)
box wholly outside the image            dropped, counted ``outside`` (both modes: nothing to learn)
size missing from a VOC file            read from the image header, counted ``size_from_image``
image with no boxes                     kept as a negative (not a defect)
malformed JSON/XML/txt line             :class:`DatasetError` (the file cannot be trusted at all)
empty dataset                           :class:`DatasetError`
missing, truncated or corrupt image     :class:`DatasetError` when the image is decoded
annotated size != decoded size          :class:`DatasetError` when the image is decoded
class name repeated / differing in case counted ``duplicate_class_name`` / ``class_name_case`` (both modes;
                                        training refuses them: :func:`check_training_classes`)
YOLO ``nc`` != number of names          counted ``nc_mismatch`` (both modes; the names are used)
a file path that is a folder, FIFO, ... :class:`DatasetError` naming the kind (``base.optional_file``)
======================================= ======================== ========================================

The flag governs the cases where a user may reasonably want to go on (a few bad boxes in thousands);
structural defects always stop. Skips are never silent: each reader attaches a :class:`SkipReport` as
``dataset.skips`` and logs its summary; ``detdistill data stats`` prints it. EXIF orientation is applied
when decoding and when reading sizes from headers (a convention, not an error).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..utils import read_utf8_text
from .base import DatasetError, DetectionDataset, exif_orientation, open_image, require_file

log = logging.getLogger("detdistill.data")

ON_BAD_BOX_CHOICES = ("error", "skip")
CLIP_TOLERANCE = 0.01  # pixels
_MAX_EXAMPLES = 5
# Reasons whose box does not reach the dataset (the others keep the box, perhaps modified).
REMOVING_REASONS = frozenset({"non_finite", "inverted", "zero_area", "unknown_class", "label_out_of_range",
                              "outside"})


def check_on_bad_box(value: str) -> str:
    if value not in ON_BAD_BOX_CHOICES:
        raise DatasetError(f"field 'on_bad_box' has value {value!r}; choose one of {list(ON_BAD_BOX_CHOICES)}")
    return value


@dataclass
class SkipReport:
    """What a reader clipped, dropped or skipped: counts per reason, a few example messages each, and the
    classes of the removed boxes (so statistics can still report what the files annotate)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    removed_by_class: Counter = field(default_factory=Counter)

    def add(self, reason: str, message: str, class_name: str | None = None) -> None:
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(message)
        if reason in REMOVING_REASONS:
            self.removed_by_class[class_name if class_name is not None else "?"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def removed(self) -> int:
        return sum(n for r, n in self.counts.items() if r in REMOVING_REASONS)

    def __bool__(self) -> bool:
        return self.total > 0

    def lines(self) -> list[str]:
        """One line per reason with its count and first example, for printing at the end of a run."""
        return [f"{reason}: {n} (e.g. {self.examples[reason][0]})" for reason, n in sorted(self.counts.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()},
                "removed_by_class": dict(self.removed_by_class)}

    def log_summary(self, name: str) -> None:
        if self:
            log.warning("%s: %d box problems handled: %s", name, self.total,
                        ", ".join(f"{r} {n}" for r, n in sorted(self.counts.items())))


def bad_input(report: SkipReport, on_bad_box: str, reason: str, message: str, class_name: str | None = None) -> None:
    """Raise :class:`DatasetError` under ``on_bad_box="error"``, else count the skip."""
    if on_bad_box == "error":
        raise DatasetError(f"{message} (use on_bad_box='skip' / --on-bad-box skip to skip and count such boxes)")
    report.add(reason, message, class_name)


def _fmt(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and float(v).is_integer() else repr(float(v))


def validate_boxes(
    boxes: np.ndarray,
    width: int | np.ndarray,
    height: int | np.ndarray,
    *,
    file: str | Path,
    fields: Sequence[str] | Callable[[int], str],
    raw_values: Sequence[str] | Callable[[int], str] | None = None,
    class_names: Sequence[str | None] | Callable[[int], str | None] | None = None,
    on_bad_box: str,
    report: SkipReport,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the rules of the module table to ``boxes`` (N×4 ``x1, y1, x2, y2`` pixels).

    ``fields[i]`` names where box ``i`` sits in the file (e.g. ``object[2].bndbox``) and ``raw_values[i]``
    is its value as written there (defaults to the four numbers). ``width``/``height`` are the image's, or
    one per box when the boxes of many images are checked at once. ``fields``, ``raw_values`` and
    ``class_names`` may be functions of the row, so a COCO-size file builds messages only for flagged
    boxes. Returns ``(boxes, keep, clipped)``: clipped boxes and two boolean masks over the input rows.

    Example:
        >>> r = SkipReport()
        >>> b, keep, clipped = validate_boxes(np.array([[-5, 0, 10, 10], [20, 20, 30, 30]], np.float32), 16, 16,
        ...     file="a.xml", fields=["object[0]", "object[1]"], on_bad_box="error", report=r)
        >>> b[0].tolist(), keep.tolist(), dict(r.counts)
        ([0.0, 0.0, 10.0, 10.0], [True, False], {'clipped': 1, 'outside': 1})
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    w = np.broadcast_to(np.asarray(width, np.float64), (n,))
    h = np.broadcast_to(np.asarray(height, np.float64), (n,))
    x1, y1, x2, y2 = boxes.T
    # The same rules in the same order as the module table, as masks: each row gets its first defect only.
    with np.errstate(invalid="ignore"):
        non_finite = ~np.isfinite(boxes).all(axis=1)
        inverted = ~non_finite & ((x2 < x1) | (y2 < y1))
        zero_area = ~non_finite & ~inverted & ((x2 == x1) | (y2 == y1))
        ok = ~(non_finite | inverted | zero_area)
        outside = ok & ((x1 >= w) | (y1 >= h) | (x2 <= 0) | (y2 <= 0))
        ok &= ~outside
        partial = ok & ((x1 < 0) | (y1 < 0) | (x2 > w) | (y2 > h))
        out = boxes.copy()
        out[partial] = np.stack([np.maximum(x1, 0.0), np.maximum(y1, 0.0), np.minimum(x2, w), np.minimum(y2, h)],
                                axis=1)[partial]
        overshoot = np.max(np.stack([-x1, -y1, x2 - w, y2 - h], axis=1), axis=1)
    # Normalised formats (YOLO) round to a few decimals: a box that overshoots the border by a hundredth of
    # a pixel is rounding noise, not an annotation defect, so it is clipped uncounted.
    clipped = partial & (overshoot > CLIP_TOLERANCE)
    keep = ok.copy()

    def pick(source: Any, i: int) -> Any:
        return source(i) if callable(source) else source[i]

    for i in np.flatnonzero(~ok | clipped).tolist():
        value = pick(raw_values, i) if raw_values is not None else "[" + ", ".join(_fmt(v) for v in boxes[i]) + "]"
        where = f"{file}: field '{pick(fields, i)}' has value {value}"
        cls = pick(class_names, i) if class_names is not None else None
        size = f"{_fmt(w[i])}x{_fmt(h[i])}"
        if non_finite[i]:
            bad_input(report, on_bad_box, "non_finite", f"{where}: coordinate is NaN or infinite", cls)
        elif inverted[i]:
            bad_input(report, on_bad_box, "inverted", f"{where}: x2 < x1 or y2 < y1", cls)
        elif zero_area[i]:
            bad_input(report, on_bad_box, "zero_area", f"{where}: zero-area box", cls)
        elif outside[i]:
            report.add("outside", f"{where}: box wholly outside the {size} image, dropped", cls)
        else:
            report.add("clipped", f"{where}: box partly outside the {size} image, clipped", cls)
    return out.astype(np.float32), keep, clipped


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, after EXIF orientation, without decoding pixels."""
    path = require_file(path, "image file")
    try:
        with open_image(path) as img:
            width, height = img.size
            orientation = exif_orientation(img, path)
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image header ({exc})") from exc
    # Orientations 5-8 rotate by 90 degrees: the decoded image (exif_transpose) swaps width and height.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def check_images(dataset: DetectionDataset) -> list[str]:
    """Decode every image; return one message per problem (missing, corrupt, size disagreeing with the
    annotation). The empty list means every image decodes to its annotated size."""
    problems = []
    for idx in range(len(dataset)):
        try:
            dataset.load_image(idx)
        except DatasetError as exc:
            problems.append(str(exc))
    return problems


def read_text_file(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file of a dataset; errors are :class:`DatasetError` naming the file."""
    return read_utf8_text(path, what, DatasetError)


def relative_file_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root``; a path outside it stays absolute (``DetectionDataset`` joins only relative names)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def finish_dataset(ds: Any, report: "SkipReport", split: str | None) -> Any:
    """Attach a reader's skip report and split to its dataset and log the skips (the last step of every reader)."""
    ds.skips = report
    ds.split = split
    report.log_summary(ds.name)
    return ds


def require_nonempty(records: Sequence[Any], where: str, split: str | None, report: SkipReport | None = None) -> None:
    """An empty dataset is an error; the message counts the files left out as unsupported (``report``)."""
    if not records:
        split_text = f" for split {split!r}" if split is not None else ""
        skipped = ""
        if report is not None and report.counts.get("unsupported_image"):
            kinds = Counter(Path(ex.split(": ", 1)[0]).suffix.lower() or "(no suffix)"
                            for ex in report.examples.get("unsupported_image", []))
            n = report.counts["unsupported_image"]
            skipped = (f"; {n} unsupported {'/'.join(sorted(kinds))} file{'s' if n != 1 else ''} skipped "
                       f"({report.examples['unsupported_image'][0]}): convert them to a supported type")
        raise DatasetError(f"{where}: empty dataset: no images found{split_text}{skipped}")


#: Problems in a dataset's class-name set (reported by every reader; training refuses both).
CLASS_NAME_REASONS = ("duplicate_class_name", "class_name_case")


def report_class_names(names: Sequence[str], report: SkipReport, where: Callable[[int], str]) -> None:
    """Count names that repeat (``duplicate_class_name``) or differ only in case (``class_name_case``) among
    ``names``; ``where(i)`` names the file and field that gives name ``i``. Both make one class two outputs."""
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in exact:
            report.add("duplicate_class_name", f"{where(i)} has value {name!r}: the same class name as "
                                               f"{where(exact[name])}")
        elif name.casefold() in folded:
            j = folded[name.casefold()]
            report.add("class_name_case", f"{where(i)} has value {name!r}: differs only in case from {names[j]!r} "
                                          f"({where(j)}); they are read as two classes")
        exact.setdefault(name, i)
        folded.setdefault(name.casefold(), i)


def check_training_classes(dataset: Any) -> None:
    """Training refuses a class-name set with repeats or case-only differences (:func:`report_class_names`):
    the model would learn one class as two outputs and split its boxes between them."""
    scratch = SkipReport()
    names = list(dataset.class_names)
    report_class_names(names, scratch, lambda i: f"class_names[{i}]")
    if not scratch:
        return
    skips = getattr(dataset, "skips", None)
    for reason in CLASS_NAME_REASONS:
        if scratch.counts.get(reason):
            examples = (skips.examples.get(reason) if skips is not None else None) or scratch.examples[reason]
            what = "repeat" if reason == "duplicate_class_name" else "differ only in case"
            raise DatasetError(f"{getattr(dataset, 'name', 'dataset')}: class names {what}, so training would learn "
                               f"one class as two outputs ({examples[0]}); rename or merge them in the annotation "
                               "files, then train")
