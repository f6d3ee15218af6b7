"""The CPU-scale family: a small conv backbone + FPN + a small box head, trainable in minutes on 2 cores.

One architecture at three widths (``cpu_tiny`` < ``cpu_small`` < ``cpu_base``). By default every member has
the same feature strides (8, 16 + the max-pool level 32), anchors, box coders and transform (160×160, the
synthetic images), so any two members pair anchor by anchor for distillation. With the overrides
``strides=(16, 32), min_size=448, max_size=608, anchor_sizes=((16, 32), (64, 128), (192, 320))`` a member
pairs with the MobileNetV2-FPN teacher instead (see :data:`MOBILENET_V2_PAIRING`).

The backbone is plain conv-BN-ReLU stages: the stem halves the input, each stage halves it again, so stage
``k`` has stride ``2**(k+1)``; ``widths`` gives each stage's channels from stride 4 up (extended by doubling
when ``strides`` asks for deeper stages), and ``strides`` picks the stages the FPN reads.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Sequence

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation

from .parts import DEFAULT_ASPECT_RATIOS, anchor_generator, frcnn_kwargs, load_backbone_file
from .registry import register_model
from .weights import freeze_batchnorm
from ..errors import ModelError

CPU_DEFAULTS: dict[str, Any] = {
    "min_size": 160, "max_size": 160,
    "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150,
    "rpn_batch_size_per_image": 128,
    "box_batch_size_per_image": 128,
}
CPU_STRIDES = (8, 16)
# Synthetic objects are 14-56 px on 160 px images: two sizes per level cover 16-96 px over strides 8/16/32.
CPU_ANCHORS = ((16, 24), (32, 48), (64, 96))
CPU_OPTIONS = ("widths", "strides", "fpn_channels", "representation_size", "depth")

# Overrides that make any CPU member pair with ``mobilenet_v2_fpn`` (same strides, anchors, transform).
MOBILENET_V2_PAIRING: dict[str, Any] = {
    "strides": [16, 32], "min_size": 448, "max_size": 608,
    "anchor_sizes": [[16, 32], [64, 128], [192, 320]],
}


def cpu_backbone(widths: Sequence[int], strides: Sequence[int] = CPU_STRIDES, fpn_channels: int = 64,
                 depth: int = 1) -> BackboneWithFPN:
    """Conv-BN-ReLU stages + FPN (+ max-pool level) reading the stages at ``strides``.

    >>> b = cpu_backbone((8, 16, 32), fpn_channels=16)
    >>> {k: tuple(v.shape[-2:]) for k, v in b(__import__("torch").zeros(1, 3, 64, 64)).items()}
    {'0': (8, 8), '1': (4, 4), 'pool': (2, 2)}
    """
    strides = sorted(int(s) for s in strides)
    if not strides or any(s < 4 or 2 ** round(math.log2(s)) != s for s in strides) or len(set(strides)) != len(strides):
        raise ModelError(f"override 'strides' must be distinct powers of two >= 4, got {list(strides)}")
    if not widths or any(int(w) < 1 for w in widths):
        raise ModelError(f"override 'widths' must be positive channel counts, got {list(widths)}")
    if depth < 0:
        raise ModelError(f"override 'depth' must be >= 0, got {depth}")
    num_stages = int(math.log2(strides[-1])) - 1  # stride 4 is stage 1
    chans = [int(w) for w in widths][:num_stages]
    while len(chans) < num_stages:
        chans.append(chans[-1] * 2)
    stem = max(8, chans[0] // 2)
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=Conv2dNormActivation(3, stem, 3, stride=2))
    prev = stem
    for k, c in enumerate(chans, start=1):
        blocks = [Conv2dNormActivation(prev, c, 3, stride=2)]
        blocks += [Conv2dNormActivation(c, c, 3) for _ in range(depth)]
        layers[f"s{2 ** (k + 1)}"] = nn.Sequential(*blocks)
        prev = c
    body = nn.Sequential(layers)
    return_layers = {f"s{s}": str(i) for i, s in enumerate(strides)}
    in_channels = [chans[int(math.log2(s)) - 2] for s in strides]
    return BackboneWithFPN(body, return_layers, in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())


def build_cpu_detector(num_classes: int, widths: Sequence[int] = (16, 32, 64), fpn_channels: int = 64,
                       representation_size: int = 128, strides: Sequence[int] = CPU_STRIDES, depth: int = 1,
                       backbone_weights: Any = None, pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """A CPU-scale Faster R-CNN; ``overrides`` are the common ones (transform, anchors, ``rpn_*``, ``box_*``).

    >>> m = build_cpu_detector(7, widths=(8, 16, 32), fpn_channels=32, representation_size=128)
    >>> m.roi_heads.box_head.fc6.out_features, m.transform.min_size
    (128, (160,))
    """
    backbone = cpu_backbone(widths, strides, fpn_channels, depth)
    if backbone_weights is not None:
        load_backbone_file(backbone.body, backbone_weights, "CPU backbone")
    if pretrained or backbone_weights is not None:
        freeze_batchnorm(backbone.body)
    levels = len(strides) + 1
    anchors = anchor_generator(overrides.get("anchor_sizes", CPU_ANCHORS),
                               overrides.get("aspect_ratios", DEFAULT_ASPECT_RATIOS), levels)
    roi_pool = MultiScaleRoIAlign([str(i) for i in range(len(strides))], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(backbone.out_channels * 7 * 7, representation_size)
    # FasterRCNN sizes its default predictor for a 1024-wide head, so the small head brings its own.
    return FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      box_head=head, box_predictor=FastRCNNPredictor(representation_size, num_classes),
                      **frcnn_kwargs(overrides, CPU_DEFAULTS))


def _member(name: str, widths: tuple[int, ...], fpn: int, rep: int, note: str) -> None:
    def build(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
              pretrained: bool = False, **overrides: Any) -> FasterRCNN:
        options = {"widths": widths, "fpn_channels": fpn, "representation_size": rep, **overrides}
        return build_cpu_detector(num_classes, backbone_weights=backbone_weights, pretrained=pretrained, **options)

    build.__doc__ = f"CPU-scale {note}: widths {widths}, FPN {fpn}, box head {rep}."
    register_model(name, family="cpu", options=CPU_OPTIONS,
                   description=f"CPU-scale {note}: widths {'/'.join(map(str, widths))}, FPN {fpn}, head {rep}")(build)


_member("cpu_tiny", (8, 16, 32), 32, 128, "narrow student")
_member("cpu_small", (16, 32, 64), 64, 128, "student")
_member("cpu_base", (32, 64, 128), 128, 256, "teacher")
