"""Checks on what a checkpoint file claims, before anything is built from it.

A checkpoint is data from disk: a hand-edited or damaged ``model_spec`` (``num_classes: "7"``, a negative
``min_size``) would otherwise fail deep inside torchvision with a traceback. Each check names the file and
the field. :func:`check_checkpoint_fields` is called by :func:`detdistill.models.read_checkpoint`;
:func:`check_finite_weights` by every weight load (``models.weights.check_and_load``), because a NaN weight
does not fail: it evaluates to AP 0 and predicts nothing, exit 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import CheckpointError, DetDistillError

# Builder keyword arguments that count pixels or boxes (the same list the config checks).
POSITIVE_KWARGS = ("min_size", "max_size", "box_detections_per_img", "box_batch_size_per_image",
                   "rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                   "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "size_divisible")


class CheckpointFieldError(DetDistillError):
    """A checkpoint field has a value no detector can be built from; the message names file and field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_numbers(value: Any) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                and v > 0 for v in values)


def check_checkpoint_fields(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointFieldError` for a field of ``ckpt`` that is of the wrong type or out of range."""
    spec = ckpt["model_spec"]

    def bad(field: str, value: Any, expected: str) -> CheckpointFieldError:
        return CheckpointFieldError(f"{path}: checkpoint field '{field}' has value {value!r}; expected {expected} "
                                    "(the file was edited or damaged)")

    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad("model_spec.name", spec.get("name"), "a registry name")
    if not _is_int(spec.get("num_classes")) or spec["num_classes"] < 2:
        raise bad("model_spec.num_classes", spec.get("num_classes"), "an integer >= 2 (background included)")
    kwargs = spec.get("kwargs")
    if not isinstance(kwargs, dict):
        raise bad("model_spec.kwargs", kwargs, "a mapping")
    for key in POSITIVE_KWARGS:
        if key in kwargs and not _positive_numbers(kwargs[key]):
            raise bad(f"model_spec.kwargs.{key}", kwargs[key], "a positive number")
    names = ckpt.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad("class_names", names, "a list of strings")
    ids = ckpt.get("category_ids")
    if ids is not None and (not isinstance(ids, list) or not all(_is_int(i) for i in ids) or len(ids) != len(names)):
        raise bad("category_ids", ids, f"a list of {len(names)} integers")
    meta = ckpt.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad("metadata", meta, "a mapping")
    size = (meta or {}).get("input") or {}
    if isinstance(size, dict):
        for key in ("min_size", "max_size", "size_divisible"):
            if key in size and not _positive_numbers(size[key]):
                raise bad(f"metadata.input.{key}", size[key], "a positive number")


class NonFiniteCheckpointError(CheckpointError):
    """A weights file holds NaN or infinite values; the message counts the tensors and names the first."""


def check_finite_weights(state: Mapping[str, Any], source: str | Path) -> None:
    """Raise :class:`NonFiniteCheckpointError` when a floating-point tensor of ``state`` holds NaN or inf.

    One min/max pass per tensor (milliseconds for a ResNet-50-FPN: ``benchmarks/nonfinite_check.py``), done
    once where weights are loaded.
    """
    bad: list[tuple[str, int, int]] = []
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
            # min and max are finite iff every value is (NaN propagates through both): one reduction pass,
            # ~50x faster than materialising isfinite's mask, which only a flagged tensor needs for its count.
            if not bool(torch.isfinite(torch.stack(torch.aminmax(value.detach()))).all()):
                bad.append((key, int((~torch.isfinite(value)).sum()), value.numel()))
    if bad:
        key, n, total = bad[0]
        floats = sum(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state.values())
        raise NonFiniteCheckpointError(
            f"{source}: {len(bad)} of {floats} weight tensors hold NaN or infinite values (first: '{key}', {n:,} of "
            f"{total:,} values); the weights are damaged or come from a run that diverged: use an earlier "
            "checkpoint (the run folder's best.pt) or retrain (a lower train.lr)")
