"""Compression workflows: a low-rank copy of a detector with its report, and checkpoint to checkpoint.

``compress_checkpoint`` reads the teacher with :func:`~detdistill.models.load_detector` and writes the student
with :func:`~detdistill.models.save_detector`, so a compressed checkpoint is an ordinary one whose
``model_spec["lowrank"]`` holds the plan.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..checkpoint import load_detector, read_checkpoint, save_detector
from ..describe import count_flops
from .layers import DEFAULT_EXCLUDE, apply_lowrank_spec, candidate_layers, layer_flops, layer_params
from .ranks import plan_ranks
from .report import CompressionReport, LayerReport, layer_io
from ...errors import ModelError


def _input_size(model: nn.Module, image_size: Sequence[int] | None) -> tuple[int, int]:
    if image_size is not None:
        return int(image_size[0]), int(image_size[-1])
    transform = getattr(model, "transform", None)
    if transform is None:
        raise ValueError("image_size is needed for a model without a GeneralizedRCNNTransform")
    side = int(transform.min_size[-1])
    return side, side


def compress_detector(model: nn.Module, *, ratio: float | None = None, energy: float | None = None,
                      ranks: Mapping[str, Any] | None = None, vbmf: bool = False,
                      exclude: Sequence[str] = DEFAULT_EXCLUDE, image_size: Sequence[int] | None = None,
                      source: str = "ranks") -> tuple[nn.Module, CompressionReport]:
    """A low-rank copy of a trained detector and its :class:`CompressionReport` (``model`` is untouched).

    The copy's ``detdistill_spec["lowrank"]`` holds the plan, so :func:`~detdistill.models.save_detector`
    writes a checkpoint that ``load_detector`` (and so ``train``, ``evaluate``, ``distill``, ``predict``)
    rebuilds. ``image_size`` (default: the model's ``min_size`` square) is where FLOPs are counted.

    Example:
        >>> from detdistill.models import build_detector
        >>> teacher = build_detector("cpu_tiny", 7)
        >>> student, report = compress_detector(teacher, ratio=2)
        >>> report.model_ratio >= 2, report.model_params_after == sum(p.numel() for p in student.parameters())
        (True, True)
    """
    if getattr(model, "detdistill_spec", {}).get("lowrank"):
        raise ModelError("the model is already low-rank (model_spec.lowrank is set); compress the original")
    plan = plan_ranks(model, ratio=ratio, energy=energy, ranks=ranks, vbmf=vbmf, exclude=exclude, source=source)
    h, w = _input_size(model, image_size)
    device = next(model.parameters()).device
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    candidates = candidate_layers(model, exclude)
    io = layer_io(model, plan, image)
    student = apply_lowrank_spec(copy.deepcopy(model), plan)
    if hasattr(model, "detdistill_spec"):
        student.detdistill_spec = {**copy.deepcopy(model.detdistill_spec), "lowrank": copy.deepcopy(plan)}
    rows = []
    for name, p in plan.items():
        layer = candidates[name]
        pos = io.get(name, (0, 0))  # a layer the eval forward never reaches costs nothing there
        rows.append(LayerReport(
            name=name, kind=p["kind"], shape=list(layer.weight.shape), ranks=list(p["ranks"]),
            params_before=layer_params(layer),
            params_after=sum(q.numel() for q in student.get_submodule(name).parameters()),
            flops_before=layer_flops(layer, pos), flops_after=layer_flops(layer, pos, p["kind"], p["ranks"])))
    report = CompressionReport(
        layers=rows, model_params_before=sum(q.numel() for q in model.parameters()),
        model_params_after=sum(q.numel() for q in student.parameters()),
        model_flops_before=count_flops(model, image), model_flops_after=count_flops(student, image),
        image_size=[h, w], left_whole=[n for n in candidates if n not in plan])
    return student, report


def load_ranks_file(path: str | Path) -> dict[str, Any]:
    """Read a ``{layer: [ranks]}`` (or ``{layer: {kind, ranks}}``) JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ranks file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ModelError(f"{path}: expected a non-empty object {{layer name: ranks}}, got {type(data).__name__}")
    return data


def compress_checkpoint(checkpoint: str | Path, out: str | Path, *, ratio: float | None = None,
                        energy: float | None = None, ranks: str | Path | Mapping[str, Any] | None = None,
                        vbmf: bool = False, exclude: Sequence[str] = (),
                        report_json: str | Path | None = None) -> CompressionReport:
    """Compress a trained checkpoint into a low-rank student checkpoint (+ the report as JSON).

    ``exclude`` patterns are added to :data:`DEFAULT_EXCLUDE`. ``report_json`` defaults to
    ``<out stem>.compression.json`` beside ``out``.

    Example::

        report = compress_checkpoint("teacher.pt", "tucker3x.pt", ratio=3)
        student = load_detector("tucker3x.pt")       # train / distill / evaluate it like any checkpoint
    """
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = read_checkpoint(checkpoint)
    if ckpt["model_spec"].get("lowrank"):
        raise ModelError(f"{checkpoint}: model_spec.lowrank is already set; compress the original model")
    model = load_detector(checkpoint)
    source = "ranks"
    if isinstance(ranks, (str, Path)):
        source, ranks = str(ranks), load_ranks_file(ranks)
    student, report = compress_detector(model, ratio=ratio, energy=energy, ranks=ranks, vbmf=vbmf,
                                        exclude=(*DEFAULT_EXCLUDE, *exclude), source=source)
    rule = ({"ratio": ratio} if ratio is not None else {"energy": energy} if energy is not None
            else {"vbmf": True} if vbmf else {"ranks": source})
    meta = {"kind": "compress", "compressed_from": str(checkpoint), "rule": rule,
            "compression": {"model_ratio": report.model_ratio, "layers_ratio": report.layers_ratio,
                            "model_params_before": report.model_params_before,
                            "model_params_after": report.model_params_after},
            "source_metadata": {k: v for k, v in ckpt["metadata"].items() if k in ("kind", "dataset", "step")}}
    save_detector(out, student, ckpt["class_names"], ckpt["category_ids"], meta)
    report.save_json(report_json or out.with_name(out.stem + ".compression.json"))
    return report
