"""Names → detector builders (timm style), ``build_detector`` and the JSON-able model spec.

Every entry returns a plain torchvision :class:`~torchvision.models.detection.FasterRCNN` carrying its spec
as ``model.detdistill_spec``::

    {"name": "cpu_small", "num_classes": 7, "kwargs": {"min_size": 160}, "lowrank": None, "pretrained": False}

``kwargs`` are the overrides exactly as JSON stores them (tuples become lists), so that a checkpoint's spec
rebuilds the same architecture (:func:`build_from_spec`). ``pretrained`` records whether the model was built
for trained weights (FrozenBatchNorm2d, frozen early stages), so a rebuilt model trains on the same way. ``lowrank`` is reserved for per-layer ranks of a
compressed model; :func:`build_from_spec` hands it to :func:`detdistill.models.lowrank.apply_lowrank_spec`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torchvision.models import WeightsEnum
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from .weights import WeightsError, check_and_load, load_state_dict_file

log = logging.getLogger("detdistill.models")

Builder = Callable[..., FasterRCNN]

_NOT_OVERRIDABLE = {"rpn_anchor_generator", "rpn_head", "box_roi_pool", "box_head", "box_predictor"}
# FasterRCNN's own keyword arguments that are plain data (and so JSON-able and uniform across entries).
FASTERRCNN_KWARGS: frozenset[str] = frozenset(
    p for p in inspect.signature(FasterRCNN.__init__).parameters
    if (p.startswith(("rpn_", "box_")) and p not in _NOT_OVERRIDABLE)
    or p in {"min_size", "max_size", "image_mean", "image_std", "bbox_reg_weights"}
)
COMMON_OVERRIDES: frozenset[str] = FASTERRCNN_KWARGS | {"anchor_sizes", "aspect_ratios", "trainable_backbone_layers"}
PREDICTOR_KEY = "roi_heads.box_predictor.cls_score.weight"


@dataclass(frozen=True)
class ModelEntry:
    """One registered detector.

    Attributes:
        name: registry name.
        fn: ``fn(num_classes, *, backbone_weights, weights_enum, pretrained, **overrides) -> FasterRCNN``;
            ``pretrained`` says trained weights will be loaded (so BatchNorm is frozen as for a pretrained
            backbone).
        family: ``torchvision``, ``resnet``, ``mobilenet`` or ``cpu``.
        options: overrides this entry takes beyond :data:`COMMON_OVERRIDES`.
        weights_enum: torchvision weights enum for named weights (``"DEFAULT"``, ``"COCO_V1"``), if any.
        torchvision_builder: the torchvision builder whose state dict keys this entry's match, if any.
        description: one line for ``detdistill models``.
    """

    name: str
    fn: Builder
    family: str
    options: frozenset[str] = field(default_factory=frozenset)
    weights_enum: type[WeightsEnum] | None = None
    torchvision_builder: str | None = None
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str | None = None, *, family: str, options: Sequence[str] = (),
                   weights_enum: type[WeightsEnum] | None = None, torchvision_builder: str | None = None,
                   description: str = "") -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name`` (default: the function's name).

    Example::

        @register_model("my_detector", family="cpu", options=("widths",))
        def my_detector(num_classes, *, backbone_weights=None, weights_enum=None, **overrides):
            ...
    """

    def deco(fn: Builder) -> Builder:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' is already registered")
        _REGISTRY[key] = ModelEntry(key, fn, family, frozenset(options), weights_enum, torchvision_builder,
                                    description or (inspect.getdoc(fn) or "").splitlines()[0])
        return fn

    return deco


def _ensure_entries() -> None:
    # Entries register on import; importing here keeps `registry` importable on its own without cycles.
    from . import cpu_family, zoo  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered names, sorted; only one ``family`` when given.

    >>> "cpu_small" in list_models() and "fasterrcnn_resnet50_fpn" in list_models("torchvision")
    True
    """
    _ensure_entries()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name is a ValueError suggesting the closest ones."""
    _ensure_entries()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ValueError(f"model name '{name}' is not registered{hint}")
    return _REGISTRY[name]


def _jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(overrides))
    except TypeError as exc:
        raise ValueError(f"model overrides must be JSON-able (numbers, strings, lists): {exc}") from exc


def _is_path(weights: Any) -> bool:
    if isinstance(weights, Path):
        return True
    if not isinstance(weights, str):
        return False
    return Path(weights).exists() or "/" in weights or "\\" in weights or \
        Path(weights).suffix in {".pt", ".pth", ".bin", ".ckpt"}


def resolve_weights(name: str, weights: str | WeightsEnum) -> WeightsEnum:
    """The torchvision weights enum member that ``weights`` names for entry ``name`` (no download).

    Accepts ``"DEFAULT"``, a member name (``"COCO_V1"``), ``"<Enum>.<member>"`` or the member itself.

    >>> resolve_weights("fasterrcnn_resnet50_fpn", "DEFAULT").name
    'COCO_V1'
    """
    entry = get_entry(name)
    if entry.weights_enum is None:
        raise ValueError(f"model '{name}' has no named weights; pass weights=<path to a local state dict>")
    enum = entry.weights_enum
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum):
            raise ValueError(f"weights {weights} do not belong to model '{name}' (expected {enum.__name__})")
        return weights
    key = str(weights).removeprefix(enum.__name__ + ".")
    try:
        return enum[key]
    except KeyError:
        members = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(f"weights '{weights}' are not known for model '{name}'; known: {members}") from None


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
    """An ``AnchorGenerator`` with one size tuple per level; ``aspect_ratios`` per level or shared."""
    sizes = tuple(tuple(int(s) for s in level) for level in anchor_sizes)
    if len(sizes) != num_levels:
        raise ValueError(f"override 'anchor_sizes' has {len(sizes)} levels but the backbone has {num_levels} "
                         f"feature maps: {list(map(list, sizes))}")
    if aspect_ratios and isinstance(aspect_ratios[0], (list, tuple)):
        ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)
        if len(ratios) != num_levels:
            raise ValueError(f"override 'aspect_ratios' has {len(ratios)} levels but the backbone has "
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
        raise ValueError(f"every level needs the same number of anchors (the RPN head is shared), got "
                         f"{gen.num_anchors_per_location()}")
    model.rpn.anchor_generator = gen
    if counts != set(old.num_anchors_per_location()):
        in_channels = model.backbone.out_channels
        model.rpn.head = RPNHead(in_channels, counts.pop(), conv_depth=conv_depth)


def build_detector(name: str, num_classes: int, weights: str | Path | WeightsEnum | None = None,
                   backbone_weights: str | Path | None = None, *, pretrained: bool = False,
                   **overrides: Any) -> FasterRCNN:
    """Build a registered detector; ``weights=None`` never downloads anything.

    Args:
        name: a name from :func:`list_models`.
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
        raise ValueError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}")
    unknown = sorted(set(overrides) - COMMON_OVERRIDES - entry.options)
    if unknown:
        accepted = ", ".join(sorted(COMMON_OVERRIDES | entry.options))
        raise ValueError(f"model '{name}' does not take override(s) {', '.join(unknown)}; accepted: {accepted}")
    kwargs = _jsonable(overrides)

    if weights is None:
        model = entry.fn(num_classes, backbone_weights=backbone_weights, weights_enum=None,
                         pretrained=pretrained, **kwargs)
    elif _is_path(weights):
        if backbone_weights is not None:
            raise ValueError("pass weights (the whole detector) or backbone_weights, not both: "
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
    """Rebuild the (untrained) architecture a spec describes, low-rank layers included."""
    for key in ("name", "num_classes", "kwargs"):
        if key not in spec:
            raise ValueError(f"{source}: model_spec has no '{key}' (keys: {', '.join(sorted(spec))})")
    model = build_detector(spec["name"], spec["num_classes"], pretrained=bool(spec.get("pretrained", False)),
                           **spec["kwargs"])
    lowrank = spec.get("lowrank")
    if lowrank is not None:
        try:
            from .lowrank import apply_lowrank_spec  # type: ignore[attr-defined]
        except ImportError as exc:
            raise ValueError(f"{source}: model_spec.lowrank is set but detdistill.models.lowrank cannot "
                             f"rebuild it ({exc})") from exc
        model = apply_lowrank_spec(model, lowrank)
        model.detdistill_spec = {**model.detdistill_spec, "lowrank": lowrank}
    return model


def model_spec(model: torch.nn.Module) -> dict[str, Any]:
    """The spec a detector was built with; a clear error for models not built by :func:`build_detector`."""
    spec = getattr(model, "detdistill_spec", None)
    if not isinstance(spec, dict):
        raise ValueError(f"{type(model).__name__} has no detdistill_spec: build it with build_detector()")
    return spec
