"""The parts every entry file composes: FasterRCNN's plain kwargs, anchors, the predictor swap, backbone files.

Imports nothing from the registry or the entry files, so both entry files and the factory can use it.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from .weights import check_and_load, load_state_dict_file, remap_state_dict
from ..errors import ModelError

log = logging.getLogger("detdistill.models")

_NOT_OVERRIDABLE = {"rpn_anchor_generator", "rpn_head", "box_roi_pool", "box_head", "box_predictor"}
# FasterRCNN's own keyword arguments that are plain data (and so JSON-able and uniform across entries).
FASTERRCNN_KWARGS: frozenset[str] = frozenset(
    p for p in inspect.signature(FasterRCNN.__init__).parameters
    if (p.startswith(("rpn_", "box_")) and p not in _NOT_OVERRIDABLE)
    or p in {"min_size", "max_size", "image_mean", "image_std", "bbox_reg_weights"}
)
COMMON_OVERRIDES: frozenset[str] = FASTERRCNN_KWARGS | {"anchor_sizes", "aspect_ratios", "trainable_backbone_layers"}
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)


def frcnn_kwargs(overrides: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """FasterRCNN's plain keyword arguments: ``defaults`` updated by ``overrides`` (lists → tuples).

    >>> frcnn_kwargs({"min_size": [160], "widths": [8]}, {"max_size": 608})
    {'max_size': 608, 'min_size': (160,)}
    """
    out = dict(defaults or {})
    out.update({k: v for k, v in overrides.items() if k in FASTERRCNN_KWARGS})
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def named_weights(enum: type[WeightsEnum], value: Any, unknown: str) -> WeightsEnum:
    """The member of ``enum`` that ``value`` names (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"<Enum>.<member>"``
    or the member itself), by torchvision's own ``WeightsEnum.verify``.

    Anything else is a ValueError: ``unknown`` followed by the names that work.

    >>> from torchvision.models import ResNet18_Weights
    >>> named_weights(ResNet18_Weights, "ResNet18_Weights.DEFAULT", "unknown; known: ").name
    'IMAGENET1K_V1'
    """
    try:
        if value is None:  # verify() passes None through; here it names nothing
            raise KeyError(value)
        return enum.verify(value)
    except (KeyError, TypeError):
        raise ModelError(unknown + ", ".join(["DEFAULT", *enum.__members__])) from None


def load_backbone_file(body: nn.Module, path: str | Path, what: str) -> None:
    """Load a local state dict into a backbone trunk, matching keys (prefix-tolerant) or positions.

    ``what`` names the trunk in errors (``"'resnet18_fpn' backbone"``).
    """
    state = load_state_dict_file(path)
    check_and_load(body, remap_state_dict(state, body.state_dict(), path), path, what=what)


def replace_predictor(model: FasterRCNN, num_classes: int, why: str) -> None:
    """Swap ``roi_heads.box_predictor`` for a fresh one with ``num_classes`` outputs; log the change."""
    old = model.roi_heads.box_predictor.cls_score.out_features
    if old == num_classes:
        return
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    log.warning("%s: replaced box predictor: %d → %d classes", why, old, num_classes)


def anchor_generator(anchor_sizes: Sequence[Sequence[int]], aspect_ratios: Sequence[Any],
                     num_levels: int) -> AnchorGenerator:
    """An ``AnchorGenerator`` with one size tuple per level; ``aspect_ratios`` per level or shared.

    >>> anchor_generator([[16, 32], [64, 128]], [0.5, 1.0, 2.0], 2).num_anchors_per_location()
    [6, 6]
    """
    sizes = tuple(tuple(int(s) for s in level) for level in anchor_sizes)
    if len(sizes) != num_levels:
        raise ModelError(f"override 'anchor_sizes' has {len(sizes)} levels but the backbone has {num_levels} "
                         f"feature maps: {list(map(list, sizes))}")
    if aspect_ratios and isinstance(aspect_ratios[0], (list, tuple)):
        ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)
        if len(ratios) != num_levels:
            raise ModelError(f"override 'aspect_ratios' has {len(ratios)} levels but the backbone has "
                             f"{num_levels} feature maps")
    else:
        ratios = (tuple(float(r) for r in aspect_ratios),) * num_levels
    return AnchorGenerator(sizes, ratios)


def set_anchors(model: FasterRCNN, anchor_sizes: Sequence[Sequence[int]] | None,
                aspect_ratios: Sequence[Any] | None, conv_depth: int = 1) -> None:
    """Replace the RPN's anchor generator (and its head when the anchors per location change)."""
    if anchor_sizes is None and aspect_ratios is None:
        return
    old = model.rpn.anchor_generator
    gen = anchor_generator(anchor_sizes if anchor_sizes is not None else old.sizes,
                           aspect_ratios if aspect_ratios is not None else old.aspect_ratios, len(old.sizes))
    counts = set(gen.num_anchors_per_location())
    if len(counts) != 1:
        raise ModelError(f"every level needs the same number of anchors (the RPN head is shared), got "
                         f"{gen.num_anchors_per_location()}")
    model.rpn.anchor_generator = gen
    if counts != set(old.num_anchors_per_location()):
        in_channels = model.backbone.out_channels
        model.rpn.head = RPNHead(in_channels, counts.pop(), conv_depth=conv_depth)
