"""Augmentations for detection, built on ``torchvision.transforms.v2``.

Data transforms only augment; resizing to the model's input size and normalisation belong to the model's
``GeneralizedRCNNTransform``. Boxes are wrapped as ``tv_tensors.BoundingBoxes`` so every geometric transform
moves them with the pixels, and boxes that collapse are dropped together with their per-box fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .base import Target

PER_BOX_FIELDS = ("labels", "iscrowd", "difficult", "area")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation.

    Attributes:
        hflip_prob: probability of a horizontal flip (the bccd reference recipe uses only this).
        photometric: colour jitter (brightness, contrast, saturation, hue).
        scale_jitter: ``(low, high)`` factors for a random rescale of the image, or ``None`` for off.
    """

    hflip_prob: float = 0.5
    photometric: bool = False
    scale_jitter: tuple[float, float] | None = None


class DetectionAugment:
    """``(image, target) -> (image, target)`` wrapper around a v2 pipeline that keeps per-box fields aligned."""

    def __init__(self, config: AugmentConfig = AugmentConfig()) -> None:
        self.config = config
        steps: list[v2.Transform] = []
        if config.scale_jitter is not None:
            low, high = config.scale_jitter
            steps.append(_RandomScale(low, high))
        if config.hflip_prob > 0:
            steps.append(_RecordedHorizontalFlip(p=config.hflip_prob))
        if config.photometric:
            steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02))
        # Drop boxes that shrink below a pixel after scaling, together with every per-box field.
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_per_box_fields))
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        height, width = image.shape[-2:]
        wrapped = dict(target)
        wrapped["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(height, width))
        image_out, out = self.pipeline(tv_tensors.Image(image), wrapped)
        out = dict(out)
        out.setdefault("hflipped", torch.tensor(False))
        boxes = out["boxes"].as_subclass(torch.Tensor)
        out["boxes"] = boxes
        if self.config.scale_jitter is not None:
            out["area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return image_out.as_subclass(torch.Tensor), out

    def __repr__(self) -> str:
        return f"DetectionAugment({self.config})"


def _per_box_fields(inputs):  # noqa: ANN001, ANN202 - torchvision's labels_getter protocol
    target = inputs[1]
    return tuple(target[k] for k in PER_BOX_FIELDS if k in target)


class _RecordedHorizontalFlip(v2.RandomHorizontalFlip):
    """``RandomHorizontalFlip`` (same single RNG draw) that adds ``target["hflipped"]``: the teacher cache keys
    its entries on (image, flip); torchvision's detection losses ignore the extra key."""

    def forward(self, *inputs):  # noqa: ANN002, ANN201, ANN202
        image, target = inputs if len(inputs) > 1 else inputs[0]
        flipped = bool(torch.rand(1) < self.p)  # RandomHorizontalFlip skips when rand >= p
        if flipped:
            image, target = v2.Transform.forward(self, image, target)
        return image, {**target, "hflipped": torch.tensor(flipped)}


class _RandomScale(v2.Transform):
    """Rescale by a factor drawn uniformly from ``[low, high]`` (boxes follow exactly)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not 0 < low <= high:
            raise ValueError(f"scale_jitter: need 0 < low <= high, got ({low}, {high})")
        self.low, self.high = low, high

    def make_params(self, flat_inputs):  # noqa: ANN001, ANN202
        height, width = v2.query_size(flat_inputs)
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt, params):  # noqa: ANN001, ANN202
        return self._call_kernel(v2.functional.resize, inpt, size=params["size"], antialias=True)
