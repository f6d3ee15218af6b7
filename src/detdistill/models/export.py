"""Export a checkpoint: a plain torchvision state dict, or an ONNX file (TorchScript-based exporter).

torch 2.14's default ONNX exporter is the dynamo one; torchvision's Faster R-CNN (data-dependent shapes in
the RPN, NMS, RoI sampling) exports with the TorchScript-based one, ``torch.onnx.export(..., dynamo=False)``.

Measured (torch 2.14.1, onnxruntime 1.31.1, cpu_tiny exported at 160×160): boxes match PyTorch to 3e-5 px
at 100×180, 224×176, 140×150, 96×160; at 200×120 and 120×200 (resize factor exactly 0.8) the scores differ
by ~3e-3, enough to reorder near-tied detections. Not yet explained; check a deployment's sizes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models import detection

from ..utils import atomic_output, atomic_torch_save
from .checkpoint import load_detector, read_checkpoint
from .registry import get_entry
from ..errors import ModelError

ONNX_INPUT = "image"
# torchvision returns {"boxes", "labels", "scores"}; the tracer flattens the dict in that order.
ONNX_OUTPUTS = ("boxes", "labels", "scores")


def export_torchvision_state_dict(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the checkpoint's weights as a plain state dict that loads strictly into the torchvision builder.

    Only for entries whose architecture is torchvision's own (``fasterrcnn_*``); the file loads with::

        model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=N)
        model.load_state_dict(torch.load(out, weights_only=True))
    """
    ckpt = read_checkpoint(checkpoint)
    spec = ckpt["model_spec"]
    entry = get_entry(spec["name"])
    if entry.torchvision_builder is None or spec.get("lowrank") is not None:
        raise ModelError(f"{checkpoint}: model '{spec['name']}' is not a torchvision architecture; "
                         f"export it with --format onnx, or load it with detdistill.models.load_detector")
    builder = getattr(detection, entry.torchvision_builder)
    reference = builder(weights=None, weights_backbone=None, num_classes=spec["num_classes"]).state_dict()
    state = dict(ckpt["state_dict"])
    # A model fine-tuned from trained weights has FrozenBatchNorm2d, which keeps no update counter; the
    # builder's from-scratch BatchNorm2d expects one.
    for key, value in reference.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    shapes = sorted(k for k in reference if k in state and state[k].shape != reference[k].shape)
    if missing or unexpected or shapes:
        raise ModelError(f"{checkpoint}: weights do not fit torchvision's {entry.torchvision_builder} "
                         f"(overrides such as anchor_sizes change the architecture): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}")
    return atomic_torch_save(state, out)


def export_onnx(model: nn.Module, path: str | Path, sample_size: tuple[int, int] = (160, 160),
                opset: int = 17) -> Path:
    """Export ``model`` (a torchvision detector) to ONNX: one C×H×W float image in [0, 1] with dynamic H, W;
    outputs ``boxes`` (N×4, input-image pixels), ``labels`` (N, int64) and ``scores`` (N), in that order.

    Example::

        export_onnx(load_detector("best.pt"), "best.onnx", sample_size=(160, 160))
        # onnxruntime.InferenceSession("best.onnx").run(None, {"image": img.numpy()})
    """
    was_training = model.training
    model.eval()
    sample = torch.rand(3, *sample_size, generator=torch.Generator().manual_seed(0))
    try:
        with atomic_output(path) as tmp, warnings.catch_warnings():
            # The tracer warns on every Python-int conversion in torchvision's transform; they are expected.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, ([sample],), str(tmp), dynamo=False, opset_version=opset,
                input_names=[ONNX_INPUT], output_names=list(ONNX_OUTPUTS),
                dynamic_axes={ONNX_INPUT: {1: "height", 2: "width"}, **{o: {0: "detections"} for o in ONNX_OUTPUTS}},
            )
    finally:
        model.train(was_training)
    return Path(path)


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx",
                      sample_size: tuple[int, int] | None = None, opset: int = 17) -> Path:
    """``detdistill export``: ``fmt`` is ``torchvision`` (plain state dict) or ``onnx``.

    The ONNX sample size defaults to the checkpoint's training input (``metadata.input``).
    """
    if fmt == "torchvision":
        return export_torchvision_state_dict(checkpoint, out)
    if fmt != "onnx":
        raise ModelError(f"export format '{fmt}' is not supported; use torchvision or onnx")
    if sample_size is None:
        size = read_checkpoint(checkpoint)["metadata"].get("input", {})
        side = int(size["min_size"][0]) if size.get("min_size") else 160
        sample_size = (side, side)
    return export_onnx(load_detector(checkpoint), out, sample_size, opset)
