"""The compression report: per-layer and whole-model parameters and FLOPs before and after.

Layer FLOPs need each layer's input and output positions in one eval forward (:func:`layer_io`, by forward
hooks); :func:`~detdistill.models.lowrank.layers.layer_flops` turns them into FLOPs from the layer's shape.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ...utils import atomic_write_text


@dataclass
class LayerReport:
    """One compressed layer: ``shape`` is (C_out, C_in, kh, kw) or (out, in); FLOPs at the report's input."""

    name: str
    kind: str
    shape: list[int]
    ranks: list[int]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    @property
    def ratio(self) -> float:
        return self.params_before / self.params_after


@dataclass
class CompressionReport:
    """Per-layer and total parameters and FLOPs before and after; ratios are before / after.

    ``layers_*`` totals cover the compressed layers; ``model_*`` the whole detector (``sum(p.numel())`` and
    ``count_flops`` of one eval forward at ``image_size``, a multiply-add counted as 2 FLOPs). Layer FLOPs
    count each layer at the spatial size (convs) or the number of RoIs (box head) it saw in one eval forward
    of the original model on a random ``image_size`` image.
    """

    layers: list[LayerReport]
    model_params_before: int
    model_params_after: int
    model_flops_before: int
    model_flops_after: int
    image_size: list[int]
    left_whole: list[str] = field(default_factory=list)

    @property
    def layer_params_before(self) -> int:
        return sum(r.params_before for r in self.layers)

    @property
    def layer_params_after(self) -> int:
        return sum(r.params_after for r in self.layers)

    @property
    def layers_ratio(self) -> float:
        return self.layer_params_before / max(self.layer_params_after, 1)

    @property
    def model_ratio(self) -> float:
        return self.model_params_before / self.model_params_after

    def lowrank_spec(self) -> dict[str, dict[str, Any]]:
        return {r.name: {"kind": r.kind, "ranks": list(r.ranks)} for r in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(r) | {"ratio": r.ratio} for r in self.layers],
                "left_whole": list(self.left_whole), "image_size": list(self.image_size),
                "totals": {"layer_params_before": self.layer_params_before,
                           "layer_params_after": self.layer_params_after, "layers_ratio": self.layers_ratio,
                           "model_params_before": self.model_params_before,
                           "model_params_after": self.model_params_after, "model_ratio": self.model_ratio,
                           "model_flops_before": self.model_flops_before,
                           "model_flops_after": self.model_flops_after}}

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    def format_table(self) -> str:
        lines = ["| layer | kind | shape | ranks | params before → after | MFLOPs before → after | ratio |",
                 "| --- | --- | --- | --- | ---: | ---: | ---: |"]
        for r in self.layers:
            lines.append(f"| {r.name} | {r.kind} | {'×'.join(map(str, r.shape))} | {r.ranks} | "
                         f"{r.params_before:,} → {r.params_after:,} | {r.flops_before / 1e6:.2f} → "
                         f"{r.flops_after / 1e6:.2f} | {r.ratio:.2f}× |")
        lines.append(f"| **compressed layers** | | | | {self.layer_params_before:,} → {self.layer_params_after:,} "
                     f"| {sum(r.flops_before for r in self.layers) / 1e6:.2f} → "
                     f"{sum(r.flops_after for r in self.layers) / 1e6:.2f} | {self.layers_ratio:.2f}× |")
        lines.append(f"| **whole model** | | | | {self.model_params_before:,} → {self.model_params_after:,} | "
                     f"{self.model_flops_before / 1e6:.2f} → {self.model_flops_after / 1e6:.2f} | "
                     f"{self.model_ratio:.2f}× |")
        h, w = self.image_size
        lines.append(f"\n{len(self.layers)} layers compressed, {len(self.left_whole)} candidate layers left whole "
                     f"(low-rank form not smaller, or excluded by ranks); FLOPs at a {h}×{w} input")
        return "\n".join(lines)


def _positions_hook(name: str, seen: dict[str, tuple[int, int]]) -> Callable[..., None]:
    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0]
        if isinstance(module, nn.Conv2d):
            seen[name] = (x.shape[0] * x.shape[-2] * x.shape[-1],
                          output.shape[0] * output.shape[-2] * output.shape[-1])
        else:
            rows = x.shape[:-1].numel()
            seen[name] = (rows, rows)
    return record


def layer_io(model: nn.Module, names: Iterable[str], image: torch.Tensor) -> dict[str, tuple[int, int]]:
    """``name -> (input positions, output positions)``: H×W for convs, rows (RoIs) for Linear layers."""
    seen: dict[str, tuple[int, int]] = {}
    handles = []
    modules = dict(model.named_modules())
    for name in names:
        handles.append(modules[name].register_forward_hook(_positions_hook(name, seen)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model([image])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen

