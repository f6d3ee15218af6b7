"""The teacher-student pairing: one training forward that returns the named losses of the active terms.

``Distiller(teacher, student, config)`` composes torchvision's own Faster R-CNN parts (transform, backbone,
RPN head, anchor generator, box coder, proposal filter, anchor matcher and sampler, RoI sampler, RoI pool,
box head, predictor) without patching them, because ``rpn.forward`` and ``roi_heads.forward`` sample
internally and hide which anchors and RoIs they used. The Distiller makes the sampling once, gets the
teacher's outputs once from its :class:`~detdistill.distill.teacher.TeacherSource` (and runs the teacher's
RoI head on the student's RoIs), fills one :class:`~detdistill.distill.terms.TermContext` and calls the terms
that ``config`` switches on (the registry in :mod:`detdistill.distill.terms`). It composes named parts, as
torchvision's ``GeneralizedRCNN`` does:

* :mod:`~detdistill.distill.samples`: the student's RPN/RoI samples and its supervised losses;
* :mod:`~detdistill.distill.unlabelled`: the teacher's part on images without labels;
* :mod:`~detdistill.distill.pairing`: teacher/student checks, the adaptation layers, the teacher on the
  student's samples;
* :mod:`~detdistill.distill.plan`: the active terms, their views, and how they join the loss.

The paper's terms (recipe ``chen2017``) combine as the paper does:

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
  detections above :data:`~detdistill.distill.unlabelled.TEACHER_BOX_SCORE` on unlabelled images), the RPN
  soft term on anchors the teacher's objectness samples (its positives first, the rest random background),
  and the RCN terms on the student's top proposals (no ground truth added; DKD's target class is the
  teacher's);
* with ``distill.pseudo_label_score`` the teacher's detections above it become the image's hard targets,
  and the supervised losses run on it like on a labelled image.

The teacher is frozen: no gradients, always in eval mode, not registered as a submodule (so it is not in
``state_dict()``, ``parameters()``, the optimizer or DDP's buckets), moved along with ``.to()``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN

from ..data.unlabeled import is_labelled
from ..errors import PairingError
from .config import DistillConfig
from .pairing import (HintPair, FeaturePairing, check_anchor_settings, check_pairing, init_from_teacher,
                      pair_subset, rcn_pair, rpn_pair)
from .plan import DistillPlan, TermPlan
from .samples import RoIStep, RPNStep, roi_samples, rpn_samples
from .teacher import LiveTeacher, TeacherOutputs, TeacherSource
from .terms import TermContext, TermSpec
from .unlabelled import TEACHER_BOX_SCORE, UnlabelledImages, labelled_view

__all__ = ["Distiller", "DistillPlan", "HintPair", "PairingError", "TEACHER_BOX_SCORE", "TeacherOutputs",
           "TeacherSource"]


class Distiller(nn.Module):
    """Teacher + student → the named loss dict of the active distillation terms in training mode.

    Args:
        teacher: a trained torchvision ``FasterRCNN`` (frozen here).
        student: the ``FasterRCNN`` to train (its own modules are used for every student computation).
        config: :class:`~detdistill.distill.config.DistillConfig`: the recipe, the switches and each term's knobs.
        image_size: input size used to measure feature strides for pairing (default: the student's
            transform's ``min_size`` squared).
        teacher_source: where the teacher's backbone and RPN-head outputs come from, a
            :class:`~detdistill.distill.teacher.TeacherSource`: a
            :class:`~detdistill.distill.teacher_cache.TeacherCache`, or None for the live ``teacher``.

    Each step makes the student's samples once (anchors, RoIs), gets the teacher's outputs once (plus its
    RoI head on the student's RoIs when a term reads them), fills one
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
                 image_size: tuple[int, int] | None = None, teacher_source: TeacherSource | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DistillConfig()
        self.student = student
        object.__setattr__(self, "teacher", teacher)  # deliberately not a registered submodule
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()
        self.teacher_source: TeacherSource = teacher_source or LiveTeacher(teacher)
        self.stats: dict[str, float] = {}
        self.terms = TermPlan(cfg)
        check_pairing(teacher, student, cfg, self.terms.reads)
        for spec in self.terms.terms:
            if spec.check is not None:
                spec.check(teacher, student, cfg)
        size = image_size or (int(student.transform.min_size[-1]),) * 2
        self.plan: DistillPlan = self.terms.describe()
        if self.plan.anchors_checked:
            check_anchor_settings(teacher, student, size)
        if cfg.init_from_teacher:
            self.plan.init_from_teacher = init_from_teacher(teacher, student)
        self.adapters = nn.ModuleDict()
        self.pairing = FeaturePairing()
        if "features" in self.terms.reads:
            self.pairing = FeaturePairing.build(teacher, student, size, cfg, self.terms.terms, self.adapters)
            self.plan.hint_pairs, self.plan.notes = self.pairing.reports, self.pairing.notes
        self.unlabelled = UnlabelledImages(teacher, cfg.pseudo_label_score, self.terms.reads_unlabelled)
        num_classes = student.roi_heads.box_predictor.cls_score.out_features
        class_weights = torch.ones(num_classes)
        class_weights[0] = cfg.background_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

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
        student, plan = self.student, self.terms
        image_list, targets = student.transform(images, targets)
        s_feats = student.backbone(image_list.tensors)
        labelled = [is_labelled(t) for t in targets]
        teacher_out = TeacherOutputs()
        if plan.terms or (not all(labelled) and self.config.pseudo_label_score is not None):
            teacher_out = self.teacher_source.teacher_outputs(image_list, targets, need_rpn="rpn" in plan.reads)
        # Unlabelled images: the teacher labels them (pseudo-labels) or gives the boxes of their masks.
        batch = self.unlabelled.label(image_list, teacher_out.features, targets, labelled)
        stats = dict(batch.stats)

        # The student's samples and supervised losses (supervised images only), and the teacher on them.
        ctx = TermContext()
        rpn = rpn_samples(student.rpn, image_list, s_feats, batch.targets, batch.supervised)
        if "rpn" in plan.reads:
            ctx.rpn = rpn_pair(self.teacher, image_list, rpn, teacher_out)
        stats["rpn_hard_cls"], stats["rpn_smooth_l1"] = float(rpn.loss_objectness.detach()), float(rpn.loss_rpn_box_reg.detach())
        unlabelled_rows = not all(batch.supervised) and "rcn" in plan.reads_unlabelled
        roi = roi_samples(student.roi_heads, image_list, s_feats, rpn.proposals, batch.targets, batch.supervised,
                          unlabelled_rows)
        if "rcn" in plan.reads and roi.class_logits is not None:
            ctx.rcn = rcn_pair(self.teacher, image_list, teacher_out.features, roi, batch.supervised,
                               self.class_weights)
        stats["rcn_hard_cls"], stats["rcn_smooth_l1"] = float(roi.loss_classifier.detach()), float(roi.loss_box_reg.detach())
        if ctx.rpn is not None and not all(batch.supervised) and "rpn" in plan.reads_unlabelled:
            # After every supervised sample is drawn, so their RNG use is that of the labelled images alone.
            ctx.rpn = UnlabelledImages.sample_anchors(ctx.rpn, batch.supervised, rpn.per_image,
                                                      student.rpn.fg_bg_sampler)
        if "gt_boxes" in plan.reads:
            ctx.gt_boxes = [batch.teacher_boxes.get(i, t["boxes"]) for i, t in enumerate(batch.targets)]

        # The terms, each on its view of the step; the paper's join torchvision's four losses.
        view_of = self._views(ctx, labelled, rpn, roi, s_feats, teacher_out.features)
        own, joining = plan.compute(view_of, lambda: image_list.tensors.new_zeros(()), stats)
        stats.update(ctx.stats)
        self.stats = stats
        supervised = {"loss_objectness": rpn.loss_objectness, "loss_rpn_box_reg": rpn.loss_rpn_box_reg,
                      "loss_classifier": roi.loss_classifier, "loss_box_reg": roi.loss_box_reg}
        return {**plan.join(supervised, joining), **own}

    def _views(self, ctx: TermContext, labelled: list[bool], rpn: RPNStep, roi: RoIStep, s_feats: dict[str, Tensor],
               t_feats: dict[str, Tensor]) -> Callable[[TermSpec], TermContext | None]:
        """What each term reads this step: ``ctx``, restricted to the labelled images for a ``needs_labels``
        term (None when there are none), with its feature pairs (adapted once per adapter and step)."""
        keep = [i for i, ok in enumerate(labelled) if ok]
        adapted: dict[str, Tensor] = {}
        labelled_only: list[TermContext] = []  # made once, on the first term that needs it

        def view_of(spec: TermSpec) -> TermContext | None:
            only_labelled = spec.needs_labels and len(keep) < len(labelled)
            if only_labelled and not keep:
                return None  # no labelled image in this batch: nothing to compare
            view = ctx
            if only_labelled:
                if not labelled_only:
                    labelled_only.append(labelled_view(ctx, labelled, rpn.per_image, roi.row_images))
                view = labelled_only[0]
            if "features" in spec.reads:
                anchors = rpn.anchors if "anchors" in spec.reads else None
                pairs = self.pairing.feature_pairs(spec, self.adapters, s_feats, t_feats, adapted, anchors,
                                                   rpn.anchors_per_level)
                view = replace(view, features=[pair_subset(p, keep) for p in pairs] if only_labelled else pairs)
            return view

        return view_of
