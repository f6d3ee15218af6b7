"""GPU-scale entries: torchvision's Faster R-CNNs, ResNet-18/34 FPN and MobileNetV2-FPN.

All are composed from torchvision's public parts. BatchNorm policy (the builder decides): from scratch every
backbone layer trains with ordinary ``BatchNorm2d``; with trained weights (``backbone_weights``, ``weights``,
or a spec marked ``pretrained``) the backbone uses ``FrozenBatchNorm2d`` because detection batches are a few
images, and ResNet/MobileNetV2 freeze their early stages as torchvision does (``trainable_backbone_layers``,
default 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn
from torchvision.models import MobileNet_V2_Weights, ResNet18_Weights, ResNet34_Weights, WeightsEnum, detection
from torchvision.models import mobilenet_v2
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from .parts import DEFAULT_ASPECT_RATIOS, anchor_generator, frcnn_kwargs, load_backbone_file, named_weights, set_anchors
from .registry import register_model
from .weights import freeze_batchnorm, is_file_path
from ..errors import ModelError

def _backbone_enum(enum: type[WeightsEnum], value: Any, model: str) -> WeightsEnum:
    return named_weights(enum, value, f"backbone_weights '{value}' are not known for '{model}'; pass a local "
                                      "file path or one of ")


# ---------------------------------------------------------------- torchvision's own detectors
_TV = {
    "fasterrcnn_resnet50_fpn": (detection.FasterRCNN_ResNet50_FPN_Weights, "ResNet50_Weights"),
    "fasterrcnn_resnet50_fpn_v2": (detection.FasterRCNN_ResNet50_FPN_V2_Weights, "ResNet50_Weights"),
    "fasterrcnn_mobilenet_v3_large_fpn": (detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
                                          "MobileNet_V3_Large_Weights"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
                                              "MobileNet_V3_Large_Weights"),
}


def _torchvision_entry(name: str) -> None:
    import torchvision.models as tvm

    enum, backbone_enum_name = _TV[name]
    backbone_enum = getattr(tvm, backbone_enum_name)
    builder = getattr(detection, name)

    def build(num_classes: int | None, *, backbone_weights: Any = None, weights_enum: WeightsEnum | None = None,
              pretrained: bool = False, **overrides: Any) -> FasterRCNN:
        local_backbone = backbone_weights is not None and is_file_path(backbone_weights)
        named_backbone = None
        if backbone_weights is not None and not local_backbone:
            named_backbone = _backbone_enum(backbone_enum, backbone_weights, name)
        kwargs = frcnn_kwargs(overrides)
        if "trainable_backbone_layers" in overrides and (weights_enum or named_backbone):
            kwargs["trainable_backbone_layers"] = overrides["trainable_backbone_layers"]
        # weights_backbone=None always unless named: torchvision's builders default it to ImageNet (a download).
        model = builder(weights=weights_enum, weights_backbone=named_backbone, num_classes=num_classes, **kwargs)
        set_anchors(model, overrides.get("anchor_sizes"), overrides.get("aspect_ratios"),
                    conv_depth=2 if name.endswith("_v2") else 1)
        if local_backbone:
            load_backbone_file(model.backbone.body, backbone_weights, f"'{name}' backbone")
        # v2 keeps BatchNorm2d even when trained (torchvision's recipe); the others freeze it when trained.
        if (local_backbone or (pretrained and weights_enum is None and named_backbone is None)) \
                and not name.endswith("_v2"):
            freeze_batchnorm(model.backbone.body)
        return model

    build.__doc__ = f"torchvision's {name} (weights=None: nothing downloads)."
    register_model(name, family="torchvision", weights_enum=enum, torchvision_builder=name)(build)


for _name in _TV:
    _torchvision_entry(_name)


# ---------------------------------------------------------------- ResNet-18/34 FPN
def _resnet_fpn(arch: str, enum: type[WeightsEnum], num_classes: int, backbone_weights: Any, pretrained: bool,
                overrides: dict[str, Any]) -> FasterRCNN:
    local = backbone_weights is not None and is_file_path(backbone_weights)
    named = _backbone_enum(enum, backbone_weights, arch) if backbone_weights is not None and not local else None
    trained = pretrained or backbone_weights is not None
    layers = overrides.get("trainable_backbone_layers", 3 if trained else 5)
    backbone = resnet_fpn_backbone(
        backbone_name=arch, weights=named,
        norm_layer=FrozenBatchNorm2d if trained else nn.BatchNorm2d, trainable_layers=layers,
    )
    if local:
        load_backbone_file(backbone.body, backbone_weights, f"'{arch}_fpn' backbone")
    model = FasterRCNN(backbone, num_classes=num_classes, **frcnn_kwargs(overrides))
    set_anchors(model, overrides.get("anchor_sizes"), overrides.get("aspect_ratios"))
    return model


@register_model(family="resnet", description="ResNet-18 + FPN (5 levels, strides 4-64), box head 1024")
def resnet18_fpn(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                 pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """ResNet-18 FPN Faster R-CNN; from scratch all layers train with BatchNorm2d.

    >>> import torch
    >>> m = resnet18_fpn(3)
    >>> sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.backbone.body.modules()) > 0
    True
    """
    return _resnet_fpn("resnet18", ResNet18_Weights, num_classes, backbone_weights, pretrained, overrides)


@register_model(family="resnet", description="ResNet-34 + FPN (5 levels, strides 4-64), box head 1024")
def resnet34_fpn(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                 pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """ResNet-34 FPN Faster R-CNN; from scratch all layers train with BatchNorm2d."""
    return _resnet_fpn("resnet34", ResNet34_Weights, num_classes, backbone_weights, pretrained, overrides)


# ---------------------------------------------------------------- MobileNetV2-FPN (the bccd recipe)
MOBILENET_V2_DEFAULTS: dict[str, Any] = {
    "min_size": 448, "max_size": 608,
    "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500,
    "rpn_pre_nms_top_n_test": 500, "rpn_post_nms_top_n_test": 300,
    "box_batch_size_per_image": 128,
}
BCCD_ANCHORS = ((16, 32), (64, 128), (192, 320))
BCCD_ANCHORS_S8 = ((16, 32), (32, 64), (64, 128), (192, 320))
"""Anchors of the ``_s8`` entries (strides 8, 16, 32, pool): BCCD's platelets (28-51 px at the 448 px input,
median 37) meet a 32 px anchor every 8 px instead of every 16, so more anchors reach the RPN's IoU 0.7."""


def mobilenet_v2_fpn_backbone(width_mult: float = 1.0, fpn_channels: int = 256,
                              returned_layers: Sequence[int] = (3, 4), trained: bool = False,
                              trainable_layers: int | None = None,
                              weights_file: str | Path | None = None,
                              named: WeightsEnum | None = None) -> BackboneWithFPN:
    """MobileNetV2 features + FPN at the stages ``returned_layers`` (default blocks 7 and 14: strides 16, 32)
    plus the max-pool level.

    torchvision's ``mobilenet_backbone`` fixes the FPN at 256 channels, width 1 and (by default) two stride-32
    blocks; this composes the same parts with those three open.

    >>> import torch
    >>> b = mobilenet_v2_fpn_backbone(width_mult=0.5, fpn_channels=64)
    >>> [(k, v.shape[-1]) for k, v in b(torch.zeros(1, 3, 64, 64)).items()]
    [('0', 4), ('1', 2), ('pool', 1)]
    """
    features = mobilenet_v2(weights=named, width_mult=width_mult).features
    if weights_file is not None:
        load_backbone_file(features, weights_file, "'mobilenet_v2' backbone")
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    num_stages = len(stage_indices)
    if not returned_layers or min(returned_layers) < 0 or max(returned_layers) >= num_stages:
        raise ModelError(f"override 'returned_layers' must be stage indices in [0, {num_stages - 1}], "
                         f"got {list(returned_layers)}")
    if trained:
        freeze_batchnorm(features)
        layers = 3 if trainable_layers is None else trainable_layers
        if not 0 <= layers <= num_stages:
            raise ModelError(f"override 'trainable_backbone_layers' must be in [0, {num_stages}], got {layers}")
        freeze_before = len(features) if layers == 0 else stage_indices[num_stages - layers]
        for block in features[:freeze_before]:
            for p in block.parameters():
                p.requires_grad_(False)
    return_layers = {str(stage_indices[k]): str(v) for v, k in enumerate(returned_layers)}
    in_channels = [features[stage_indices[i]].out_channels for i in returned_layers]
    return BackboneWithFPN(features, return_layers, in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())


def _mobilenet_v2_fpn(num_classes: int, backbone_weights: Any, pretrained: bool, overrides: dict[str, Any],
                      width_mult: float, fpn_channels: int, representation_size: int,
                      returned_layers: tuple[int, ...] = (3, 4),
                      anchor_sizes: tuple[tuple[int, ...], ...] = BCCD_ANCHORS) -> FasterRCNN:
    local = backbone_weights is not None and is_file_path(backbone_weights)
    named = (_backbone_enum(MobileNet_V2_Weights, backbone_weights, "mobilenet_v2_fpn")
             if backbone_weights is not None and not local else None)
    returned = tuple(overrides.get("returned_layers", returned_layers))
    backbone = mobilenet_v2_fpn_backbone(
        width_mult=overrides.get("width_mult", width_mult),
        fpn_channels=overrides.get("fpn_channels", fpn_channels),
        returned_layers=returned, trained=pretrained or backbone_weights is not None,
        trainable_layers=overrides.get("trainable_backbone_layers"),
        weights_file=backbone_weights if local else None, named=named,
    )
    levels = len(returned) + 1
    if "anchor_sizes" not in overrides and len(anchor_sizes) != levels:
        raise ModelError(f"override 'returned_layers' {list(returned)} gives {levels} feature maps but the default "
                         f"anchors have {len(anchor_sizes)} levels: give 'anchor_sizes' too, one tuple per level "
                         "(the '_s8' entries come with anchors for strides 8/16/32)")
    anchors = anchor_generator(overrides.get("anchor_sizes", anchor_sizes),
                               overrides.get("aspect_ratios", DEFAULT_ASPECT_RATIOS), levels)
    roi_pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(len(returned))], output_size=7,
                                  sampling_ratio=2)
    rep = overrides.get("representation_size", representation_size)
    head = TwoMLPHead(backbone.out_channels * 7 * 7, rep)
    # FasterRCNN sizes its default predictor for a 1024-wide head, so a narrower head brings its own.
    return FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      box_head=head, box_predictor=FastRCNNPredictor(rep, num_classes),
                      **frcnn_kwargs(overrides, MOBILENET_V2_DEFAULTS))


_MNV2_OPTIONS = ("width_mult", "fpn_channels", "representation_size", "returned_layers")


@register_model(family="mobilenet", options=_MNV2_OPTIONS,
                description="MobileNetV2-FPN 256, head 1024, strides 16/32/pool (the bccd teacher)")
def mobilenet_v2_fpn(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                     pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """MobileNetV2-FPN teacher: FPN 256, TwoMLPHead 1024, anchors ((16,32),(64,128),(192,320)) × (0.5,1,2).

    Input 448/608, RoIAlign 7×7 on the two conv levels, RPN top-N train 1000/500 test 500/300, 128 RoIs.
    ``backbone_weights`` takes the ImageNet file from ``detdistill weights fetch``.

    >>> m = mobilenet_v2_fpn(4)
    >>> m.transform.min_size, m.roi_heads.box_head.fc7.out_features
    ((448,), 1024)
    """
    return _mobilenet_v2_fpn(num_classes, backbone_weights, pretrained, overrides, 1.0, 256, 1024)


@register_model(family="mobilenet", options=_MNV2_OPTIONS,
                description="MobileNetV2 width 0.5, FPN 64, head 256, strides 16/32/pool")
def mobilenet_v2_050_fpn(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                         pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """MobileNetV2 width 0.5 student (FPN 64, head 256); pairs with :func:`mobilenet_v2_fpn`."""
    return _mobilenet_v2_fpn(num_classes, backbone_weights, pretrained, overrides, 0.5, 64, 256)


@register_model(family="mobilenet", options=_MNV2_OPTIONS,
                description="mobilenet_v2_fpn with a stride-8 level: strides 8/16/32/pool (small objects)")
def mobilenet_v2_fpn_s8(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                        pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """:func:`mobilenet_v2_fpn` with the FPN also on block 4 (stride 8) and :data:`BCCD_ANCHORS_S8`.

    torchvision's RoI level mapper then pools every box under 224 px from the stride-8 map.

    >>> import torch
    >>> m = mobilenet_v2_fpn_s8(4)
    >>> [v.shape[-1] for v in m.backbone(torch.zeros(1, 3, 64, 64)).values()]
    [8, 4, 2, 1]
    """
    return _mobilenet_v2_fpn(num_classes, backbone_weights, pretrained, overrides, 1.0, 256, 1024,
                             (2, 3, 4), BCCD_ANCHORS_S8)


@register_model(family="mobilenet", options=_MNV2_OPTIONS,
                description="mobilenet_v2_050_fpn with a stride-8 level: strides 8/16/32/pool (the bccd student)")
def mobilenet_v2_050_fpn_s8(num_classes: int, *, backbone_weights: Any = None, weights_enum: Any = None,
                            pretrained: bool = False, **overrides: Any) -> FasterRCNN:
    """The width-0.5 student with a stride-8 level. It pairs anchor by anchor with :func:`mobilenet_v2_fpn_s8`;
    from :func:`mobilenet_v2_fpn` it distils through the feature terms (at the strides both have) and the RCN
    terms, while the RPN terms refuse the pair (their anchors must match one to one)."""
    return _mobilenet_v2_fpn(num_classes, backbone_weights, pretrained, overrides, 0.5, 64, 256,
                             (2, 3, 4), BCCD_ANCHORS_S8)
