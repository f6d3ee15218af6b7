"""The model zoo: teachers and students as plain torchvision ``FasterRCNN`` modules.

Layout: :mod:`.registry` (names → builders, imports nothing it registers), :mod:`.parts` (what entries are
built from), the entry files :mod:`.zoo` and :mod:`.cpu_family`, :mod:`.factory` (``build_detector``,
``build_from_spec``), :mod:`.checkpoint`, :mod:`.weights`, :mod:`.pairing`, :mod:`.describe`, :mod:`.export`
and the :mod:`.lowrank` package.

>>> from detdistill.models import build_detector, list_models
>>> model = build_detector("cpu_small", num_classes=7)
"""

from . import lowrank  # noqa: F401 - registers the hook that rebuilds model_spec["lowrank"]
from .checkpoint import (
    FORMAT_VERSION,
    checkpoint_payload,
    load_detector,
    read_checkpoint,
    save_detector,
)
from .factory import build_detector, build_from_spec, model_spec, resolve_weights
from .parts import COMMON_OVERRIDES
from .pairing import PairingReport, describe_pairing, feature_strides
from .registry import ModelEntry, get_entry, list_models, register_model
from .weights import WeightsError, fetch_imagenet_mobilenet_v2

__all__ = [
    "COMMON_OVERRIDES", "FORMAT_VERSION", "ModelEntry", "PairingReport", "WeightsError", "build_detector",
    "build_from_spec", "checkpoint_payload", "describe_pairing", "feature_strides",
    "fetch_imagenet_mobilenet_v2", "get_entry", "list_models", "load_detector", "model_spec",
    "read_checkpoint", "register_model", "resolve_weights", "save_detector",
]
