"""The term plan: which registered terms a config switches on, what they read, how their values join the loss.

:class:`TermPlan` is built from a :class:`~detdistill.distill.config.DistillConfig` once; each step it runs the
active terms on their views of the step's samples (:meth:`TermPlan.compute`) and joins the paper's terms
with torchvision's four losses as the paper does (:meth:`TermPlan.join`). :class:`DistillPlan` is its
description for people (the dry-run and ``plan.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import Tensor

from .config import DistillConfig
from .losses import classification_distillation_loss, regression_distillation_loss
from .pairing import HintPair
from .terms import TermContext, TermSpec, active_terms, list_terms, resolve_recipe

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


class TermPlan:
    """The active terms of ``config`` (recipe, then switches) and what they read."""

    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.terms: list[TermSpec] = active_terms(config)
        self.reads = {r for spec in self.terms for r in spec.reads}
        self.reads_unlabelled = {r for spec in self.terms if not spec.needs_labels for r in spec.reads}
        """What the terms that also see unlabelled images read: only those samples are made for such images."""

    def describe(self) -> DistillPlan:
        """The plan's description, before the pairing adds hint pairs, notes and the teacher start."""
        cfg, active = self.config, {spec.name for spec in self.terms}
        recipe = resolve_recipe(cfg.recipe)
        return DistillPlan(
            terms={spec.name: spec.name in active for spec in list_terms()},
            recipe=recipe.name if cfg.recipe != "default" else f"default (= {recipe.name})",
            weights={spec.name: float(spec.weight(cfg)) for spec in self.terms},
            loss_keys={spec.name: spec.loss_key for spec in self.terms},
            labelled_only=[spec.name for spec in self.terms if spec.needs_labels],
            anchors_checked="rpn" in self.reads)

    def compute(self, view_of: Callable[[TermSpec], TermContext | None], zero: Callable[[], Tensor],
                stats: dict[str, float]) -> tuple[dict[str, Tensor], dict[str, tuple[float, Tensor]]]:
        """Each term on its view (``view_of(spec)``; None: nothing for it in this batch, so ``zero()``).

        Returns ``(own, joining)``: the terms with their own key (weighted) and those that join a torchvision
        loss, ``{key: (weight, value)}``; each term's unweighted value goes to ``stats[name]``."""
        cfg = self.config
        own: dict[str, Tensor] = {}
        joining: dict[str, tuple[float, Tensor]] = {}
        for spec in self.terms:
            view = view_of(spec)
            value = zero() if view is None else spec.compute(view, spec.settings(cfg), cfg)
            stats[spec.name] = float(value.detach())
            if spec.combine is not None:
                joining[spec.loss_key] = (spec.weight(cfg), value)
            else:
                own[spec.loss_key] = value if spec.weighted_inside else spec.weight(cfg) * value
        return own, joining

    def join(self, supervised: dict[str, Tensor], joining: dict[str, tuple[float, Tensor]]) -> dict[str, Tensor]:
        """torchvision's four losses, each joined by its paper term where that is on (eq. 1-5 of the paper):
        ``(1−w)·L_hard + w·L_soft`` with the soft term's weight w (= 1−μ), ``λ·(L_smoothL1 + w·L_b)`` with the
        bounded term's weight w (= ν). λ scales a regression loss only where its bounded term joins it, so with
        every term off the Distiller trains exactly the plain student (torchvision's own loss weights)."""
        out = {}
        for key in ("loss_objectness", "loss_classifier"):
            weight, value = joining.get(key, (0.0, None))
            out[key] = classification_distillation_loss(supervised[key], value, 1.0 - weight)
        for key in ("loss_rpn_box_reg", "loss_box_reg"):
            weight, value = joining.get(key, (0.0, None))
            reg = regression_distillation_loss(supervised[key], value, weight)
            out[key] = reg if value is None or self.config.lambda_reg == 1.0 else self.config.lambda_reg * reg
        return out
