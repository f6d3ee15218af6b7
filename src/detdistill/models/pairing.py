"""Which parts of a teacher and a student pair anchor by anchor, measured rather than read from names.

Two detectors *pair* when they share the feature strides, the anchors at each stride, the RPN and RoI box
coder weights and the image transform: then the teacher's RPN outputs and RoI targets line up one to one with
the student's, which the paper's soft RPN/RCN losses need. Strides are measured by running the backbone on a
dummy input: FPN key ``'0'`` is stride 4 in R50-FPN and stride 32 in torchvision's MobileNetV3-FPN (whose two
returned blocks are both stride 32), stride 16 in ``mobilenet_v2_fpn``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Check:
    """One compared property: the teacher's value, the student's, and whether they agree."""

    name: str
    teacher: Any
    student: Any
    ok: bool


@dataclass(frozen=True)
class Level:
    """One feature map: its backbone key, measured stride and channel count."""

    key: str
    stride: int
    channels: int


@dataclass
class PairingReport:
    """What pairs between a teacher and a student (``str(report)`` is a table).

    ``level_pairs`` maps teacher level keys to the student's level at the same stride (every shared stride,
    even when other checks fail: hint learning only needs equal strides).
    """

    pairs: bool
    strides: Check
    anchor_sizes: Check
    aspect_ratios: Check
    rpn_box_coder: Check
    roi_box_coder: Check
    transform: dict[str, Check]
    teacher_levels: list[Level]
    student_levels: list[Level]
    level_pairs: dict[str, str] = field(default_factory=dict)

    def checks(self) -> list[Check]:
        return [self.strides, self.anchor_sizes, self.aspect_ratios, self.rpn_box_coder, self.roi_box_coder,
                *self.transform.values()]

    def __str__(self) -> str:
        rows = [(c.name, _fmt(c.teacher), _fmt(c.student), "yes" if c.ok else "NO") for c in self.checks()]
        rows += [(f"level {lv.key}", f"stride {lv.stride}, {lv.channels} ch",
                  _level_text(self.student_levels, self.level_pairs.get(lv.key)), "") for lv in self.teacher_levels]
        header = ("check", "teacher", "student", "pairs")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"teacher and student {'PAIR' if self.pairs else 'do NOT pair'} anchor by anchor")
        return "\n".join(lines)


def _level_text(levels: list[Level], key: str | None) -> str:
    for lv in levels:
        if lv.key == key:
            return f"{lv.key}: stride {lv.stride}, {lv.channels} ch"
    return "(no level at this stride)"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def feature_levels(model: nn.Module, image_size: tuple[int, int] = (256, 256)) -> list[Level]:
    """Run ``model.backbone`` on zeros of ``image_size`` and measure each level's stride and channels."""
    h, w = image_size
    was_training = model.backbone.training
    model.backbone.eval()
    try:
        with torch.no_grad():
            param = next(model.backbone.parameters())
            feats = model.backbone(torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype))
    finally:
        model.backbone.train(was_training)
    levels = []
    for key, f in feats.items():
        fh, fw = f.shape[-2:]
        # Ceil-mode convolutions make a map ceil(H / s) tall, so H / fh underestimates s (800 px gives a
        # 13-pixel pool map: 61.5); backbone strides are powers of two, so round to the nearest one.
        stride = 2 ** round(math.log2(max(h / fh, w / fw)))
        levels.append(Level(str(key), int(stride), int(f.shape[1])))
    return levels


def feature_strides(model: nn.Module, image_size: tuple[int, int] = (256, 256)) -> dict[str, int]:
    """Measured stride of each backbone output, keyed as the backbone names them.

    >>> from detdistill.models import build_detector
    >>> feature_strides(build_detector("cpu_tiny", 3))
    {'0': 8, '1': 16, 'pool': 32}
    """
    return {lv.key: lv.stride for lv in feature_levels(model, image_size)}


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


def _anchors_by_stride(model: nn.Module, levels: list[Level]) -> tuple[dict[int, tuple], dict[int, tuple]]:
    gen = model.rpn.anchor_generator
    sizes = {lv.stride: tuple(int(s) for s in gen.sizes[i]) for i, lv in enumerate(levels) if i < len(gen.sizes)}
    ratios = {lv.stride: _floats(gen.aspect_ratios[i]) for i, lv in enumerate(levels) if i < len(gen.aspect_ratios)}
    return sizes, ratios


def describe_pairing(teacher: nn.Module, student: nn.Module,
                     image_size: tuple[int, int] = (256, 256)) -> PairingReport:
    """Compare strides, anchors, box coders and transforms of two torchvision Faster R-CNNs.

    >>> from detdistill.models import build_detector
    >>> describe_pairing(build_detector("cpu_base", 7), build_detector("cpu_tiny", 7)).pairs
    True
    """
    t_levels, s_levels = feature_levels(teacher, image_size), feature_levels(student, image_size)
    t_strides, s_strides = [lv.stride for lv in t_levels], [lv.stride for lv in s_levels]
    strides = Check("strides", t_strides, s_strides, sorted(t_strides) == sorted(s_strides))
    t_sizes, t_ratios = _anchors_by_stride(teacher, t_levels)
    s_sizes, s_ratios = _anchors_by_stride(student, s_levels)
    anchor_sizes = Check("anchor sizes", t_sizes, s_sizes, t_sizes == s_sizes)
    aspect = Check("aspect ratios", t_ratios, s_ratios, t_ratios == s_ratios)
    t_rpn, s_rpn = _floats(teacher.rpn.box_coder.weights), _floats(student.rpn.box_coder.weights)
    t_roi, s_roi = _floats(teacher.roi_heads.box_coder.weights), _floats(student.roi_heads.box_coder.weights)
    rpn_coder = Check("rpn box coder", t_rpn, s_rpn, t_rpn == s_rpn)
    roi_coder = Check("roi box coder", t_roi, s_roi, t_roi == s_roi)
    tt, st = teacher.transform, student.transform
    transform = {}
    for attr, norm in (("min_size", lambda v: tuple(int(x) for x in v)), ("max_size", int),
                       ("image_mean", _floats), ("image_std", _floats), ("size_divisible", int)):
        a, b = norm(getattr(tt, attr)), norm(getattr(st, attr))
        transform[attr] = Check(attr, a, b, a == b)
    by_stride = {lv.stride: lv.key for lv in s_levels}
    level_pairs = {lv.key: by_stride[lv.stride] for lv in t_levels if lv.stride in by_stride}
    report = PairingReport(False, strides, anchor_sizes, aspect, rpn_coder, roi_coder, transform,
                           t_levels, s_levels, level_pairs)
    report.pairs = all(c.ok for c in report.checks())
    return report
