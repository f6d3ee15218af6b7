"""The dataset interface every reader yields.

Convention (torchvision detection): ``dataset[i]`` returns ``(image, target)`` where ``image`` is a float
tensor ``C×H×W`` in RGB, values in [0, 1], and ``target`` is a dict of tensors:

========== ============ ===========================================================================
key        dtype/shape  meaning
========== ============ ===========================================================================
boxes      float32 N×4  absolute ``x1, y1, x2, y2`` pixels of the decoded image
labels     int64 N      contiguous class labels ``1..K``; ``0`` is reserved for background
image_id   int64 scalar the record's id (the source's id where it has one, e.g. COCO)
iscrowd    int64 N      COCO crowd flag (ignored by COCO AP; training drops them: :func:`without_crowd`)
difficult  bool N       Pascal VOC ``difficult`` flag (ignored by VOC mAP)
area       float32 N    box area in pixels (COCO uses the file's ``area`` when present)
orig_size  int64 2      ``(height, width)`` of the decoded image before any transform
========== ============ ===========================================================================

Class names (without background) and the map from contiguous labels back to the source's category ids
travel with the dataset (``class_names``, ``category_ids``), so predictions can be written in the source's
ids. Resizing and normalisation belong to the model (``GeneralizedRCNNTransform``); data transforms only
augment.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageFile
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from ..errors import DetDistillError

Target = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]

# The image files every reader looks for (one list, so a folder means the same thing to each of them).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(DetDistillError):
    """Bad input: the message names the file, the field and the value."""


@dataclass
class ImageRecord:
    """One image and its annotations, as read from any source format (no pixels decoded).

    ``labels`` are contiguous (1..K). ``area`` is optional: COCO files carry it (segmentation area), other
    formats use the box area.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    iscrowd: np.ndarray | None = None
    difficult: np.ndarray | None = None
    area: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n:
            raise DatasetError(
                f"{self.file_name}: field 'labels' has {len(self.labels)} entries for {n} boxes"
            )
        self.iscrowd = np.zeros(n, np.int64) if self.iscrowd is None else np.asarray(self.iscrowd, np.int64)
        self.difficult = np.zeros(n, bool) if self.difficult is None else np.asarray(self.difficult, bool)
        if self.area is None:
            self.area = box_area(self.boxes)
        else:
            self.area = np.asarray(self.area, np.float32)

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    def target(self) -> Target:
        return {
            "boxes": torch.from_numpy(self.boxes.copy()),
            "labels": torch.from_numpy(self.labels.copy()),
            "image_id": torch.tensor(self.image_id, dtype=torch.int64),
            "iscrowd": torch.from_numpy(self.iscrowd.copy()),
            "difficult": torch.from_numpy(self.difficult.copy()),
            "area": torch.from_numpy(self.area.copy()),
            "orig_size": torch.tensor([self.height, self.width], dtype=torch.int64),
        }


PER_BOX_KEYS = ("boxes", "labels", "iscrowd", "difficult", "area")


def without_crowd(target: Target) -> Target:
    """``target`` without its crowd boxes (``iscrowd`` set): what training sees.

    A crowd box covers many objects of a class with one rectangle; learning it as one object teaches the
    wrong box. torchvision's references drop them from training targets (``ConvertCocoPolysToMask``) and
    let COCO AP ignore them at evaluation, which reads them from the records (``to_coco_dict`` keeps them).
    """
    crowd = target["iscrowd"].bool()
    if not bool(crowd.any()):
        return target
    keep = ~crowd
    return {k: (v[keep] if k in PER_BOX_KEYS else v) for k, v in target.items()}


def box_area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32)


#: Images with more pixels are refused before decoding (a decompression-bomb guard): Pillow's own limit.
DEFAULT_MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
_max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Raise (or lower) the pixel limit of :func:`load_rgb_image` and the readers' header checks.

    ``None`` restores the default. The CLI's ``--max-image-pixels`` calls this.
    """
    global _max_image_pixels
    if limit is not None and limit <= 0:
        raise DatasetError(f"--max-image-pixels: value {limit} must be positive")
    _max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS if limit is None else int(limit)


def open_image(path: Path) -> Image.Image:
    """``Image.open`` with the pixel limit as a :class:`DatasetError` naming the file, size and flag."""
    import warnings

    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own guard (a warning, an error at twice its limit) is replaced by the one below, which
        # names the size and the flag; opening reads only the header.
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # a JPEG reads its EXIF here (for the dpi): corrupt EXIF warns here too
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    _log_image_warnings(caught, path)
    width, height = img.size
    if width * height > _max_image_pixels:
        img.close()
        raise DatasetError(f"{path}: image is {width}x{height} = {width * height:,} pixels, above the limit of "
                           f"{_max_image_pixels:,} (a decompression-bomb guard); raise it with "
                           f"--max-image-pixels {width * height}")
    return img


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """RGB by the pixel format's own range: Pillow's ``convert`` clips 16-bit values at 255 (a white image)."""
    mode = img.mode
    if mode.startswith("I;16") or (mode == "I" and img.format == "PNG"):  # PNG's only 32-bit mode is 16-bit grey
        grey = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.round(grey / 65535.0 * 255.0).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F") or mode.startswith(("I;32", "F;")):
        kind = "32-bit integer" if mode.startswith("I") else "32-bit float"
        raise DatasetError(f"{path}: {kind} pixels (mode {mode!r}) have no fixed range to scale to [0, 1]; convert "
                           "the image to 8- or 16-bit first")
    return img.convert("RGB")


def path_kind(path: str | Path) -> str:
    """What is at ``path``: ``"file"`` (a regular file, or a link to one), ``"missing"``, ``"folder"``,
    ``"broken link"``, or another kind (``"FIFO"``, ``"socket"``, ``"device"``).

    >>> path_kind("/"), path_kind("/no/such/file")
    ('folder', 'missing')
    """
    import stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "broken link" if p.is_symlink() else "missing"
    except (NotADirectoryError, OSError):  # a parent is a file, or the name cannot be looked up
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def optional_file(path: str | Path, what: str) -> bool:
    """True when ``path`` is a regular file, False when nothing is there; anything else there (a folder, a
    broken link, a FIFO) is a :class:`DatasetError` naming the path and its kind, never read as absent."""
    kind = path_kind(path)
    if kind in ("file", "missing"):
        return kind == "file"
    raise DatasetError(f"{path}: {what} is a {kind}, not a regular file; replace it with the file or remove it")


def require_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a regular file; else a :class:`DatasetError` saying it is missing or of which kind."""
    if not optional_file(path, what):
        raise DatasetError(f"{path}: {what} not found")
    return Path(path)


_truncated_lock = threading.Lock()
_exif_warned: set[str] = set()
log = logging.getLogger("detdistill.data")


@contextlib.contextmanager
def truncated_images_allowed(allowed: bool = True) -> Iterator[None]:
    """Let Pillow decode a truncated file as far as it goes, for the block only.

    Pillow reads one module-wide switch (``ImageFile.LOAD_TRUNCATED_IMAGES``); it is set here under a lock and
    restored at once, so only the image decoded inside the block (one the pre-flight check chose to repair,
    :mod:`detdistill.data.image_check`) is read that way, never every image of the process.
    """
    if not allowed:
        yield
        return
    with _truncated_lock:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _log_image_warnings(caught: list, path: str | Path) -> None:
    """Pillow's warnings about a file's metadata (corrupt EXIF: a ``UserWarning`` with a site-packages path,
    on every decode, naming no image) become one logged line naming the image, once per process."""
    for w in caught:
        if issubclass(w.category, UserWarning) and str(path) not in _exif_warned:
            _exif_warned.add(str(path))
            log.warning("%s: corrupt EXIF data (%s); its metadata is ignored", path, w.message)


def exif_orientation(img: Image.Image, path: str | Path) -> int:
    """The EXIF orientation tag (1 when absent or unreadable).

    Corrupt EXIF data makes Pillow warn (a ``UserWarning`` with a site-packages path, on every decode, naming
    no image); it becomes one logged line naming the image, once per process, and the orientation is ignored.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            orientation = img.getexif().get(0x0112, 1)
        except (OSError, SyntaxError, ValueError, struct.error):
            orientation = 1  # unreadable metadata (a truncated file): decoding, next, says what is wrong
    _log_image_warnings(caught, path)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def decode_image(path: str | Path, *, allow_truncated: bool = False, draft: bool = False) -> Image.Image:
    """Decode ``path`` to RGB after its EXIF orientation; errors are :class:`DatasetError` naming the file.

    ``allow_truncated``: a truncated file decodes as far as its data goes (:func:`truncated_images_allowed`).
    ``draft``: a JPEG is decoded at 1/8 scale (libjpeg still reads every entropy-coded block, so truncation
    and bad data are found) -- what the pre-flight check uses; the image returned is then smaller.
    """
    return decode_image_and_size(path, allow_truncated=allow_truncated, draft=draft)[0]


def decode_image_and_size(path: str | Path, *, allow_truncated: bool = False,
                          draft: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`decode_image` and the full-resolution ``(width, height)`` after EXIF orientation, from one open
    of the file (a ``draft`` image is smaller than the size returned)."""
    path = require_file(path, "image file")
    try:
        with open_image(path) as img:
            orientation = exif_orientation(img, path)
            fmt = img.format
            width, height = img.size
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if draft and fmt == "JPEG":
                img.draft("RGB", (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            with truncated_images_allowed(allow_truncated):
                img.load()
            out = img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img
            out.format = fmt
            return _to_rgb(out, path), (width, height)
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc})") from exc


def load_rgb_image(path: str | Path, allow_truncated: bool = False) -> Image.Image:
    """Decode an image file to RGB, applying its EXIF orientation (a convention, not an error).

    Grayscale, RGBA and palette images are converted to RGB; 16-bit grayscale is scaled by its range
    (0..65535), and 32-bit integer or float images, which have no fixed range, are refused. Missing,
    truncated (unless ``allow_truncated``), corrupt or too large (see :func:`set_max_image_pixels`) files
    raise a :class:`DatasetError` naming the path, never a PIL traceback.
    """
    return decode_image(path, allow_truncated=allow_truncated)


class RecordTable(Sequence[ImageRecord]):
    """Every image's annotations in a few flat arrays: the compact form every :class:`DetectionDataset` holds.

    Image ``i`` owns boxes ``box_offsets[i]:box_offsets[i + 1]`` of ``boxes``/``labels``/``iscrowd``/
    ``difficult``/``area``; file names are one UTF-8 blob cut by ``name_offsets``. A COCO-size set
    (118k images, 860k boxes) is ~40 MB here instead of ~1.5 GB of per-image Python objects, and forked
    DataLoader workers read these arrays without touching their pages: a list of per-image objects is
    written to by every refcount update, so copy-on-write copies it into each worker (PyTorch #13246).
    Indexing yields an :class:`ImageRecord` made on access; a slice or index array yields a table.
    """

    __slots__ = ("image_ids", "widths", "heights", "names", "name_offsets", "box_offsets", "boxes", "labels",
                 "iscrowd", "difficult", "area")

    def __init__(self, *, image_ids: np.ndarray, widths: np.ndarray, heights: np.ndarray, names: np.ndarray,
                 name_offsets: np.ndarray, box_offsets: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 iscrowd: np.ndarray, difficult: np.ndarray, area: np.ndarray) -> None:
        self.image_ids = np.asarray(image_ids, np.int64)
        self.widths = np.asarray(widths, np.int64)
        self.heights = np.asarray(heights, np.int64)
        self.names = np.asarray(names, np.uint8)
        self.name_offsets = np.asarray(name_offsets, np.int64)
        self.box_offsets = np.asarray(box_offsets, np.int64)
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(labels, np.int64)
        self.iscrowd = np.asarray(iscrowd, np.uint8)
        self.difficult = np.asarray(difficult, bool)
        self.area = np.asarray(area, np.float32)
        n, m = len(self.image_ids), len(self.boxes)
        if not (len(self.widths) == len(self.heights) == n and len(self.name_offsets) == len(self.box_offsets)
                == n + 1 and len(self.labels) == len(self.iscrowd) == len(self.difficult) == len(self.area) == m
                and self.box_offsets[-1] == m and self.name_offsets[-1] == len(self.names)):
            raise ValueError(f"RecordTable: inconsistent array lengths ({n} images, {m} boxes)")

    @classmethod
    def from_records(cls, records: Sequence[ImageRecord]) -> "RecordTable":
        if isinstance(records, RecordTable):
            return records
        records = list(records)
        names = [r.file_name.encode("utf-8", "surrogateescape") for r in records]
        counts = [r.num_boxes for r in records]

        def cat(key: str, dtype: Any, shape: tuple = ()) -> np.ndarray:
            parts = [np.asarray(getattr(r, key), dtype) for r in records]
            return np.concatenate(parts).reshape(-1, *shape) if parts else np.zeros((0, *shape), dtype)

        return cls(
            image_ids=np.array([r.image_id for r in records], np.int64),
            widths=np.array([r.width for r in records], np.int64),
            heights=np.array([r.height for r in records], np.int64),
            names=np.frombuffer(b"".join(names), np.uint8).copy(),
            name_offsets=_offsets(np.array([len(b) for b in names], np.int64)),
            box_offsets=_offsets(np.array(counts, np.int64)),
            boxes=cat("boxes", np.float32, (4,)), labels=cat("labels", np.int64), iscrowd=cat("iscrowd", np.uint8),
            difficult=cat("difficult", bool), area=cat("area", np.float32),
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> np.ndarray:
        """Boxes per image (int64, one entry per image)."""
        return np.diff(self.box_offsets)

    @property
    def box_image_index(self) -> np.ndarray:
        """For every box, the index of its image."""
        return np.repeat(np.arange(len(self)), self.num_boxes)

    def file_name(self, idx: int) -> str:
        a, b = self.name_offsets[idx], self.name_offsets[idx + 1]
        return self.names[a:b].tobytes().decode("utf-8", "surrogateescape")

    def box_slice(self, idx: int) -> slice:
        return slice(int(self.box_offsets[idx]), int(self.box_offsets[idx + 1]))

    def _index(self, idx: int) -> int:
        n = len(self)
        idx = int(idx)
        if not -n <= idx < n:
            raise IndexError(f"record index {idx} out of range for {n} images")
        return idx + n if idx < 0 else idx

    def __getitem__(self, idx: int | slice | list[int] | np.ndarray) -> "ImageRecord | RecordTable":  # type: ignore[override]
        if isinstance(idx, slice) or (isinstance(idx, (list, np.ndarray)) and not np.isscalar(idx)):
            return self.take(np.arange(len(self))[idx])
        i = self._index(idx)
        s = self.box_slice(i)
        return ImageRecord(image_id=int(self.image_ids[i]), file_name=self.file_name(i), width=int(self.widths[i]),
                           height=int(self.heights[i]), boxes=self.boxes[s].copy(), labels=self.labels[s].copy(),
                           iscrowd=self.iscrowd[s].astype(np.int64), difficult=self.difficult[s].copy(),
                           area=self.area[s].copy())

    def target(self, idx: int) -> "Target":
        """``ImageRecord.target()`` of image ``idx``, straight from the arrays."""
        i = self._index(idx)
        s = self.box_slice(i)
        return {
            "boxes": torch.from_numpy(self.boxes[s].copy()),
            "labels": torch.from_numpy(self.labels[s].copy()),
            "image_id": torch.tensor(int(self.image_ids[i]), dtype=torch.int64),
            "iscrowd": torch.from_numpy(self.iscrowd[s].astype(np.int64)),
            "difficult": torch.from_numpy(self.difficult[s].copy()),
            "area": torch.from_numpy(self.area[s].copy()),
            "orig_size": torch.tensor([int(self.heights[i]), int(self.widths[i])], dtype=torch.int64),
        }

    def take(self, indices: Sequence[int] | np.ndarray) -> "RecordTable":
        """The images at ``indices`` (in that order) as a new table."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        counts = self.num_boxes[idx]
        box_idx = _ranges(self.box_offsets[idx], counts)
        name_lens = np.diff(self.name_offsets)[idx]
        return RecordTable(
            image_ids=self.image_ids[idx], widths=self.widths[idx], heights=self.heights[idx],
            names=self.names[_ranges(self.name_offsets[idx], name_lens)], name_offsets=_offsets(name_lens),
            box_offsets=_offsets(counts), boxes=self.boxes[box_idx], labels=self.labels[box_idx],
            iscrowd=self.iscrowd[box_idx], difficult=self.difficult[box_idx], area=self.area[box_idx])

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: Sequence[ImageRecord]) -> list[ImageRecord]:
        return list(self) + list(other)

    def __radd__(self, other: Sequence[ImageRecord]) -> list[ImageRecord]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"RecordTable({len(self)} images, {len(self.boxes)} boxes)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a forked worker shares rather than copies)."""
        return sum(getattr(self, k).nbytes for k in self.__slots__)


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, without a Python loop."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(np.asarray(starts, np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


class DetectionDataset(Dataset):
    """Records plus class names: the common base of every reader.

    ``records`` may be given as a list of :class:`ImageRecord` or a :class:`RecordTable`; it is held (and
    returned) as a :class:`RecordTable`, so indexing it yields records made on access. Subclasses only build
    ``records``; decoding and target assembly live here. ``root`` is joined to each
    record's ``file_name`` unless that is absolute. ``transforms(image, target)`` augments (see
    :mod:`detdistill.data.transforms`).
    """

    #: Image paths the pre-flight check chose to decode as far as they go (truncated files, ``repair``).
    repaired_images: frozenset[str] = frozenset()
    #: Whether images are decoded from the files at ``image_path`` (False for generated ones): what
    #: :mod:`detdistill.data.image_check` checks.
    image_files: bool = True

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        root: str | Path | None = None,
        transforms: Transform | None = None,
        name: str = "dataset",
    ) -> None:
        self.records = records
        self.class_names = list(class_names)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
        if len(self.category_ids) != len(self.class_names):
            raise DatasetError(
                f"{name}: {len(self.category_ids)} category ids for {len(self.class_names)} class names"
            )
        self.root = Path(root) if root is not None else None
        self.transforms = transforms
        self.name = name

    @property
    def records(self) -> RecordTable:
        return self._records

    @records.setter
    def records(self, records: Sequence[ImageRecord]) -> None:
        self._records = RecordTable.from_records(records)

    @property
    def num_classes(self) -> int:
        """Model outputs, background included (torchvision's convention): ``len(class_names) + 1``."""
        return len(self.class_names) + 1

    def label_to_category_id(self, label: int) -> int:
        return self.category_ids[label - 1]

    def category_id_to_label(self) -> dict[int, int]:
        return {cid: i + 1 for i, cid in enumerate(self.category_ids)}

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, idx: int) -> Path:
        file_name = Path(self.records.file_name(idx))
        return file_name if self.root is None or file_name.is_absolute() else self.root / file_name

    def load_image(self, idx: int) -> torch.Tensor:
        """Decoded RGB image as a float tensor C×H×W in [0, 1]."""
        width, height = int(self.records.widths[idx]), int(self.records.heights[idx])
        path = self.image_path(idx)
        img = load_rgb_image(path, allow_truncated=str(path) in self.repaired_images)
        if img.size != (width, height):
            raise DatasetError(
                f"{path}: annotated size (width={width}, height={height}) disagrees with the "
                f"decoded image (width={img.size[0]}, height={img.size[1]})"
            )
        return F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True)

    def get_target(self, idx: int) -> Target:
        return self.records.target(idx)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load_image(idx), self.get_target(idx)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.records.labels - 1, minlength=len(self.class_names))
        return {
            "name": self.name,
            "images": len(self.records),
            "boxes": int(counts.sum()),
            "classes": {name: int(c) for name, c in zip(self.class_names, counts)},
        }
