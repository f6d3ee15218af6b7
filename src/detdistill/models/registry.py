"""Names → detector builders (timm style): ``register_model``, ``get_entry``, ``list_models``.

This module imports nothing it registers. The entry files (:mod:`.zoo`, :mod:`.cpu_family`) import it and
register their builders on import; :mod:`.factory` imports them, and ``detdistill.models`` imports the factory,
so every entry is registered once anything under ``detdistill.models`` is imported.

Parts of a model spec beyond the architecture (today ``lowrank``, the per-layer ranks of a compressed model)
are rebuilt by *spec hooks*: :mod:`.lowrank` registers ``apply_lowrank_spec`` under ``"lowrank"`` and
:func:`~detdistill.models.factory.build_from_spec` calls it, without the factory importing the low-rank
package (whose checkpoint workflows import the factory).
"""

from __future__ import annotations
from ..errors import ModelError

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.detection import FasterRCNN

Builder = Callable[..., FasterRCNN]
SpecHook = Callable[[nn.Module, Any], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """One registered detector.

    Attributes:
        name: registry name.
        fn: ``fn(num_classes, *, backbone_weights, weights_enum, pretrained, **overrides) -> FasterRCNN``;
            ``pretrained`` says trained weights will be loaded (so BatchNorm is frozen as for a pretrained
            backbone).
        family: ``torchvision``, ``resnet``, ``mobilenet`` or ``cpu``.
        options: overrides this entry takes beyond :data:`~detdistill.models.parts.COMMON_OVERRIDES`.
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
# model_spec key -> fn(model, spec[key]) -> model, applied by build_from_spec when spec[key] is not None.
SPEC_HOOKS: dict[str, SpecHook] = {}


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


def register_spec_hook(key: str, fn: SpecHook) -> None:
    """Have :func:`~detdistill.models.factory.build_from_spec` rebuild ``model_spec[key]`` with ``fn``."""
    if key in SPEC_HOOKS and SPEC_HOOKS[key] is not fn:
        raise ValueError(f"model_spec key '{key}' already has a hook ({SPEC_HOOKS[key].__qualname__})")
    SPEC_HOOKS[key] = fn


def list_models(family: str | None = None) -> list[str]:
    """Registered names, sorted; only one ``family`` when given.

    >>> "cpu_small" in list_models() and "fasterrcnn_resnet50_fpn" in list_models("torchvision")
    True
    """
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name is a ValueError suggesting the closest ones.

    >>> get_entry("cpu_tiny").family
    'cpu'
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(f"model name '{name}' is not registered{hint}")
    return _REGISTRY[name]
