"""``build_detector``, ``build_from_spec`` and the JSON-able model spec; imports every entry file.

Every entry returns a plain torchvision :class:`~torchvision.models.detection.FasterRCNN` carrying its spec
as ``model.detdistill_spec``::

    {"name": "cpu_small", "num_classes": 7, "kwargs": {"min_size": 160}, "lowrank": None, "pretrained": False}

``kwargs`` are the overrides exactly as JSON stores them (tuples become lists), so that a checkpoint's spec
rebuilds the same architecture (:func:`build_from_spec`). ``pretrained`` records whether the model was built
for trained weights (FrozenBatchNorm2d, frozen early stages), so a rebuilt model trains on the same way.
``lowrank`` holds the per-layer ranks of a compressed model; :func:`build_from_spec` hands it to the spec hook
that :mod:`detdistill.models.lowrank` registers (``apply_lowrank_spec``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torchvision.models import WeightsEnum
from torchvision.models.detection import FasterRCNN

from . import cpu_family, zoo  # noqa: F401 - the entry files register their builders on import
from .parts import COMMON_OVERRIDES, named_weights, replace_predictor
from .registry import SPEC_HOOKS, get_entry
from .weights import WeightsError, check_and_load, is_file_path, load_state_dict_file
from ..errors import ModelError

PREDICTOR_KEY = "roi_heads.box_predictor.cls_score.weight"


def _jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(overrides))
    except TypeError as exc:
        raise ModelError(f"model overrides must be JSON-able (numbers, strings, lists): {exc}") from exc


def resolve_weights(name: str, weights: str | WeightsEnum) -> WeightsEnum:
    """The torchvision weights enum member that ``weights`` names for entry ``name`` (no download).

    Accepts ``"DEFAULT"``, a member name (``"COCO_V1"``), ``"<Enum>.<member>"`` or the member itself.

    >>> resolve_weights("fasterrcnn_resnet50_fpn", "DEFAULT").name
    'COCO_V1'
    """
    entry = get_entry(name)
    if entry.weights_enum is None:
        raise ModelError(f"model '{name}' has no named weights; pass weights=<path to a local state dict>")
    enum = entry.weights_enum
    if isinstance(weights, WeightsEnum) and not isinstance(weights, enum):
        raise ModelError(f"weights {weights} do not belong to model '{name}' (expected {enum.__name__})")
    return named_weights(enum, weights, f"weights '{weights}' are not known for model '{name}'; known: ")


def build_detector(name: str, num_classes: int, weights: str | Path | WeightsEnum | None = None,
                   backbone_weights: str | Path | None = None, *, pretrained: bool = False,
                   **overrides: Any) -> FasterRCNN:
    """Build a registered detector; ``weights=None`` never downloads anything.

    Args:
        name: a name from :func:`~detdistill.models.registry.list_models`.
        num_classes: classes including background (``dataset.num_classes``).
        weights: full-detector weights: a local state dict or detdistill checkpoint path (loaded with
            ``weights_only=True``), or for torchvision entries a weights name (``"DEFAULT"``, ``"COCO_V1"``;
            that one downloads, on a machine with internet). The model is built at the weights' class count,
            loaded strictly, and only the box predictor is replaced when ``num_classes`` differs.
        backbone_weights: a local state dict for the backbone (ImageNet), or a torchvision weights name for
            torchvision entries. Pretrained backbones get FrozenBatchNorm2d and frozen early stages; from
            scratch every layer trains with ordinary BatchNorm2d.
        **overrides: ``min_size``, ``max_size``, ``image_mean``, ``image_std``, ``anchor_sizes`` (a tuple per
            level), ``aspect_ratios``, FasterRCNN's ``rpn_*``/``box_*`` kwargs, ``trainable_backbone_layers``,
            plus the entry's own options (e.g. ``widths`` for the CPU family).
        pretrained: build as for trained weights (FrozenBatchNorm2d, frozen early stages) without loading any;
            set by :func:`build_from_spec` so a fine-tuned model rebuilds exactly as it trained. Implied by
            ``weights`` or ``backbone_weights``.

    Example:
        >>> model = build_detector("cpu_tiny", num_classes=7)
        >>> model.detdistill_spec["name"], model.roi_heads.box_predictor.cls_score.out_features
        ('cpu_tiny', 7)
    """
    entry = get_entry(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}")
    unknown = sorted(set(overrides) - COMMON_OVERRIDES - entry.options)
    if unknown:
        accepted = ", ".join(sorted(COMMON_OVERRIDES | entry.options))
        raise ModelError(f"model '{name}' does not take override(s) {', '.join(unknown)}; accepted: {accepted}")
    kwargs = _jsonable(overrides)

    if weights is None:
        model = entry.fn(num_classes, backbone_weights=backbone_weights, weights_enum=None,
                         pretrained=pretrained, **kwargs)
    elif is_file_path(weights):
        if backbone_weights is not None:
            raise ModelError("pass weights (the whole detector) or backbone_weights, not both: "
                             "the detector's weights would overwrite the backbone's")
        state = load_state_dict_file(weights)
        if PREDICTOR_KEY not in state:
            raise WeightsError(f"{weights}: has no '{PREDICTOR_KEY}': not a Faster R-CNN state dict")
        file_classes = int(state[PREDICTOR_KEY].shape[0])
        model = entry.fn(file_classes, backbone_weights=None, weights_enum=None, pretrained=True, **kwargs)
        check_and_load(model, state, weights, what=f"'{name}' detector")
        replace_predictor(model, num_classes, f"{name} from {weights}")
    else:
        enum = resolve_weights(name, weights)
        model = entry.fn(None, backbone_weights=None, weights_enum=enum, pretrained=True, **kwargs)
        replace_predictor(model, num_classes, f"{name} with {enum}")

    pretrained = pretrained or weights is not None or backbone_weights is not None
    model.detdistill_spec = {"name": name, "num_classes": num_classes, "kwargs": kwargs, "lowrank": None,
                             "pretrained": pretrained}
    return model


def build_from_spec(spec: dict[str, Any], source: str | Path = "model spec") -> FasterRCNN:
    """Rebuild the (untrained) architecture a spec describes, low-rank layers included.

    >>> m = build_from_spec({"name": "cpu_tiny", "num_classes": 3, "kwargs": {},
    ...                      "lowrank": {"roi_heads.box_head.fc6": {"kind": "svd", "ranks": [8]}}})
    >>> m.roi_heads.box_head.fc6.ranks, m.detdistill_spec["lowrank"]["roi_heads.box_head.fc6"]["ranks"]
    ([8], [8])
    """
    for key in ("name", "num_classes", "kwargs"):
        if key not in spec:
            raise ModelError(f"{source}: model_spec has no '{key}' (keys: {', '.join(sorted(spec))})")
    model = build_detector(spec["name"], spec["num_classes"], pretrained=bool(spec.get("pretrained", False)),
                           **spec["kwargs"])
    lowrank = spec.get("lowrank")
    if lowrank is not None:
        hook = SPEC_HOOKS.get("lowrank")
        if hook is None:
            raise ModelError(f"{source}: model_spec.lowrank is set but no low-rank rebuilder is registered "
                             "(import detdistill.models.lowrank)")
        model = hook(model, lowrank)
        model.detdistill_spec = {**model.detdistill_spec, "lowrank": lowrank}
    return model


def model_spec(model: torch.nn.Module) -> dict[str, Any]:
    """The spec a detector was built with; a clear error for models not built by :func:`build_detector`."""
    spec = getattr(model, "detdistill_spec", None)
    if not isinstance(spec, dict):
        raise ModelError(f"{type(model).__name__} has no detdistill_spec: build it with build_detector()")
    return spec
