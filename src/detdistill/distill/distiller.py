"""The teacher-student pairing: one training forward that returns the paper's named losses.

``Distiller(teacher, student, config)`` composes torchvision's own Faster R-CNN parts (transform, backbone,
RPN head, anchor generator, box coder, proposal filter, anchor matcher and sampler, RoI sampler, RoI pool,
box head, predictor) without patching them, because ``rpn.forward`` and ``roi_heads.forward`` sample
internally and hide which anchors and RoIs they used. The Distiller makes the sampling once and computes,
on the same samples:

* RPN: ``λ``-weighted, ``L_cls = μ·BCE(s, y) + (1−μ)·L_soft(s, t)`` on the sampled anchors and
  ``L_reg = smoothL1(s, y) + ν·L_b(s, t, y)`` on the positive anchors.
* RCN: the student's sampled RoIs (ground-truth boxes included) are pooled on the teacher's features too,
  so both heads classify the same RoIs; ``L_cls`` with the class-weighted soft cross-entropy and
  ``L_reg`` with the bounded loss on the ground-truth class's deltas of foreground RoIs.
* Hint: ``γ · mean_l ‖adapt_l(V_l) − Z_l‖²`` over paired feature levels (paired by measured stride).

With every term off the losses and the RNG use are exactly those of ``student(images, targets)``.

The teacher is frozen: no gradients, always in eval mode, not registered as a submodule (so it is not in
``state_dict()``, ``parameters()``, the optimizer or DDP's buckets), moved along with ``.to()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers

from ..config import DistillConfig
from .adaptation import ADAPTER_INITS, make_adaptation
from .losses import (
    bound_active_fraction,
    bounded_regression_loss,
    classification_distillation_loss,
    hint_loss,
    regression_distillation_loss,
    weighted_soft_binary_cross_entropy,
    weighted_soft_cross_entropy,
)


class PairingError(ValueError):
    """Teacher and student cannot be distilled as configured; the message says what to change."""


@dataclass
class HintPair:
    teacher_level: str
    student_level: str
    stride: int | None
    teacher_channels: int
    student_channels: int
    adapter_params: int


@dataclass
class TeacherOutputs:
    """What the terms read from the teacher that does not depend on the student.

    ``features``: the teacher's FPN levels on the batch canvas; ``objectness``/``deltas``: its RPN head's
    per-level outputs (None when no RPN term is on). This is the seam a teacher cache replaces: the teacher's
    RoI head still runs on the student's RoIs, pooled from ``features``.
    """

    features: dict[str, Tensor] = field(default_factory=dict)
    objectness: list[Tensor] | None = None
    deltas: list[Tensor] | None = None


@dataclass
class DistillPlan:
    """What the Distiller will do: active terms, hint pairs, adapters (the dry-run report)."""

    terms: dict[str, bool]
    hint_pairs: list[HintPair] = field(default_factory=list)
    anchors_checked: bool = False
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = ["active terms:"]
        lines += [f"  {name:12s} {'on' if on else 'off'}" for name, on in self.terms.items()]
        if self.hint_pairs:
            lines.append("hint pairs (teacher level <- adapter <- student level):")
            for p in self.hint_pairs:
                stride = f"stride {p.stride}" if p.stride else "by name"
                lines.append(f"  {p.teacher_level} ({p.teacher_channels} ch) <- {p.student_channels}->"
                             f"{p.teacher_channels} adapter ({p.adapter_params} params) <- {p.student_level} "
                             f"({p.student_channels} ch), {stride}")
        lines.append(f"anchor check: {'on (generated anchors compared every step)' if self.anchors_checked else 'off'}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _feature_info(model: FasterRCNN, image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """``{level: (stride, channels)}`` measured on a dummy input."""
    from ..models.pairing import feature_levels

    return {lv.key: (lv.stride, lv.channels) for lv in feature_levels(model, image_size)}


class Distiller(nn.Module):
    """Teacher + student → the named loss dict of Chen et al. (2017) in training mode.

    Args:
        teacher: a trained torchvision ``FasterRCNN`` (frozen here).
        student: the ``FasterRCNN`` to train (its own modules are used for every student computation).
        config: :class:`~detdistill.config.DistillConfig` (the paper's knobs and switches).
        image_size: input size used to measure feature strides for pairing (default: the student's
            transform's ``min_size`` squared).
        teacher_cache: a :class:`~detdistill.distill.teacher_cache.TeacherCache` to read the teacher's outputs
            from instead of running it (None: run the teacher).

    In eval mode ``forward(images)`` returns the student's detections, so evaluation code takes a Distiller
    like any detector.

    Example (your own training loop)::

        distiller = Distiller(teacher, student, DistillConfig())
        optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
        for images, targets in loader:
            losses = distiller(images, targets)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
        torch.save(distiller.student.state_dict(), "student.pt")   # the adapters are left behind
    """

    LOSS_KEYS = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_hint")

    def __init__(self, teacher: FasterRCNN, student: FasterRCNN, config: DistillConfig | None = None,
                 image_size: tuple[int, int] | None = None, teacher_cache=None) -> None:  # noqa: ANN001
        super().__init__()
        # A TeacherCache (distill/teacher_cache.py) answers teacher_outputs from disk instead of the teacher.
        self.teacher_cache = teacher_cache
        self.config = cfg = config or DistillConfig()
        self.student = student
        object.__setattr__(self, "teacher", teacher)  # deliberately not a registered submodule
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()
        self.stats: dict[str, float] = {}
        self._check_basic(teacher, student)
        size = image_size or (int(student.transform.min_size[-1]),) * 2
        self.plan = DistillPlan(terms={
            "rpn_soft": cfg.rpn_soft, "rpn_bounded": cfg.rpn_bounded, "rcn_soft": cfg.rcn_soft,
            "rcn_bounded": cfg.rcn_bounded, "hint": cfg.hint})
        self.plan.anchors_checked = cfg.rpn_soft or cfg.rpn_bounded
        if self.plan.anchors_checked:
            self._check_anchor_settings(teacher, student, size)
        self.adapters = nn.ModuleDict()
        self._hint_pairs: list[tuple[str, str]] = []
        if cfg.hint:
            self._build_hints(teacher, student, size)
        self.register_buffer("class_weights", self._class_weights(student), persistent=False)

    # ------------------------------------------------------------------------------------- checks
    def _check_basic(self, teacher: FasterRCNN, student: FasterRCNN) -> None:
        cfg = self.config
        if not 0.0 <= cfg.mu <= 1.0:
            raise PairingError(f"distill.mu: value {cfg.mu} must lie in [0, 1]")
        if cfg.temperature <= 0:
            raise PairingError(f"distill.temperature: value {cfg.temperature} must be positive")
        if cfg.hint_kind not in ("l2", "l1"):
            raise PairingError(f"distill.hint_kind: unknown value {cfg.hint_kind!r}; choose 'l2' or 'l1'")
        if cfg.adapter_init not in ADAPTER_INITS:
            raise PairingError(f"distill.adapter_init: unknown value {cfg.adapter_init!r}; choose one of "
                               f"{list(ADAPTER_INITS)}")
        if cfg.rpn_soft_anchors not in ("sampled", "all"):
            raise PairingError(f"distill.rpn_soft_anchors: unknown value {cfg.rpn_soft_anchors!r}; "
                               "choose 'sampled' or 'all'")
        t_cls = teacher.roi_heads.box_predictor.cls_score.out_features
        s_cls = student.roi_heads.box_predictor.cls_score.out_features
        if (cfg.rcn_soft or cfg.rcn_bounded) and t_cls != s_cls:
            raise PairingError(f"teacher scores {t_cls} classes and the student {s_cls} (background included): "
                               "the RCN terms need the same class list")
        if cfg.rcn_bounded:
            tw, sw = teacher.roi_heads.box_coder.weights, student.roi_heads.box_coder.weights
            if tuple(tw) != tuple(sw):
                raise PairingError(f"RoI box coder weights differ (teacher {tuple(tw)}, student {tuple(sw)}): "
                                   "the bounded RCN loss compares deltas, so they must match (or set "
                                   "distill.rcn_bounded=false)")
        tt, st = teacher.transform, student.transform
        for attr in ("image_mean", "image_std", "size_divisible", "min_size", "max_size"):
            a, b = getattr(tt, attr), getattr(st, attr)
            if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
                raise PairingError(
                    f"image transforms differ in {attr} (teacher {a}, student {b}): the teacher sees the student's "
                    f"preprocessed images, so build both with the same {attr}")

    def _check_anchor_settings(self, teacher: FasterRCNN, student: FasterRCNN, size: tuple[int, int]) -> None:
        from ..models.pairing import describe_pairing

        report = describe_pairing(teacher, student, size)
        bad = [c for c in (report.strides, report.anchor_sizes, report.aspect_ratios, report.rpn_box_coder)
               if not c.ok]
        if bad:
            what = "; ".join(f"{c.name}: teacher {c.teacher}, student {c.student}" for c in bad)
            raise PairingError(
                f"the RPN terms need teacher and student anchors to pair one to one, but they differ ({what}). "
                "Turn the RPN terms off with distill.rpn_soft=false distill.rpn_bounded=false (the RCN and hint "
                "terms work across architectures), or build the student with the teacher's strides and anchors")

    def _build_hints(self, teacher: FasterRCNN, student: FasterRCNN, size: tuple[int, int]) -> None:
        cfg = self.config
        t_info, s_info = _feature_info(teacher, size), _feature_info(student, size)
        if cfg.hint_levels is None and cfg.guided_levels is None:
            # One pair per shared stride; where a model has several levels at one stride (torchvision's
            # MobileNetV3-FPN: '0' and '1' are both stride 32) the deepest, last-listed one is used.
            t_by_stride = {stride: key for key, (stride, _) in t_info.items()}
            s_by_stride = {stride: key for key, (stride, _) in s_info.items()}
            shared = [st for st in t_by_stride if st in s_by_stride]
            pairs = [(t_by_stride[st], s_by_stride[st]) for st in shared]
            for who, info, chosen in (("teacher", t_info, t_by_stride), ("student", s_info, s_by_stride)):
                shadowed = [k for k, (st, _) in info.items() if st in shared and chosen[st] != k]
                if shadowed:
                    self.plan.notes.append(f"{who} levels {shadowed} share a stride with a deeper level and are "
                                           "left out of the hints (choose with distill.hint_levels/guided_levels)")
            if not pairs:
                raise PairingError(f"no teacher and student feature levels share a stride (teacher "
                                   f"{ {k: s for k, (s, _) in t_info.items()} }, student "
                                   f"{ {k: s for k, (s, _) in s_info.items()} }); name them with "
                                   "distill.hint_levels and distill.guided_levels, or set distill.hint=false")
        else:
            hints, guided = cfg.hint_levels or [], cfg.guided_levels or []
            if len(hints) != len(guided) or not hints:
                raise PairingError(f"distill.hint_levels {hints} and distill.guided_levels {guided} must be "
                                   "non-empty lists of the same length")
            for key in hints:
                if key not in t_info:
                    raise PairingError(f"distill.hint_levels: teacher has no level {key!r}; it has {list(t_info)}")
            for key in guided:
                if key not in s_info:
                    raise PairingError(f"distill.guided_levels: student has no level {key!r}; it has {list(s_info)}")
            pairs = list(zip(hints, guided))
        for t_key, s_key in pairs:
            (ts, tc), (ss, sc) = t_info[t_key], s_info[s_key]
            if ts != ss:
                raise PairingError(f"hint level {t_key!r} (stride {ts}) and guided level {s_key!r} (stride {ss}) "
                                   "have different spatial sizes; no 1x1 adaptation can match them")
            try:
                adapter = make_adaptation(sc, tc, "conv", cfg.adaptation, cfg.adapter_init)
            except ValueError as exc:
                raise PairingError(f"level {s_key!r} -> {t_key!r}: {exc}") from exc
            self.adapters[s_key] = adapter
            self._hint_pairs.append((t_key, s_key))
            self.plan.hint_pairs.append(HintPair(t_key, s_key, ts, tc, sc, sum(p.numel() for p in adapter.parameters())))

    def _class_weights(self, student: FasterRCNN) -> Tensor:
        num_classes = student.roi_heads.box_predictor.cls_score.out_features
        weights = torch.ones(num_classes)
        weights[0] = self.config.background_weight
        return weights

    # -------------------------------------------------------------------------------- module plumbing
    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()  # BatchNorm statistics of the teacher never move
        return self

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 - nn.Module's hook for .to()/.cuda()
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):  # noqa: ANN201
        if not self.training:
            return self.student(images)
        if targets is None:
            raise ValueError("Distiller: targets are required in training mode")
        cfg, student, teacher = self.config, self.student, self.teacher
        original_sizes = [tuple(img.shape[-2:]) for img in images]  # noqa: F841 - parity with GeneralizedRCNN
        image_list, targets = student.transform(images, targets)
        s_feats = student.backbone(image_list.tensors)
        need_teacher_rpn = cfg.rpn_soft or cfg.rpn_bounded
        need_teacher_rcn = cfg.rcn_soft or cfg.rcn_bounded
        teacher_out = TeacherOutputs()
        if need_teacher_rpn or need_teacher_rcn or cfg.hint:
            teacher_out = self.teacher_outputs(image_list, targets, need_rpn=need_teacher_rpn)
        t_feats = teacher_out.features

        losses: dict[str, Tensor] = {}
        stats: dict[str, float] = {}
        proposals = self._rpn(image_list, s_feats, teacher_out, targets, losses, stats, need_teacher_rpn)
        self._rcn(image_list, s_feats, t_feats, proposals, targets, losses, stats, need_teacher_rcn)
        if cfg.hint:
            terms = [hint_loss(self.adapters[s_key](s_feats[s_key]).float(), t_feats[t_key].float(), cfg.hint_kind)
                     for t_key, s_key in self._hint_pairs]
            hint = torch.stack(terms).mean()
            stats["hint"] = float(hint.detach())
            losses["loss_hint"] = cfg.gamma * hint
        self.stats = stats
        return losses

    @torch.no_grad()
    def teacher_outputs(self, image_list, targets, need_rpn: bool) -> TeacherOutputs:  # noqa: ANN001
        """Run the frozen teacher's backbone (and RPN head when ``need_rpn``) on the student's batch canvas."""
        if self.teacher_cache is not None:
            return self.teacher_cache.teacher_outputs(image_list, targets, need_rpn)
        features = self.teacher.backbone(image_list.tensors)
        out = TeacherOutputs(features=features)
        if need_rpn:
            out.objectness, out.deltas = self.teacher.rpn.head(list(features.values()))
        return out

    def _rpn(self, image_list, s_feats, teacher_out, targets, losses, stats, need_teacher) -> list[Tensor]:  # noqa: ANN001
        cfg, rpn = self.config, self.student.rpn
        features = list(s_feats.values())
        objectness, deltas = rpn.head(features)
        anchors = rpn.anchor_generator(image_list, features)
        num_images = len(anchors)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)
        boxes, _ = rpn.filter_proposals(proposals, objectness, image_list.image_sizes, num_anchors_per_level)

        labels, matched_gt_boxes = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched_gt_boxes, anchors)
        pos_masks, neg_masks = rpn.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos_masks, dim=0))[0]
        neg = torch.where(torch.cat(neg_masks, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        objectness = objectness.flatten()
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        num_sampled = sampled.numel()
        # torchvision's RPN losses, on exactly these samples.
        box_hard = F.smooth_l1_loss(deltas[pos], regression_targets[pos], beta=1 / 9, reduction="sum") / num_sampled
        cls_hard = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])

        soft = bounded = None
        if need_teacher:
            with torch.no_grad():
                t_features = list(teacher_out.features.values())
                t_anchors = self.teacher.rpn.anchor_generator(image_list, t_features)
                t_objectness, t_deltas = concat_box_prediction_layers(teacher_out.objectness, teacher_out.deltas)
            if len(t_anchors) != len(anchors) or any(
                    a.shape != b.shape or not torch.equal(a, b) for a, b in zip(anchors, t_anchors)):
                raise PairingError("teacher and student generated different anchors for this batch; the RPN terms "
                                   "cannot pair (set distill.rpn_soft=false distill.rpn_bounded=false)")
            t_objectness = t_objectness.flatten()
            if cfg.rpn_soft:
                idx = sampled if cfg.rpn_soft_anchors == "sampled" else slice(None)
                soft = weighted_soft_binary_cross_entropy(
                    objectness[idx].float(), t_objectness[idx].float(), background_weight=cfg.background_weight,
                    temperature=cfg.temperature, normalizer=num_sampled)
                stats["rpn_soft"] = float(soft.detach())
            if cfg.rpn_bounded:
                bounded = bounded_regression_loss(deltas[pos].float(), t_deltas[pos].float(),
                                                  regression_targets[pos].float(), cfg.margin, normalizer=num_sampled)
                stats["rpn_bounded"] = float(bounded.detach())
                stats["rpn_bound_active"] = float(bound_active_fraction(
                    deltas[pos], t_deltas[pos], regression_targets[pos], cfg.margin))
        stats["rpn_hard_cls"], stats["rpn_smooth_l1"] = float(cls_hard.detach()), float(box_hard.detach())
        losses["loss_objectness"] = classification_distillation_loss(cls_hard, soft, cfg.mu)
        reg = regression_distillation_loss(box_hard, bounded, cfg.nu)
        losses["loss_rpn_box_reg"] = reg if cfg.lambda_reg == 1.0 else cfg.lambda_reg * reg
        return boxes

    def _rcn(self, image_list, s_feats, t_feats, proposals, targets, losses, stats, need_teacher) -> None:  # noqa: ANN001
        cfg, heads = self.config, self.student.roi_heads
        proposals, _, labels, regression_targets = heads.select_training_samples(proposals, targets)
        box_features = heads.box_head(heads.box_roi_pool(s_feats, proposals, image_list.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        cls_hard, box_hard = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)

        soft = bounded = None
        if need_teacher:
            t_heads = self.teacher.roi_heads
            with torch.no_grad():
                t_box = t_heads.box_head(t_heads.box_roi_pool(t_feats, proposals, image_list.image_sizes))
                t_logits, t_regression = t_heads.box_predictor(t_box)
            if cfg.rcn_soft:
                soft = weighted_soft_cross_entropy(class_logits.float(), t_logits.float(), self.class_weights,
                                                   temperature=cfg.temperature)
                stats["rcn_soft"] = float(soft.detach())
            if cfg.rcn_bounded:
                labels_cat = torch.cat(labels, dim=0)
                targets_cat = torch.cat(regression_targets, dim=0)
                pos = torch.where(labels_cat > 0)[0]
                cls_of_pos = labels_cat[pos]
                n = class_logits.shape[0]
                s_reg = box_regression.reshape(n, -1, 4)[pos, cls_of_pos]
                t_reg = t_regression.reshape(n, -1, 4)[pos, cls_of_pos]
                # fastrcnn_loss divides its smooth L1 sum by all sampled RoIs; the bound uses the same normalizer.
                bounded = bounded_regression_loss(s_reg.float(), t_reg.float(), targets_cat[pos].float(), cfg.margin,
                                                  normalizer=labels_cat.numel())
                stats["rcn_bounded"] = float(bounded.detach())
                stats["rcn_bound_active"] = float(bound_active_fraction(s_reg, t_reg, targets_cat[pos], cfg.margin))
        stats["rcn_hard_cls"], stats["rcn_smooth_l1"] = float(cls_hard.detach()), float(box_hard.detach())
        losses["loss_classifier"] = classification_distillation_loss(cls_hard, soft, cfg.mu)
        reg = regression_distillation_loss(box_hard, bounded, cfg.nu)
        losses["loss_box_reg"] = reg if cfg.lambda_reg == 1.0 else cfg.lambda_reg * reg
