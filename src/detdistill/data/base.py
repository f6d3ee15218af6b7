"""The dataset interface every reader yields.

Convention (torchvision detection): ``dataset[i]`` returns ``(image, target)`` where ``image`` is a float
tensor ``C×H×W`` in RGB, values in [0, 1], and ``target`` is a dict of tensors:

========== ============ ===========================================================================
key        dtype/shape  meaning
========== ============ ===========================================================================
boxes      float32 N×4  absolute ``x1, y1, x2, y2`` pixels of the decoded image
labels     int64 N      contiguous class labels ``1..K``; ``0`` is reserved for background
image_id   int64 scalar the record's id (the source's id where it has one, e.g. COCO)
iscrowd    int64 N      COCO crowd flag (crowd boxes are ignored by COCO AP)
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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from ..errors import DetDistillError

Target = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
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


def load_rgb_image(path: str | Path) -> Image.Image:
    """Decode an image file to RGB, applying its EXIF orientation (a convention, not an error).

    Grayscale, RGBA and palette images are converted to RGB; 16-bit grayscale is scaled by its range
    (0..65535), and 32-bit integer or float images, which have no fixed range, are refused. Missing,
    truncated, corrupt or too large (see :func:`set_max_image_pixels`) files raise a :class:`DatasetError`
    naming the path, never a PIL traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with open_image(path) as img:
            img.load()
            fmt = img.format
            img = ImageOps.exif_transpose(img)
            img.format = fmt
            return _to_rgb(img, path)
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc})") from exc


class DetectionDataset(Dataset):
    """A list of :class:`ImageRecord` plus class names: the common base of every reader.

    Subclasses only build ``records``; decoding and target assembly live here. ``root`` is joined to each
    record's ``file_name`` unless that is absolute. ``transforms(image, target)`` augments (see
    :mod:`detdistill.data.transforms`).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        root: str | Path | None = None,
        transforms: Transform | None = None,
        name: str = "dataset",
    ) -> None:
        self.records = list(records)
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
        file_name = Path(self.records[idx].file_name)
        return file_name if self.root is None or file_name.is_absolute() else self.root / file_name

    def load_image(self, idx: int) -> torch.Tensor:
        """Decoded RGB image as a float tensor C×H×W in [0, 1]."""
        record = self.records[idx]
        path = self.image_path(idx)
        img = load_rgb_image(path)
        if img.size != (record.width, record.height):
            raise DatasetError(
                f"{path}: annotated size (width={record.width}, height={record.height}) disagrees with the "
                f"decoded image (width={img.size[0]}, height={img.size[1]})"
            )
        return F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True)

    def get_target(self, idx: int) -> Target:
        return self.records[idx].target()

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load_image(idx), self.get_target(idx)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def summary(self) -> dict[str, Any]:
        counts = np.zeros(len(self.class_names), np.int64)
        for rec in self.records:
            np.add.at(counts, rec.labels - 1, 1)
        return {
            "name": self.name,
            "images": len(self.records),
            "boxes": int(counts.sum()),
            "classes": {name: int(c) for name, c in zip(self.class_names, counts)},
        }
