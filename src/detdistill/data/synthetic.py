"""Synthetic shapes: the embedded default dataset, generated from a seed (nothing stored or downloaded).

Six classes in three look-alike pairs, so that a teacher's soft labels carry real structure (the paper's
"a car looks more like a truck than a person"): square vs wide rectangle, circle vs ellipse, triangle vs
trapezoid. Objects vary in size, colour and rotation, may partly occlude each other, and sit on textured,
cluttered backgrounds with distractor strokes. :class:`SyntheticConfig` is the difficulty knob.

Every image is a pure function of ``(seed, split, index)``: same seed, same bytes, in any order, in any
worker. Splits draw from disjoint random streams.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .base import DatasetError, DetectionDataset, ImageRecord, Transform

CLASS_NAMES = ("square", "wide_rectangle", "circle", "ellipse", "triangle", "trapezoid")
LOOKALIKE_PAIRS = (("square", "wide_rectangle"), ("circle", "ellipse"), ("triangle", "trapezoid"))
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
DEFAULT_SPLIT_SIZES = {"train": 1200, "val": 200, "test": 200}


@dataclass(frozen=True)
class SyntheticConfig:
    """How hard the synthetic images are. Each field is a difficulty knob.

    Attributes:
        image_size: side of the square images, pixels.
        min_objects / max_objects: objects per image (uniform).
        min_size / max_size: object scale (side of the square with the object's area), pixels.
        clutter: distractor strokes and unlabeled specks per image.
        noise: std of the Gaussian pixel noise, in [0, 1] intensity units.
        max_rotation: objects are rotated uniformly in ±max_rotation degrees.
        max_overlap: largest IoU allowed between two objects' boxes (occlusion without hiding).
        lookalike_gap: how distinct each look-alike pair is; 1 is the default, smaller is harder
            (rectangles and ellipses closer to square and round, trapezoid tops closer to a point).
    """

    image_size: int = 160
    min_objects: int = 2
    max_objects: int = 6
    min_size: int = 14
    max_size: int = 56
    clutter: int = 10
    noise: float = 0.04
    max_rotation: float = 30.0
    max_overlap: float = 0.3
    lookalike_gap: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            ("image_size", self.image_size >= 32),
            ("min_objects", 0 <= self.min_objects <= self.max_objects),
            ("min_size", 4 <= self.min_size <= self.max_size),
            ("max_size", self.max_size < self.image_size),
            ("noise", 0 <= self.noise <= 1),
            ("max_overlap", 0 <= self.max_overlap <= 1),
            ("lookalike_gap", 0 < self.lookalike_gap <= 2),
        ]
        for name, ok in checks:
            if not ok:
                raise DatasetError(f"SyntheticConfig: field '{name}' has an invalid value {getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SyntheticConfig":
        """``easy``, ``default`` or ``hard``, optionally with field overrides."""
        presets = {
            "easy": cls(min_objects=1, max_objects=3, min_size=24, max_size=60, clutter=2, noise=0.01,
                        max_rotation=10.0, lookalike_gap=1.4),
            "default": cls(),
            "hard": cls(min_objects=4, max_objects=10, min_size=10, max_size=40, clutter=24, noise=0.08,
                        max_rotation=45.0, max_overlap=0.45, lookalike_gap=0.6),
        }
        if name not in presets:
            raise DatasetError(f"SyntheticConfig: unknown preset {name!r}; choose one of {sorted(presets)}")
        return replace(presets[name], **overrides)


def _shape_polygon(cls_name: str, size: float, rng: np.random.Generator, gap: float) -> np.ndarray:
    """Vertices (V×2) centred on the origin, before rotation, for an object of area about ``size``²."""
    if cls_name == "square":
        half = size / 2
        return np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    if cls_name == "wide_rectangle":
        aspect = 1.0 + gap * rng.uniform(0.6, 1.2)
        hw, hh = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
        return np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    if cls_name in ("circle", "ellipse"):
        aspect = 1.0 if cls_name == "circle" else 1.0 + gap * rng.uniform(0.5, 1.0)
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        rx, ry = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
        return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)
    if cls_name in ("triangle", "trapezoid"):
        base, height = size * 1.2, size * 0.95
        top = 0.0 if cls_name == "triangle" else base * min(0.85, gap * rng.uniform(0.3, 0.55))
        return np.array([[-base / 2, height / 2], [base / 2, height / 2], [top / 2, -height / 2],
                         [-top / 2, -height / 2]] if top > 0 else
                        [[-base / 2, height / 2], [base / 2, height / 2], [0.0, -height / 2]])
    raise DatasetError(f"synthetic: unknown class {cls_name!r}")


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    if len(others) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(others) - inter)


@dataclass
class _Layout:
    polygons: list[np.ndarray]
    labels: np.ndarray
    boxes: np.ndarray
    colors: list[tuple[int, int, int]]


def _make_layout(cfg: SyntheticConfig, rng: np.random.Generator) -> _Layout:
    s = cfg.image_size
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    polygons, labels, boxes, colors = [], [], [], []
    for _ in range(n):
        label = int(rng.integers(1, len(CLASS_NAMES) + 1))
        size = float(rng.uniform(cfg.min_size, cfg.max_size))
        poly = _shape_polygon(CLASS_NAMES[label - 1], size, rng, cfg.lookalike_gap)
        theta = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        poly = poly @ rot.T
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        for _attempt in range(20):  # rejection sampling keeps occlusion partial
            centre = rng.uniform(-lo, s - hi)
            box = np.concatenate([lo + centre, hi + centre])
            if len(boxes) == 0 or _iou(box, np.array(boxes)).max() <= cfg.max_overlap:
                polygons.append(poly + centre)
                labels.append(label)
                boxes.append(box)
                colors.append(color)
                break
    boxes_arr = np.clip(np.array(boxes, np.float32).reshape(-1, 4), 0, s)
    return _Layout(polygons, np.array(labels, np.int64), boxes_arr, colors)


def _render(cfg: SyntheticConfig, layout: _Layout, rng: np.random.Generator) -> np.ndarray:
    s = cfg.image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    c0, c1 = rng.uniform(0.2, 0.8, size=3), rng.uniform(0.2, 0.8, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0
    background = c0[None, None] * (1 - ramp[..., None]) + c1[None, None] * ramp[..., None]
    for _ in range(3):  # low-frequency texture
        fx, fy, phase = rng.uniform(2, 9), rng.uniform(2, 9), rng.uniform(0, 2 * math.pi)
        background += 0.06 * np.sin(2 * math.pi * (fx * xx + fy * yy) + phase)[..., None] * rng.uniform(-1, 1, 3)
    img = Image.fromarray((np.clip(background, 0, 1) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(cfg.clutter):  # distractors: strokes and specks too small to be objects
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.6:
            x0, y0 = rng.uniform(0, s, 2)
            length, ang = rng.uniform(s / 8, s / 2), rng.uniform(0, 2 * math.pi)
            draw.line([(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))], fill=color,
                      width=int(rng.integers(1, 3)))
        else:
            x0, y0 = rng.uniform(0, s, 2)
            r = rng.uniform(1, max(2.0, cfg.min_size / 4))
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=color)
    for poly, color in zip(layout.polygons, layout.colors):
        outline = tuple(max(0, c - 60) for c in color)
        draw.polygon([tuple(p) for p in poly], fill=color, outline=outline)
    arr = np.asarray(img, np.float32) / 255.0
    if cfg.noise > 0:
        arr = arr + rng.normal(0, cfg.noise, arr.shape).astype(np.float32)
    return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)


class SyntheticShapes(DetectionDataset):
    """The embedded default dataset (see module docstring).

    Args:
        split: ``train``, ``val`` or ``test``; each split is its own random stream.
        num_images: images in this split (default: 1200 / 200 / 200).
        seed: the dataset seed; same seed, same images, byte for byte.
        config: a :class:`SyntheticConfig` (the difficulty knob).
        transforms: augmentation ``(image, target) -> (image, target)``.

    Example:
        >>> ds = SyntheticShapes("train", num_images=8, seed=0)
        >>> image, target = ds[0]
        >>> image.shape, target["labels"].dtype
        (torch.Size([3, 160, 160]), torch.int64)
    """

    image_files = False  # rendered, not read from files

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        seed: int = 0,
        config: SyntheticConfig | None = None,
        transforms: Transform | None = None,
    ) -> None:
        if split not in SPLIT_CODES:
            raise DatasetError(f"SyntheticShapes: field 'split' has value {split!r}; choose one of {sorted(SPLIT_CODES)}")
        self.split = split
        self.seed = int(seed)
        self.config = config or SyntheticConfig()
        n = DEFAULT_SPLIT_SIZES[split] if num_images is None else int(num_images)
        if n <= 0:
            raise DatasetError(f"SyntheticShapes: field 'num_images' has value {n}; it must be positive")
        self._layouts = [_make_layout(self.config, self._rng(i, 0)) for i in range(n)]
        s = self.config.image_size
        records = [
            ImageRecord(image_id=i, file_name=f"{split}_{i:06d}.png", width=s, height=s,
                        boxes=lay.boxes, labels=lay.labels)
            for i, lay in enumerate(self._layouts)
        ]
        super().__init__(records, CLASS_NAMES, transforms=transforms, name=f"synthetic-{split}")

    def _rng(self, idx: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_CODES[self.split], idx, stream])

    def render(self, idx: int) -> np.ndarray:
        """The image as an H×W×3 uint8 array."""
        return _render(self.config, self._layouts[idx], self._rng(idx, 1))

    def load_image(self, idx: int) -> torch.Tensor:
        return torch.from_numpy(self.render(idx)).permute(2, 0, 1).float().div_(255.0)

    def spec(self) -> dict[str, Any]:
        """A JSON-able description that rebuilds this dataset (used in checkpoints and cache keys)."""
        return {"kind": "synthetic", "split": self.split, "num_images": len(self), "seed": self.seed,
                "config": asdict(self.config)}
