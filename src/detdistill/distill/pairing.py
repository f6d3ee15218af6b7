"""Teacher/student pairing: the checks that they can be distilled as configured, the adaptation layers
between paired feature levels, and the teacher's outputs on the student's own samples (anchors, RoIs).

Every check raises a :class:`~detdistill.errors.PairingError` that says what to change; they run when the
Distiller is built, before any data is read, except the per-batch anchor comparison of :func:`rpn_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers

from ..errors import PairingError
from ..typed_config import check_ranges
from .adaptation import make_adaptation
from .config import DistillConfig
from .samples import RoIStep, RPNStep
from .teacher import TeacherOutputs
from .terms import FeaturePair, RCNSamples, RPNSamples, TermSpec

RPN_OFF = "distill.terms.rpn_soft.enabled=false distill.terms.rpn_bounded.enabled=false"


@dataclass
class HintPair:
    teacher_level: str
    student_level: str
    stride: int | None
    teacher_channels: int
    student_channels: int
    adapter_params: int


# ------------------------------------------------------------------------------------------- checks
def check_pairing(teacher: FasterRCNN, student: FasterRCNN, config: DistillConfig, reads: set[str]) -> None:
    """The config's ranges, the class lists (when an RCN term is on) and the two image transforms."""
    # A config built in Python has not been through load_config: the same ranges and choices, named.
    check_ranges(config, "distill.")
    t_cls = teacher.roi_heads.box_predictor.cls_score.out_features
    s_cls = student.roi_heads.box_predictor.cls_score.out_features
    if "rcn" in reads and t_cls != s_cls:
        raise PairingError(f"teacher scores {t_cls} classes and the student {s_cls} (background included): "
                           "the RCN terms need the same class list")
    tt, st = teacher.transform, student.transform
    for attr in ("image_mean", "image_std", "size_divisible", "min_size", "max_size"):
        a, b = getattr(tt, attr), getattr(st, attr)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            raise PairingError(
                f"image transforms differ in {attr} (teacher {a}, student {b}): the teacher sees the student's "
                f"preprocessed images, so build both with the same {attr}")


def check_anchor_settings(teacher: FasterRCNN, student: FasterRCNN, size: tuple[int, int]) -> None:
    """The RPN terms pair anchors one to one: same strides, anchor sizes, aspect ratios and box coder."""
    from ..models.pairing import describe_pairing

    report = describe_pairing(teacher, student, size)
    bad = [c for c in (report.strides, report.anchor_sizes, report.aspect_ratios, report.rpn_box_coder) if not c.ok]
    if bad:
        what = "; ".join(f"{c.name}: teacher {c.teacher}, student {c.student}" for c in bad)
        raise PairingError(
            f"the RPN terms need teacher and student anchors to pair one to one, but they differ ({what}). "
            f"Turn the RPN terms off with {RPN_OFF} (the RCN and hint "
            "terms work across architectures), or build the student with the teacher's strides and anchors")


def init_from_teacher(teacher: FasterRCNN, student: FasterRCNN) -> str:
    """Copy every teacher tensor whose name and shape the student shares (FGD's homogeneous start)."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    shared = [k for k, v in s_state.items() if k in t_state and t_state[k].shape == v.shape]
    with torch.no_grad():
        for key in shared:
            s_state[key].copy_(t_state[key])
    params = sum(s_state[k].numel() for k in shared)
    total = sum(v.numel() for v in s_state.values())
    return (f"on: {len(shared)} of {len(s_state)} tensors ({params} of {total} values) copied where the "
            "names and shapes match")


# ---------------------------------------------------------------------------------- feature pairs
def _feature_info(model: FasterRCNN, image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """``{level: (stride, channels)}`` measured on a dummy input."""
    from ..models.pairing import feature_levels

    return {lv.key: (lv.stride, lv.channels) for lv in feature_levels(model, image_size)}


def _level_pairs(config: DistillConfig, t_info: dict, s_info: dict, notes: list[str]) -> list[tuple[str, str]]:
    """(teacher level, student level) pairs: named by ``hint_levels``/``guided_levels``, else by shared stride."""
    if config.hint_levels is None and config.guided_levels is None:
        # One pair per shared stride; where a model has several levels at one stride (torchvision's
        # MobileNetV3-FPN: '0' and '1' are both stride 32) the deepest, last-listed one is used.
        t_by_stride = {stride: key for key, (stride, _) in t_info.items()}
        s_by_stride = {stride: key for key, (stride, _) in s_info.items()}
        shared = [st for st in t_by_stride if st in s_by_stride]
        pairs = [(t_by_stride[st], s_by_stride[st]) for st in shared]
        for who, info, chosen in (("teacher", t_info, t_by_stride), ("student", s_info, s_by_stride)):
            shadowed = [k for k, (st, _) in info.items() if st in shared and chosen[st] != k]
            if shadowed:
                notes.append(f"{who} levels {shadowed} share a stride with a deeper level and are "
                             "left out of the hints (choose with distill.hint_levels/guided_levels)")
        if not pairs:
            raise PairingError(f"no teacher and student feature levels share a stride (teacher "
                               f"{ {k: s for k, (s, _) in t_info.items()} }, student "
                               f"{ {k: s for k, (s, _) in s_info.items()} }); name them with "
                               "distill.hint_levels and distill.guided_levels, or switch the feature terms off")
        return pairs
    hints, guided = config.hint_levels or [], config.guided_levels or []
    # A wrong name first: it is the likelier mistake, and a length message would hide it.
    for key in hints:
        if key not in t_info:
            raise PairingError(f"distill.hint_levels: teacher has no level {key!r}; it has {list(t_info)}")
    for key in guided:
        if key not in s_info:
            raise PairingError(f"distill.guided_levels: student has no level {key!r}; it has {list(s_info)}")
    if len(hints) != len(guided) or not hints:
        raise PairingError(f"distill.hint_levels {hints} and distill.guided_levels {guided} must be "
                           "non-empty lists of the same length (one student level per teacher level)")
    return list(zip(hints, guided))


@dataclass
class FeaturePairing:
    """The paired feature levels and which adaptation layers (in the Distiller's ``adapters``) each term uses.

    Feature terms share one adapter per pair, except a term that needs another start (PKD: a random one) gets
    its own set, keyed ``<init>_<level>``; the set of ``distill.adapter_init`` keeps the bare level keys."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    strides: dict[str, int] = field(default_factory=dict)
    prefix: dict[str, str] = field(default_factory=dict)
    """Per feature term, the key prefix of its adapter set."""
    reports: list[HintPair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, teacher: FasterRCNN, student: FasterRCNN, size: tuple[int, int], config: DistillConfig,
              terms: list[TermSpec], adapters: nn.ModuleDict) -> "FeaturePairing":
        """Pair the levels and add their adaptation layers to ``adapters`` (in pair order, then start order)."""
        out = cls()
        t_info, s_info = _feature_info(teacher, size), _feature_info(student, size)
        pairs = _level_pairs(config, t_info, s_info, out.notes)
        feature_terms = [spec for spec in terms if "features" in spec.reads]
        inits = sorted({spec.adapter_init or config.adapter_init for spec in feature_terms},
                       key=lambda i: i != config.adapter_init)
        for spec in feature_terms:
            init = spec.adapter_init or config.adapter_init
            out.prefix[spec.name] = "" if init == config.adapter_init else f"{init}_"
        for t_key, s_key in pairs:
            (ts, tc), (ss, sc) = t_info[t_key], s_info[s_key]
            if ts != ss:
                raise PairingError(f"hint level {t_key!r} (stride {ts}) and guided level {s_key!r} (stride {ss}) "
                                   "have different spatial sizes; no 1x1 adaptation can match them")
            params = 0
            for init in inits:
                try:
                    adapter = make_adaptation(sc, tc, "conv", config.adaptation, init)
                except PairingError as exc:  # which pair: the message names the channels, not the levels
                    raise PairingError(f"level {s_key!r} -> {t_key!r}: {exc}") from exc
                prefix = "" if init == config.adapter_init else f"{init}_"
                adapters[prefix + s_key] = adapter
                params += sum(p.numel() for p in adapter.parameters())
            out.pairs.append((t_key, s_key))
            out.strides[s_key] = ts
            out.reports.append(HintPair(t_key, s_key, ts, tc, sc, params))
        if len(inits) > 1:
            out.notes.append(f"adapter sets per pair: {inits} (a term's own start, e.g. PKD's random one)")
        return out

    def feature_pairs(self, spec: TermSpec, adapters: nn.ModuleDict, s_feats: dict[str, Tensor],
                      t_feats: dict[str, Tensor], adapted: dict[str, Tensor], anchors: list[Tensor] | None,
                      anchors_per_level: list[int]) -> list[FeaturePair]:
        """``spec``'s feature pairs; ``adapted`` keeps each adapter's output for the step (terms share it)."""
        prefix = self.prefix[spec.name]
        level_index = {key: i for i, key in enumerate(s_feats)}
        pairs = []
        for t_key, s_key in self.pairs:
            name = prefix + s_key
            if name not in adapted:
                adapted[name] = adapters[name](s_feats[s_key])
            level_anchors = None
            if anchors is not None:
                i = level_index[s_key]
                start = sum(anchors_per_level[:i])
                _, _, h, w = s_feats[s_key].shape
                level_anchors = [a[start:start + anchors_per_level[i]].reshape(h, w, -1, 4) for a in anchors]
            pairs.append(FeaturePair(t_key, s_key, self.strides[s_key], adapted[name], t_feats[t_key],
                                     level_anchors))
        return pairs


def pair_subset(pair: FeaturePair, keep: list[int]) -> FeaturePair:
    """``pair`` on the batch images ``keep`` only."""
    index = torch.tensor(keep, device=pair.adapted.device)
    anchors = [pair.anchors[i] for i in keep] if pair.anchors is not None else None
    return replace(pair, adapted=pair.adapted.index_select(0, index), teacher=pair.teacher.index_select(0, index),
                   anchors=anchors)


# ---------------------------------------------------------------------- the teacher on the student's samples
def rpn_pair(teacher: FasterRCNN, image_list: ImageList, rpn: RPNStep, teacher_out: TeacherOutputs) -> RPNSamples:
    """Both RPN heads on the student's anchors; the teacher's anchors for this batch must be the same."""
    with torch.no_grad():
        t_anchors = teacher.rpn.anchor_generator(image_list, list(teacher_out.features.values()))
        t_objectness, t_deltas = concat_box_prediction_layers(teacher_out.objectness, teacher_out.deltas)
    if len(t_anchors) != len(rpn.anchors) or any(
            a.shape != b.shape or not torch.equal(a, b) for a, b in zip(rpn.anchors, t_anchors)):
        raise PairingError(f"teacher and student generated different anchors for this batch; the RPN terms "
                           f"cannot pair (set {RPN_OFF})")
    return RPNSamples(rpn.objectness, rpn.deltas, t_objectness.flatten(), t_deltas, rpn.sampled, rpn.positive,
                      rpn.regression_targets, rpn.num_sampled)


def rcn_pair(teacher: FasterRCNN, image_list: ImageList, t_feats: dict[str, Tensor], roi: RoIStep,
             supervised: list[bool], class_weights: Tensor) -> RCNSamples:
    """Both RoI heads on the student's pooled RoIs (the teacher's pooled from its own features); on RoIs of
    images without targets the target class (DKD's) is the teacher's."""
    assert roi.class_logits is not None and roi.box_regression is not None and roi.row_images is not None
    t_heads = teacher.roi_heads
    with torch.no_grad():
        t_box = t_heads.box_head(t_heads.box_roi_pool(t_feats, roi.rois, image_list.image_sizes))
        t_logits, t_regression = t_heads.box_predictor(t_box)
    labels = torch.cat(roi.labels, dim=0)
    if not all(supervised):
        rows = ~torch.tensor(supervised, device=labels.device)[roi.row_images]
        labels[rows] = t_logits[rows].argmax(dim=1)
    return RCNSamples(roi.class_logits, roi.box_regression, t_logits, t_regression, labels,
                      torch.cat(roi.regression_targets, dim=0), class_weights)
