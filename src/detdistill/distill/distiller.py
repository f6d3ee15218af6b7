"""The teacher-student pairing: one training forward that returns the named losses of the active terms.

``Distiller(teacher, student, config)`` composes torchvision's own Faster R-CNN parts (transform, backbone,
RPN head, anchor generator, box coder, proposal filter, anchor matcher and sampler, RoI sampler, RoI pool,
box head, predictor) without patching them, because ``rpn.forward`` and ``roi_heads.forward`` sample
internally and hide which anchors and RoIs they used. The Distiller makes the sampling once, runs the
teacher once (:meth:`Distiller.teacher_outputs`, and its RoI head on the student's RoIs), fills one
:class:`~detdistill.distill.terms.TermContext` and calls the terms that ``config`` switches on (the registry
in :mod:`detdistill.distill.terms`). The paper's terms (recipe ``chen2017``) combine as the paper does:

* RPN: ``λ``-weighted, ``L_cls = μ·BCE(s, y) + (1−μ)·L_soft(s, t)`` on the sampled anchors and
  ``L_reg = smoothL1(s, y) + ν·L_b(s, t, y)`` on the positive anchors.
* RCN: the student's sampled RoIs (ground-truth boxes included) are pooled on the teacher's features too,
  so both heads classify the same RoIs; ``L_cls`` with the class-weighted soft cross-entropy and
  ``L_reg`` with the bounded loss on the ground-truth class's deltas of foreground RoIs.
* Hint: ``γ · mean_l ‖adapt_l(V_l) − Z_l‖²`` over paired feature levels (paired by measured stride).

Every other term adds ``weight · value`` under its own key (``loss_<name>``). With every term off the losses
and the RNG use are exactly those of ``student(images, targets)``.

Unlabelled images (``data.unlabeled``; a target with ``labelled = False``) join a batch without ground truth:

* the student's supervised losses (torchvision's four, the hard parts above) run only on the labelled
  images, with the same samples, RNG use and normalisers as on a batch of those images alone;
* terms registered with ``needs_labels`` (bounded regression, GT-box imitation) see only the labelled images;
* every other term sees all images: the feature terms (masks of ``hint_fgfi``/``fgd`` from the teacher's
  detections above :data:`TEACHER_BOX_SCORE` on unlabelled images), the RPN soft term on anchors the
  teacher's objectness samples (its positives first, the rest random background), and the RCN terms on the
  student's top proposals (no ground truth added; DKD's target class is the teacher's);
* with ``distill.pseudo_label_score`` the teacher's detections above it become the image's hard targets,
  and the supervised losses run on it like on a labelled image.

The teacher is frozen: no gradients, always in eval mode, not registered as a submodule (so it is not in
``state_dict()``, ``parameters()``, the optimizer or DDP's buckets), moved along with ``.to()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers

from ..data.base import PER_BOX_KEYS
from ..data.unlabeled import is_labelled
from ..errors import PairingError
from ..typed_config import check_ranges
from .adaptation import make_adaptation
from .config import DistillConfig
from .losses import classification_distillation_loss, regression_distillation_loss
from .terms import FeaturePair, RCNSamples, RPNSamples, TermContext, active_terms, list_terms, resolve_recipe


TEACHER_BOX_SCORE = 0.5
"""Score above which the teacher's detections stand in for the ground-truth boxes of an unlabelled image in
the masks of ``hint_fgfi`` and ``fgd`` (when ``distill.pseudo_label_score`` is not set)."""


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
    """What the Distiller will do: recipe, active terms with their weights, hint pairs, adapters (the dry-run)."""

    terms: dict[str, bool]
    hint_pairs: list[HintPair] = field(default_factory=list)
    anchors_checked: bool = False
    notes: list[str] = field(default_factory=list)
    recipe: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    loss_keys: dict[str, str] = field(default_factory=dict)
    init_from_teacher: str = "off"
    labelled_only: list[str] = field(default_factory=list)
    """Active terms registered with ``needs_labels``: they never see an unlabelled image."""

    def unlabelled_lines(self, num_images: int, pseudo_label_score: float | None = None) -> list[str]:
        """What runs on the ``num_images`` unlabelled images (the dry-run's section for ``data.unlabeled``)."""
        on = [n for n, active in self.terms.items() if active and n not in self.labelled_only]
        pseudo = (f"teacher detections with score >= {pseudo_label_score:g} as hard targets (supervised losses "
                  "run on them)" if pseudo_label_score is not None else "off (supervised losses: labelled images only)")
        return [f"unlabelled images: {num_images}",
                f"  terms on unlabelled images: {', '.join(on) or '(none: they only cost time)'}",
                "  labelled images only: the student's supervised losses"
                + (f", {', '.join(self.labelled_only)}" if self.labelled_only else ""),
                f"  pseudo-labels: {pseudo}"]

    def __str__(self) -> str:
        lines = [f"recipe: {self.recipe}" if self.recipe else "recipe: (none)", "active terms:"]
        for name, on in self.terms.items():
            if on:
                lines.append(f"  {name:12s} on   weight {self.weights.get(name, 0.0):g} -> {self.loss_keys.get(name, '')}")
            else:
                lines.append(f"  {name:12s} off")
        if self.hint_pairs:
            lines.append("hint pairs (teacher level <- adapter <- student level):")
            for p in self.hint_pairs:
                stride = f"stride {p.stride}" if p.stride else "by name"
                lines.append(f"  {p.teacher_level} ({p.teacher_channels} ch) <- {p.student_channels}->"
                             f"{p.teacher_channels} adapter ({p.adapter_params} params) <- {p.student_level} "
                             f"({p.student_channels} ch), {stride}")
        lines.append(f"anchor check: {'on (generated anchors compared every step)' if self.anchors_checked else 'off'}")
        lines.append(f"student initialised from the teacher: {self.init_from_teacher}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _feature_info(model: FasterRCNN, image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """``{level: (stride, channels)}`` measured on a dummy input."""
    from ..models.pairing import feature_levels

    return {lv.key: (lv.stride, lv.channels) for lv in feature_levels(model, image_size)}


class Distiller(nn.Module):
    """Teacher + student → the named loss dict of the active distillation terms in training mode.

    Args:
        teacher: a trained torchvision ``FasterRCNN`` (frozen here).
        student: the ``FasterRCNN`` to train (its own modules are used for every student computation).
        config: :class:`~detdistill.distill.config.DistillConfig`: the recipe, the switches and each term's knobs.
        image_size: input size used to measure feature strides for pairing (default: the student's
            transform's ``min_size`` squared).
        teacher_cache: a :class:`~detdistill.distill.teacher_cache.TeacherCache` to read the teacher's outputs
            from instead of running it (None: run the teacher).

    Each step makes the student's samples once (anchors, RoIs), runs the teacher once
    (:meth:`teacher_outputs`, plus its RoI head on the student's RoIs when a term reads them), fills one
    :class:`~detdistill.distill.terms.TermContext` and calls the active terms of the registry
    (:mod:`detdistill.distill.terms`). The paper's terms join torchvision's loss keys as the paper combines
    them; every other term adds its own key (``loss_<name>``).

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
        self.terms = active_terms(cfg)
        recipe = resolve_recipe(cfg.recipe)
        reads = {r for spec in self.terms for r in spec.reads}
        self._reads = reads
        # What the terms that also see unlabelled images read: only those samples are made for such images.
        self._reads_unlabelled = {r for spec in self.terms if not spec.needs_labels for r in spec.reads}
        self._check_basic(teacher, student)
        for spec in self.terms:
            if spec.check is not None:
                spec.check(teacher, student, cfg)
        size = image_size or (int(student.transform.min_size[-1]),) * 2
        active = {spec.name for spec in self.terms}
        self.plan = DistillPlan(
            terms={spec.name: spec.name in active for spec in list_terms()},
            recipe=recipe.name if cfg.recipe != "default" else f"default (= {recipe.name})",
            weights={spec.name: float(spec.weight(cfg)) for spec in self.terms},
            loss_keys={spec.name: spec.loss_key for spec in self.terms},
            labelled_only=[spec.name for spec in self.terms if spec.needs_labels])
        self.plan.anchors_checked = "rpn" in reads
        if self.plan.anchors_checked:
            self._check_anchor_settings(teacher, student, size)
        if cfg.init_from_teacher:
            self.plan.init_from_teacher = self._init_from_teacher(teacher, student)
        self.adapters = nn.ModuleDict()
        self._hint_pairs: list[tuple[str, str]] = []
        self._pair_strides: dict[str, int] = {}
        self._adapter_prefix: dict[str, str] = {}
        if "features" in reads:
            self._build_hints(teacher, student, size)
        self.register_buffer("class_weights", self._class_weights(student), persistent=False)

    # ------------------------------------------------------------------------------------- checks
    def _check_basic(self, teacher: FasterRCNN, student: FasterRCNN) -> None:
        # A config built in Python has not been through load_config: the same ranges and choices, named.
        check_ranges(self.config, "distill.")
        t_cls = teacher.roi_heads.box_predictor.cls_score.out_features
        s_cls = student.roi_heads.box_predictor.cls_score.out_features
        if "rcn" in self._reads and t_cls != s_cls:
            raise PairingError(f"teacher scores {t_cls} classes and the student {s_cls} (background included): "
                               "the RCN terms need the same class list")
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
                "Turn the RPN terms off with distill.terms.rpn_soft.enabled=false distill.terms.rpn_bounded.enabled=false (the RCN and hint "
                "terms work across architectures), or build the student with the teacher's strides and anchors")

    @staticmethod
    def _init_from_teacher(teacher: FasterRCNN, student: FasterRCNN) -> str:
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
                                   "distill.hint_levels and distill.guided_levels, or switch the feature terms off")
        else:
            hints, guided = cfg.hint_levels or [], cfg.guided_levels or []
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
            pairs = list(zip(hints, guided))
        # Feature terms share one adapter per pair, except a term that needs another start (PKD: a random
        # one) gets its own set, keyed "<init>_<level>"; the paper's set keeps the bare level keys.
        inits = sorted({spec.adapter_init or cfg.adapter_init for spec in self.terms if "features" in spec.reads},
                       key=lambda i: i != cfg.adapter_init)
        for spec in self.terms:
            if "features" in spec.reads:
                init = spec.adapter_init or cfg.adapter_init
                self._adapter_prefix[spec.name] = "" if init == cfg.adapter_init else f"{init}_"
        for t_key, s_key in pairs:
            (ts, tc), (ss, sc) = t_info[t_key], s_info[s_key]
            if ts != ss:
                raise PairingError(f"hint level {t_key!r} (stride {ts}) and guided level {s_key!r} (stride {ss}) "
                                   "have different spatial sizes; no 1x1 adaptation can match them")
            params = 0
            for init in inits:
                try:
                    adapter = make_adaptation(sc, tc, "conv", cfg.adaptation, init)
                except ValueError as exc:
                    raise PairingError(f"level {s_key!r} -> {t_key!r}: {exc}") from exc
                prefix = "" if init == cfg.adapter_init else f"{init}_"
                self.adapters[prefix + s_key] = adapter
                params += sum(p.numel() for p in adapter.parameters())
            self._hint_pairs.append((t_key, s_key))
            self._pair_strides[s_key] = ts
            self.plan.hint_pairs.append(HintPair(t_key, s_key, ts, tc, sc, params))
        if len(inits) > 1:
            self.plan.notes.append(f"adapter sets per pair: {inits} (a term's own start, e.g. PKD's random one)")

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
        student = self.student
        original_sizes = [tuple(img.shape[-2:]) for img in images]  # noqa: F841 - parity with GeneralizedRCNN
        image_list, targets = student.transform(images, targets)
        s_feats = student.backbone(image_list.tensors)
        reads = self._reads
        labelled = [is_labelled(t) for t in targets]
        unlabelled = [i for i, ok in enumerate(labelled) if not ok]
        pseudo_score = self.config.pseudo_label_score
        need_teacher_rpn = "rpn" in reads
        teacher_out = TeacherOutputs()
        if self.terms or (unlabelled and pseudo_score is not None):
            teacher_out = self.teacher_outputs(image_list, targets, need_rpn=need_teacher_rpn)

        ctx = TermContext()
        hard: dict[str, Tensor] = {}
        stats: dict[str, float] = {}
        # Supervised: labelled, or pseudo-labelled by the teacher. Only these get the hard losses.
        supervised = list(labelled)
        teacher_boxes: dict[int, Tensor] = {}
        if unlabelled:
            targets, teacher_boxes = self._label_unlabelled(image_list, teacher_out.features, targets, unlabelled,
                                                            supervised, stats)
        proposals, anchors, anchors_per_level = self._rpn(image_list, s_feats, teacher_out, targets, supervised, hard,
                                                          stats, ctx)
        rcn_images = self._rcn(image_list, s_feats, teacher_out.features, proposals, targets, supervised, hard, stats,
                               ctx)
        per_image = int(anchors[0].shape[0])  # one batch canvas: every image has the same anchors
        if ctx.rpn is not None and not all(supervised) and "rpn" in self._reads_unlabelled:
            # After every supervised sample is drawn, so their RNG use is that of the labelled images alone.
            self._sample_unlabelled_anchors(ctx, supervised, per_image)
        if "gt_boxes" in reads:
            ctx.gt_boxes = [teacher_boxes.get(i, t["boxes"]) for i, t in enumerate(targets)]
        adapted_cache: dict[str, Tensor] = {}
        all_labelled = not unlabelled
        labelled_ctx: TermContext | None = None
        keep = [i for i, ok in enumerate(labelled) if ok]

        losses: dict[str, Tensor] = {}
        soft: dict[str, tuple[float, Tensor]] = {}
        for spec in self.terms:
            only_labelled = spec.needs_labels and not all_labelled
            if only_labelled and not keep:
                value = image_list.tensors.new_zeros(())  # no labelled image in this batch: nothing to compare
            else:
                view = ctx
                if only_labelled:
                    if labelled_ctx is None:
                        labelled_ctx = self._labelled_view(ctx, labelled, per_image, rcn_images)
                    view = labelled_ctx
                if "features" in spec.reads:
                    pairs = self._feature_pairs(spec, s_feats, teacher_out.features, adapted_cache,
                                                anchors if "anchors" in spec.reads else None, anchors_per_level)
                    if only_labelled:
                        pairs = [_pair_subset(p, keep) for p in pairs]
                    view = replace(view, features=pairs)
                value = spec.compute(view, spec.settings(self.config), self.config)
            stats[spec.name] = float(value.detach())
            if spec.combine is not None:
                soft[spec.loss_key] = (spec.weight(self.config), value)
            else:
                losses[spec.loss_key] = value if spec.weighted_inside else spec.weight(self.config) * value
        stats.update(ctx.stats)
        self.stats = stats
        return {**self._paper_losses(hard, soft), **losses}

    @torch.no_grad()
    def _teacher_detections(self, image_list: ImageList, t_feats: dict[str, Tensor],
                            idx: list[int]) -> list[dict[str, Tensor]]:
        """The teacher's detections (canvas coordinates) on images ``idx`` of the batch, from its features."""
        teacher = self.teacher
        index = torch.tensor(idx, device=image_list.tensors.device)
        sub = ImageList(image_list.tensors.index_select(0, index), [image_list.image_sizes[i] for i in idx])
        feats = {k: v.index_select(0, index) for k, v in t_feats.items()}
        proposals, _ = teacher.rpn(sub, feats)
        detections, _ = teacher.roi_heads(feats, proposals, sub.image_sizes)
        return detections

    def _label_unlabelled(self, image_list, t_feats, targets, unlabelled, supervised, stats):  # noqa: ANN001, ANN202
        """Teacher boxes for the unlabelled images: their pseudo-labels (``distill.pseudo_label_score``, which
        makes them supervised) or the boxes of the GT-box masks; ``(targets, {image: boxes})``."""
        pseudo = self.config.pseudo_label_score
        stats["unlabelled_images"] = float(len(unlabelled))
        if pseudo is None and "gt_boxes" not in self._reads_unlabelled:
            return targets, {}
        threshold = TEACHER_BOX_SCORE if pseudo is None else float(pseudo)
        detections = self._teacher_detections(image_list, t_feats, unlabelled)
        targets, boxes, found = list(targets), {}, 0
        for i, det in zip(unlabelled, detections):
            chosen = det["scores"] >= threshold
            boxes[i] = det["boxes"][chosen]
            found += int(chosen.sum())
            if pseudo is not None:
                rest = {k: v for k, v in targets[i].items() if k not in PER_BOX_KEYS}
                targets[i] = {**rest, "boxes": det["boxes"][chosen], "labels": det["labels"][chosen]}
                supervised[i] = True
        stats["teacher_boxes_per_unlabelled"] = found / len(unlabelled)
        return targets, ({} if pseudo is not None else boxes)

    def _sample_unlabelled_anchors(self, ctx: TermContext, supervised: list[bool], per_image: int) -> None:
        """Add the anchors of images without targets to ``ctx.rpn.sampled``: the student's sampler sizes with
        the teacher as the oracle (objectness > 0.5 positive, most confident first; the rest random)."""
        rpn = ctx.rpn
        assert rpn is not None
        sampler = self.student.rpn.fg_bg_sampler
        size, fraction = sampler.batch_size_per_image, sampler.positive_fraction
        picked = []
        for i, sup in enumerate(supervised):
            if sup:
                continue
            teacher = rpn.teacher_objectness[i * per_image:(i + 1) * per_image]
            positive = torch.where(teacher > 0)[0]
            if positive.numel() > int(size * fraction):
                positive = positive[teacher[positive].topk(int(size * fraction)).indices]
            negative = torch.where(teacher <= 0)[0]
            count = min(negative.numel(), size - positive.numel())
            negative = negative[torch.randperm(negative.numel(), device=negative.device)[:count]]
            picked += [positive + i * per_image, negative + i * per_image]
        extra = torch.cat(picked)
        ctx.rpn = replace(rpn, sampled=torch.cat([rpn.sampled, extra]), num_sampled=rpn.num_sampled + extra.numel())

    @staticmethod
    def _labelled_view(ctx: TermContext, labelled: list[bool], per_image: int,
                       rcn_images: Tensor | None) -> TermContext:
        """``ctx`` restricted to the labelled images: what a ``needs_labels`` term reads (stats shared)."""
        view = replace(ctx)
        if ctx.rpn is not None:
            lab = torch.tensor(labelled, device=ctx.rpn.sampled.device)
            r = ctx.rpn
            sampled = r.sampled[lab[r.sampled // per_image]]
            view.rpn = replace(r, sampled=sampled, positive=r.positive[lab[r.positive // per_image]],
                               num_sampled=int(sampled.numel()))
        if ctx.rcn is not None and rcn_images is not None:
            rows = torch.tensor(labelled, device=rcn_images.device)[rcn_images]
            r = ctx.rcn
            view.rcn = replace(r, class_logits=r.class_logits[rows], box_regression=r.box_regression[rows],
                               teacher_logits=r.teacher_logits[rows], teacher_regression=r.teacher_regression[rows],
                               labels=r.labels[rows], regression_targets=r.regression_targets[rows])
        view.gt_boxes = [b for b, ok in zip(ctx.gt_boxes, labelled) if ok]
        return view

    def _paper_losses(self, hard: dict[str, Tensor], soft: dict[str, tuple[float, Tensor]]) -> dict[str, Tensor]:
        """torchvision's four losses, each joined by its paper term where that is on (eq. 1-5 of the paper):
        ``(1−w)·L_hard + w·L_soft`` with the soft term's weight w (= 1−μ), ``λ·(L_smoothL1 + w·L_b)`` with the
        bounded term's weight w (= ν). λ scales a regression loss only where its bounded term joins it, so with
        every term off the Distiller trains exactly the plain student (torchvision's own loss weights)."""
        out = {}
        for key in ("loss_objectness", "loss_classifier"):
            weight, value = soft.get(key, (0.0, None))
            out[key] = classification_distillation_loss(hard[key], value, 1.0 - weight)
        for key in ("loss_rpn_box_reg", "loss_box_reg"):
            weight, value = soft.get(key, (0.0, None))
            reg = regression_distillation_loss(hard[key], value, weight)
            out[key] = reg if value is None or self.config.lambda_reg == 1.0 else self.config.lambda_reg * reg
        return out

    def _feature_pairs(self, spec, s_feats, t_feats, cache, anchors, anchors_per_level) -> list[FeaturePair]:  # noqa: ANN001
        prefix = self._adapter_prefix[spec.name]
        level_index = {key: i for i, key in enumerate(s_feats)}
        pairs = []
        for t_key, s_key in self._hint_pairs:
            name = prefix + s_key
            if name not in cache:
                cache[name] = self.adapters[name](s_feats[s_key])
            level_anchors = None
            if anchors is not None:
                i = level_index[s_key]
                start = sum(anchors_per_level[:i])
                _, _, h, w = s_feats[s_key].shape
                level_anchors = [a[start:start + anchors_per_level[i]].reshape(h, w, -1, 4) for a in anchors]
            pairs.append(FeaturePair(t_key, s_key, self._pair_strides[s_key], cache[name], t_feats[t_key],
                                     level_anchors))
        return pairs

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

    def _rpn(self, image_list, s_feats, teacher_out, targets, supervised, hard, stats, ctx):  # noqa: ANN001, ANN202
        rpn = self.student.rpn
        features = list(s_feats.values())
        objectness, deltas = rpn.head(features)
        anchors = rpn.anchor_generator(image_list, features)
        num_images = len(anchors)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)
        boxes, _ = rpn.filter_proposals(proposals, objectness, image_list.image_sizes, num_anchors_per_level)

        # The supervised images' anchors are matched and sampled as a batch of those images alone would be.
        sup = [i for i, ok in enumerate(supervised) if ok]
        per_image = int(anchors[0].shape[0])
        sup_anchors = [anchors[i] for i in sup]
        labels_s, matched_s = rpn.assign_targets_to_anchors(sup_anchors, [targets[i] for i in sup])
        regression_s = rpn.box_coder.encode(matched_s, sup_anchors) if sup else ()
        pos_masks, neg_masks = rpn.fg_bg_sampler(labels_s)
        empty = torch.zeros(0, dtype=torch.int64, device=objectness.device)
        pos = torch.cat([empty] + [torch.where(m)[0] + i * per_image for m, i in zip(pos_masks, sup)])
        neg = torch.cat([empty] + [torch.where(m)[0] + i * per_image for m, i in zip(neg_masks, sup)])
        sampled = torch.cat([pos, neg], dim=0)
        objectness = objectness.flatten()
        by_image = {i: k for k, i in enumerate(sup)}
        labels = torch.cat([labels_s[by_image[i]] if i in by_image else anchors[i].new_zeros(per_image)
                            for i in range(num_images)], dim=0)
        regression_targets = torch.cat([regression_s[by_image[i]] if i in by_image else anchors[i].new_zeros(per_image, 4)
                                        for i in range(num_images)], dim=0)
        num_sampled = sampled.numel()
        if num_sampled:
            # torchvision's RPN losses, on exactly these samples.
            box_hard = F.smooth_l1_loss(deltas[pos], regression_targets[pos], beta=1 / 9, reduction="sum") / num_sampled
            cls_hard = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        else:  # no supervised image in the batch
            box_hard, cls_hard = deltas.sum() * 0.0, objectness.sum() * 0.0

        if "rpn" in self._reads:
            with torch.no_grad():
                t_features = list(teacher_out.features.values())
                t_anchors = self.teacher.rpn.anchor_generator(image_list, t_features)
                t_objectness, t_deltas = concat_box_prediction_layers(teacher_out.objectness, teacher_out.deltas)
            if len(t_anchors) != len(anchors) or any(
                    a.shape != b.shape or not torch.equal(a, b) for a, b in zip(anchors, t_anchors)):
                raise PairingError("teacher and student generated different anchors for this batch; the RPN terms "
                                   "cannot pair (set distill.terms.rpn_soft.enabled=false distill.terms.rpn_bounded.enabled=false)")
            ctx.rpn = RPNSamples(objectness, deltas, t_objectness.flatten(), t_deltas, sampled, pos,
                                 regression_targets, num_sampled)
        stats["rpn_hard_cls"], stats["rpn_smooth_l1"] = float(cls_hard.detach()), float(box_hard.detach())
        hard["loss_objectness"], hard["loss_rpn_box_reg"] = cls_hard, box_hard
        return boxes, anchors, num_anchors_per_level

    def _rcn(self, image_list, s_feats, t_feats, proposals, targets, supervised, hard, stats, ctx):  # noqa: ANN001, ANN202
        """The RoI head's hard losses on the supervised images' sampled RoIs; the RCN terms' samples (plus, on
        images without targets, the student's top proposals). Returns each RoI row's image (or None)."""
        heads = self.student.roi_heads
        num_images = len(proposals)
        sup = [i for i, ok in enumerate(supervised) if ok]
        rois = [p[:0] for p in proposals]
        labels = [torch.zeros(0, dtype=torch.int64, device=p.device) for p in proposals]
        regression_targets = [p.new_zeros(0, 4) for p in proposals]
        if sup:
            sampled, _, labels_s, regression_s = heads.select_training_samples([proposals[i] for i in sup],
                                                                               [targets[i] for i in sup])
            for k, i in enumerate(sup):
                rois[i], labels[i], regression_targets[i] = sampled[k], labels_s[k], regression_s[k]
        unlabelled_rows = len(sup) < num_images and "rcn" in self._reads_unlabelled
        if unlabelled_rows:
            # No ground truth to sample against: the student's best proposals (filter_proposals sorts by score).
            top = heads.fg_bg_sampler.batch_size_per_image
            for i in range(num_images):
                if not supervised[i]:
                    rois[i] = proposals[i][:top]
                    labels[i] = torch.zeros(len(rois[i]), dtype=torch.int64, device=rois[i].device)
                    regression_targets[i] = rois[i].new_zeros(len(rois[i]), 4)
        if not sup and not unlabelled_rows:
            zero = sum(f.sum() for f in s_feats.values()) * 0.0
            stats["rcn_hard_cls"], stats["rcn_smooth_l1"] = 0.0, 0.0
            hard["loss_classifier"], hard["loss_box_reg"] = zero, zero
            return None
        box_features = heads.box_head(heads.box_roi_pool(s_feats, rois, image_list.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        device = class_logits.device
        row_images = torch.repeat_interleave(torch.arange(num_images, device=device),
                                             torch.tensor([len(r) for r in rois], device=device))
        if len(sup) == num_images:
            cls_hard, box_hard = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        elif sup:
            rows = torch.tensor(supervised, device=device)[row_images]
            cls_hard, box_hard = fastrcnn_loss(class_logits[rows], box_regression[rows], [labels[i] for i in sup],
                                               [regression_targets[i] for i in sup])
        else:
            cls_hard = box_hard = class_logits.sum() * 0.0

        if "rcn" in self._reads:
            t_heads = self.teacher.roi_heads
            with torch.no_grad():
                t_box = t_heads.box_head(t_heads.box_roi_pool(t_feats, rois, image_list.image_sizes))
                t_logits, t_regression = t_heads.box_predictor(t_box)
            all_labels = torch.cat(labels, dim=0)
            if unlabelled_rows:  # DKD's target class on an RoI without ground truth: the teacher's
                rows = ~torch.tensor(supervised, device=device)[row_images]
                all_labels[rows] = t_logits[rows].argmax(dim=1)
            ctx.rcn = RCNSamples(class_logits, box_regression, t_logits, t_regression, all_labels,
                                 torch.cat(regression_targets, dim=0), self.class_weights)
        stats["rcn_hard_cls"], stats["rcn_smooth_l1"] = float(cls_hard.detach()), float(box_hard.detach())
        hard["loss_classifier"], hard["loss_box_reg"] = cls_hard, box_hard
        return row_images


def _pair_subset(pair: FeaturePair, keep: list[int]) -> FeaturePair:
    """``pair`` on the batch images ``keep`` only."""
    index = torch.tensor(keep, device=pair.adapted.device)
    anchors = [pair.anchors[i] for i in keep] if pair.anchors is not None else None
    return replace(pair, adapted=pair.adapted.index_select(0, index), teacher=pair.teacher.index_select(0, index),
                   anchors=anchors)
