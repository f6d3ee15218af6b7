"""The model zoo: teachers and students as plain torchvision ``FasterRCNN`` modules.

>>> from detdistill.models import build_detector, list_models
>>> model = build_detector("cpu_small", num_classes=7)
"""

from .registry import (
    COMMON_OVERRIDES,
    ModelEntry,
    build_detector,
    build_from_spec,
    get_entry,
    list_models,
    model_spec,
    register_model,
    resolve_weights,
)
from .checkpoint import (
    FORMAT_VERSION,
    checkpoint_payload,
    load_detector,
    read_checkpoint,
    save_detector,
)
from .pairing import PairingReport, describe_pairing, feature_strides
from .weights import WeightsError, fetch_imagenet_mobilenet_v2

__all__ = [
    "COMMON_OVERRIDES", "FORMAT_VERSION", "ModelEntry", "PairingReport", "WeightsError", "build_detector",
    "build_from_spec", "checkpoint_payload", "describe_pairing", "feature_strides",
    "fetch_imagenet_mobilenet_v2", "get_entry", "list_models", "load_detector", "model_spec",
    "read_checkpoint", "register_model", "resolve_weights", "save_detector",
]
