"""Self-describing checkpoints: tensors + a JSON-able model spec, loadable with ``weights_only=True``.

Layout (format version 1)::

    {"format_version": 1,
     "model_spec": {"name", "num_classes", "kwargs", "lowrank", "pretrained"},
     "state_dict": {...tensors...},
     "class_names": [K names], "category_ids": [K source ids],
     "metadata": {"input": {"min_size", "max_size"}, "versions": {...}, ...caller's provenance}}

Other keys (the trainer's ``training_state``) may be added to the same dict; readers ignore them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN

from .. import __version__
from ..utils import atomic_torch_save, safe_torch_load
from .factory import build_from_spec, model_spec
from .weights import check_and_load
from ..errors import CheckpointError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_spec", "state_dict", "class_names")


def checkpoint_payload(model: nn.Module, class_names: Sequence[str], category_ids: Sequence[int] | None = None,
                       metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict for ``model`` (built by ``build_detector``); add keys, then save it atomically.

    ``category_ids`` default to 1..K. ``metadata`` must be JSON-able (provenance: config, dataset, step).

    Example::

        payload = checkpoint_payload(model, dataset.class_names, dataset.category_ids, {"step": 100})
        payload["training_state"] = {...}
        atomic_torch_save(payload, "run/last.pt")
    """
    spec = copy.deepcopy(model_spec(model))
    names = [str(n) for n in class_names]
    if len(names) != spec["num_classes"] - 1:
        raise CheckpointError(f"class_names has {len(names)} names but the model has {spec['num_classes']} classes "
                              f"(background included): expected {spec['num_classes'] - 1} names")
    ids = list(range(1, len(names) + 1)) if category_ids is None else [int(i) for i in category_ids]
    if len(ids) != len(names):
        raise CheckpointError(f"category_ids has {len(ids)} ids for {len(names)} class names")
    meta: dict[str, Any] = {
        "input": _input_size(model),
        "versions": {"detdistill": __version__, "torch": str(torch.__version__),
                     "torchvision": str(torchvision.__version__)},
    }
    meta.update(metadata or {})
    try:
        # Round-trip through JSON so only plain types reach the pickle (weights_only=True refuses others).
        meta = json.loads(json.dumps(meta))
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata must be JSON-able: {exc}") from exc
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return {"format_version": FORMAT_VERSION, "model_spec": spec, "state_dict": state, "class_names": names,
            "category_ids": ids, "metadata": meta}


def _input_size(model: nn.Module) -> dict[str, Any]:
    transform = getattr(model, "transform", None)
    if transform is None:
        return {}
    return {"min_size": list(transform.min_size), "max_size": int(transform.max_size),
            "size_divisible": int(transform.size_divisible)}


def save_detector(path: str | Path, model: nn.Module, class_names: Sequence[str],
                  category_ids: Sequence[int] | None = None, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a self-describing checkpoint, atomically (a crash leaves the old file or the new)."""
    return atomic_torch_save(checkpoint_payload(model, class_names, category_ids, metadata), path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict (``weights_only=True``); errors name the file and the key.

    Missing optional keys get defaults (``category_ids`` 1..K, ``metadata`` {}); unknown keys are kept.
    """
    path = Path(path)
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a detdistill checkpoint (a {type(ckpt).__name__}, expected a dict)")
    for key in REQUIRED_KEYS:
        if key not in ckpt:
            hint = " (a plain state dict? pass it as weights= to build_detector)" if key == "format_version" else ""
            raise CheckpointError(f"{path}: checkpoint has no '{key}'{hint}")
    version = ckpt["format_version"]
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is not supported (this detdistill reads 1.."
                              f"{FORMAT_VERSION})")
    spec = ckpt["model_spec"]
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path}: model_spec must be a dict, got {type(spec).__name__}")
    for key in ("name", "num_classes", "kwargs"):
        if key not in spec:
            raise CheckpointError(f"{path}: model_spec has no '{key}'")
    from ..checks import check_checkpoint_fields  # issue 21: types and ranges of the spec's fields

    check_checkpoint_fields(ckpt, path)
    if len(ckpt["class_names"]) != spec["num_classes"] - 1:
        raise CheckpointError(f"{path}: class_names has {len(ckpt['class_names'])} names but model_spec.num_classes "
                              f"is {spec['num_classes']} (background included)")
    ckpt.setdefault("category_ids", list(range(1, len(ckpt["class_names"]) + 1)))
    ckpt.setdefault("metadata", {})
    return ckpt


def load_detector(path: str | Path, map_location: str | torch.device = "cpu") -> FasterRCNN:
    """Rebuild the detector a checkpoint describes and load its weights strictly; returned in eval mode.

    Needs nothing but the file: CPU-scale, GPU-scale and low-rank models alike. Class names and metadata:
    :func:`read_checkpoint`.

    Example::

        model = load_detector("runs/teacher/best.pt")
        names = read_checkpoint("runs/teacher/best.pt")["class_names"]
    """
    return detector_from_checkpoint(read_checkpoint(path), path).to(map_location)


def detector_from_checkpoint(ckpt: dict[str, Any], source: str | Path) -> FasterRCNN:
    """The detector of an already read checkpoint (:func:`read_checkpoint`), weights loaded strictly, in eval
    mode: for callers that also need the checkpoint's other fields without reading the file twice."""
    model = build_from_spec(ckpt["model_spec"], source=source)
    check_and_load(model, ckpt["state_dict"], source, what=f"'{ckpt['model_spec']['name']}' detector")
    model.detdistill_spec = copy.deepcopy(ckpt["model_spec"])
    return model.eval()
