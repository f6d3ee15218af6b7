"""Student candidates for a teacher, generated rather than hand-listed.

Two sources:

- **zoo families** (:data:`FAMILIES`): the CPU-scale family and MobileNetV2-FPN, each over a grid of the
  lean knobs that decide a small detector's time (the demo found that the RoI heads, NMS over the proposals
  and the detections dominate it): backbone width multiplier, FPN channels, box-head width and test-time
  proposals and detections. Every member is built with the teacher's transform, anchors and (where the family
  takes them) feature strides, and kept only if it then *measurably* pairs with the teacher anchor by anchor
  (:func:`~detdistill.models.pairing.describe_pairing`) — so a family whose strides cannot match is left out.
- **the stride-8 form** (``mobilenet_v2_050_fpn_s8`` over the same knobs) where the teacher's training data
  has small objects (:func:`small_object_share`): its own anchors and strides, the teacher's transform; it
  pairs with a stride-16 teacher through the feature terms (at the strides both have), so it is kept only
  when the config's distillation terms accept it (a :class:`~detdistill.distill.Distiller` builds).
- **low-rank compressions of the teacher** (Tucker-2 / SVD, :mod:`detdistill.models.lowrank`) at several
  whole-model parameter ratios, each with the same test-time tiers; they start from the teacher's weights.

The list depends only on the teacher (its spec, weights and class count): the grids are fixed, the build is
seeded and the rank plan is a deterministic function of the weights.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..models import build_detector, describe_pairing
from ..models.describe import count_flops
from ..utils import seed_everything

# Test-time tiers, as shares of the teacher's RPN pre-NMS / post-NMS proposals and detections per image. The
# last is the demo's lean cpu_small (40 / 20 / 20 against the cpu_base teacher's 300 / 150 / 100).
TEST_TIERS: tuple[tuple[str, float, float], ...] = (("full", 1.0, 1.0), ("third", 1 / 3, 0.4), ("lean", 2 / 15, 0.2))
# Training-time sampling halved for every zoo student (the demo's lean recipe: cheaper steps, no worse after
# 150 steps). The low-rank students keep the teacher's.
TRAIN_SAMPLING_SHARE = 0.5


@dataclass(frozen=True)
class Family:
    """A zoo family's grid: backbone widths by multiplier, FPN channels and box-head widths.

    ``entry`` is the registered builder the overrides go to; ``width_key`` its backbone-width option
    (``widths`` take a tuple scaled from ``base_widths``, ``width_mult`` a float).
    """

    name: str
    entry: str
    width_key: str
    multipliers: tuple[float, ...]
    fpn_channels: tuple[int, ...]
    heads: tuple[int, ...]
    base_widths: tuple[int, ...] = ()
    takes_strides: bool = False
    pairs: str = "anchors"
    """``anchors``: members take the teacher's anchors and pair anchor by anchor; ``features``: members keep
    their own anchors and strides and pair through the distillation terms (checked by building a Distiller)."""
    small_objects_only: bool = False
    """Generated only where the training data has small objects."""

    def width_value(self, mult: float) -> Any:
        if self.width_key == "widths":
            return [max(4, int(round(w * mult))) for w in self.base_widths]
        return float(mult)


FAMILIES: tuple[Family, ...] = (
    # cpu_base's widths (32, 64, 128) scaled: 0.5 is cpu_small, 0.25 cpu_tiny's (8, 16, 32).
    Family("cpu", "cpu_small", "widths", (0.25, 0.5, 0.75), (32, 64), (64, 128), base_widths=(32, 64, 128),
           takes_strides=True),
    Family("mobilenet_v2", "mobilenet_v2_050_fpn", "width_mult", (0.35, 0.5, 0.75), (32, 64), (128, 256)),
    # The BCCD configs' student (strides 8/16/32): a stride-8 level for objects a stride-16 map barely resolves.
    Family("mobilenet_v2_s8", "mobilenet_v2_050_fpn_s8", "width_mult", (0.35, 0.5, 0.75), (32, 64), (128, 256),
           pairs="features", small_objects_only=True),
)
SMALL_SIDE_STRIDES = 3
"""A box is *small* for a teacher when its side (square root of its area, at the teacher's input scale) is
under this many of the teacher's finest feature strides: a stride-16 map then has fewer than 3 cells across
it (BCCD's platelets, 28-51 px at 448 px, against the MobileNetV2 teacher's stride 16)."""
LOWRANK_RATIOS: tuple[float, ...] = (2.0, 3.0, 4.0)


@dataclass
class Candidate:
    """One student: how to build it, and its measured size.

    ``overrides`` go to ``build_detector(entry, ...)`` for zoo students; a low-rank student is built from the
    teacher (``lowrank_ratio``) and carries its test-time knobs in ``overrides`` too. ``compression`` is the
    rank-based whole-model parameter ratio (teacher / student) of a low-rank student, None otherwise.
    """

    id: str
    kind: str  # "zoo" or "lowrank"
    family: str
    entry: str
    overrides: dict[str, Any]
    params: int = 0
    gflops: float = 0.0
    lowrank_ratio: float | None = None
    compression: float | None = None
    knobs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Candidate":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _tier_knobs(teacher: nn.Module, share_proposals: float, share_dets: float) -> dict[str, int]:
    pre = int(teacher.rpn._pre_nms_top_n["testing"])
    post = int(teacher.rpn._post_nms_top_n["testing"])
    dets = int(teacher.roi_heads.detections_per_img)
    return {"rpn_pre_nms_top_n_test": max(1, round(pre * share_proposals)),
            "rpn_post_nms_top_n_test": max(1, round(post * share_proposals)),
            "box_detections_per_img": max(1, round(dets * share_dets))}


def pairing_overrides(teacher: nn.Module, family: Family) -> dict[str, Any]:
    """The overrides that give a family member the teacher's transform, anchors and (if it takes them) strides."""
    from ..models.pairing import feature_levels

    t = teacher.transform
    gen = teacher.rpn.anchor_generator
    out: dict[str, Any] = {
        "min_size": int(t.min_size[-1]), "max_size": int(t.max_size),
        "image_mean": [float(v) for v in t.image_mean], "image_std": [float(v) for v in t.image_std]}
    if family.pairs == "features":  # its own anchors and strides
        return out
    out["anchor_sizes"] = [[int(s) for s in level] for level in gen.sizes]
    out["aspect_ratios"] = [[float(r) for r in level] for level in gen.aspect_ratios]
    if family.takes_strides:
        out["strides"] = [lv.stride for lv in feature_levels(teacher) if lv.key != "pool"]
    return out


def _train_sampling(teacher: nn.Module) -> dict[str, int]:
    return {"rpn_post_nms_top_n_train": max(1, round(int(teacher.rpn._post_nms_top_n["training"])
                                                     * TRAIN_SAMPLING_SHARE)),
            "box_batch_size_per_image": max(1, round(int(teacher.roi_heads.fg_bg_sampler.batch_size_per_image)
                                                     * TRAIN_SAMPLING_SHARE))}


def _fmt_mult(m: float) -> str:
    return f"{m:.3g}".replace(".", "")


def _zoo_specs(teacher: nn.Module, fam: Family, tiers: Sequence[tuple[str, float, float]]) -> Iterator[Candidate]:
    pairing = pairing_overrides(teacher, fam)
    sampling = _train_sampling(teacher)
    for mult in fam.multipliers:
        for fpn in fam.fpn_channels:
            for head in fam.heads:
                for tier, sp, sd in tiers:
                    knobs = _tier_knobs(teacher, sp, sd)
                    overrides = {**pairing, fam.width_key: fam.width_value(mult), "fpn_channels": fpn,
                                 "representation_size": head, **sampling, **knobs}
                    cid = f"{fam.name}-w{_fmt_mult(mult)}-fpn{fpn}-head{head}-{tier}"
                    yield Candidate(cid, "zoo", fam.name, fam.entry, overrides,
                                    knobs={"width": mult, "fpn": fpn, "head": head, "test_tier": tier, **knobs})


def set_test_knobs(model: nn.Module, knobs: dict[str, int]) -> nn.Module:
    """Give a built detector other test-time proposal and detection counts, in its modules and its spec."""
    model.rpn._pre_nms_top_n["testing"] = int(knobs["rpn_pre_nms_top_n_test"])
    model.rpn._post_nms_top_n["testing"] = int(knobs["rpn_post_nms_top_n_test"])
    model.roi_heads.detections_per_img = int(knobs["box_detections_per_img"])
    spec = copy.deepcopy(getattr(model, "detdistill_spec", None))
    if spec is not None:  # so that a saved checkpoint rebuilds with these counts
        spec["kwargs"] = {**spec["kwargs"], **{k: int(v) for k, v in knobs.items()}}
        model.detdistill_spec = spec
    return model


def build_candidate(candidate: Candidate, teacher: nn.Module, seed: int = 0,
                    compressed: dict[float, nn.Module] | None = None) -> nn.Module:
    """The (untrained zoo / teacher-initialised low-rank) model of a candidate.

    ``compressed`` memoises the low-rank copy of the teacher per ratio (the test-time tiers share it).
    """
    num_classes = int(teacher.roi_heads.box_predictor.cls_score.out_features)
    if candidate.kind == "zoo":
        seed_everything(seed)
        return build_detector(candidate.entry, num_classes, **candidate.overrides)
    from ..models.lowrank import compress_detector

    ratio = float(candidate.lowrank_ratio)  # type: ignore[arg-type]
    memo = compressed if compressed is not None else {}
    if ratio not in memo:
        memo[ratio] = compress_detector(teacher, ratio=ratio)[0]
    return set_test_knobs(copy.deepcopy(memo[ratio]), candidate.overrides)


def small_object_share(dataset: Any, teacher: nn.Module) -> float:
    """The share of ``dataset``'s boxes whose side, resized as the teacher's transform resizes the image, is
    under :data:`SMALL_SIDE_STRIDES` times the teacher's finest feature stride, each class weighted equally.

    Classes weigh equally because mAP does: on BCCD the platelets are 7 % of the boxes but a third of the
    metric, and nearly all of them are small (a plain box count says 7 %, this says 31 % on the BCCD training split).

    >>> from detdistill.data.synthetic import SyntheticShapes
    >>> from detdistill.models import build_detector
    >>> 0.0 <= small_object_share(SyntheticShapes("train", num_images=4), build_detector("cpu_tiny", 7)) <= 1.0
    True
    """
    from ..models.pairing import feature_levels

    rec = dataset.records
    if len(rec.boxes) == 0:
        return 0.0
    t = teacher.transform
    stride = min(lv.stride for lv in feature_levels(teacher) if lv.key != "pool")
    short = np.minimum(rec.widths, rec.heights).astype(float)
    long = np.maximum(rec.widths, rec.heights).astype(float)
    scale = np.minimum(float(t.min_size[-1]) / short, float(t.max_size) / long)[rec.box_image_index]
    b = rec.boxes.astype(float)
    side = np.sqrt(np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 0, None)) * scale
    small = side < SMALL_SIDE_STRIDES * stride
    return float(np.mean([small[rec.labels == k].mean() for k in np.unique(rec.labels)]))


def _pairs(teacher: nn.Module, model: nn.Module, fam: Family, distill_config: Any) -> str | None:
    """None when ``model`` pairs with ``teacher`` as its family must; else why not."""
    if fam.pairs == "anchors":
        report = describe_pairing(teacher, model)
        return None if report.pairs else ", ".join(c.name for c in report.checks() if not c.ok)
    from ..distill.distiller import Distiller
    from ..errors import DetDistillError

    try:
        Distiller(teacher, model, distill_config)
    except DetDistillError as exc:
        return f"the distillation terms refuse it: {exc}"
    return None


def generate_candidates(teacher: nn.Module, image_size: Sequence[int] | None = None,
                        families: Sequence[Family] = FAMILIES, lowrank_ratios: Sequence[float] = LOWRANK_RATIOS,
                        seed: int = 0, tiers: Sequence[tuple[str, float, float]] = TEST_TIERS,
                        small_objects: bool = False, distill_config: Any = None,
                        log: Any = print) -> list[Candidate]:
    """Every zoo-family member that pairs with ``teacher`` and every low-rank compression of it, with params and
    GFLOPs counted on a raw image of ``image_size`` (H, W; default the teacher's ``min_size`` square), as
    ``detdistill describe`` counts them (``torch.utils.flop_counter``). ``tiers``: the test-time tiers
    (name, share of the teacher's proposals, share of its detections). Families marked ``small_objects_only``
    join when ``small_objects``; feature-paired ones are checked against ``distill_config`` (default: the
    default recipe)."""
    side = int(teacher.transform.min_size[-1])
    h, w = (int(image_size[0]), int(image_size[-1])) if image_size is not None else (side, side)
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    out: list[Candidate] = []
    for fam in families:
        if fam.small_objects_only and not small_objects:
            log(f"candidates: family {fam.name} left out: the training data has few small objects")
            continue
        members = []
        for cand in _zoo_specs(teacher, fam, tiers):
            try:
                model = build_candidate(cand, teacher, seed)
            except (ValueError, TypeError) as exc:  # a knob this family cannot take at this size
                log(f"candidates: {cand.id} left out: it does not build with the teacher's settings ({exc})")
                continue
            failed = _pairs(teacher, model, fam, distill_config)
            if failed is not None:
                log(f"candidates: {cand.id} left out: it does not pair with the teacher ({failed})")
                if not members:  # strides, anchors and transform are the family's, not the member's
                    log(f"candidates: family {fam.name} left out: its first member does not pair with the teacher")
                    break
                continue
            cand.params = sum(p.numel() for p in model.parameters())
            cand.gflops = count_flops(model, image) / 1e9
            members.append(cand)
        out += members
    from ..models.lowrank import compress_detector

    for ratio in lowrank_ratios:
        try:
            student, report = compress_detector(teacher, ratio=ratio)
        except ValueError as exc:  # the ratio is out of reach for this teacher
            log(f"candidates: low-rank {ratio:g}x left out: {exc}")
            continue
        for tier, sp, sd in tiers:
            knobs = _tier_knobs(teacher, sp, sd)
            model = set_test_knobs(copy.deepcopy(student), knobs)
            out.append(Candidate(
                f"lowrank-{ratio:g}x-{tier}", "lowrank", "lowrank", teacher.detdistill_spec["name"], dict(knobs),
                params=sum(p.numel() for p in model.parameters()), gflops=count_flops(model, image) / 1e9,
                lowrank_ratio=float(ratio), compression=float(report.model_ratio),
                knobs={"ratio": ratio, "test_tier": tier, **knobs}))
    return out
