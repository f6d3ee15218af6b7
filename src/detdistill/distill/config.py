"""The distillation section of a config (``distill.*``): which terms are on and every term's knobs.

Every term, the paper's five included, has one section ``distill.terms.<name>`` of the same shape
(:class:`~detdistill.distill.terms.TermConfig`: ``enabled`` and ``weight``, plus the term's own knobs),
declared in the term's file and gathered here from the registry. The knobs shared by several terms (the soft
terms' temperature and background weight, λ, the feature pairing and adaptation layers) and the teacher's
safety checks stay flat in :class:`DistillConfig`.

The paper's flat names of earlier versions still work, in YAML, in ``key=value`` overrides (with a note) and
as Python keywords and attributes; each maps onto the term sections:

==========================================  =================================================================
old key                                     now
==========================================  =================================================================
``mu`` (μ, the hard loss's share)           ``terms.rpn_soft.weight = terms.rcn_soft.weight = 1 − μ``
``nu`` (ν)                                  ``terms.rpn_bounded.weight = terms.rcn_bounded.weight``
``margin`` (m)                              ``terms.rpn_bounded.margin = terms.rcn_bounded.margin``
``gamma`` (γ)                               ``terms.hint.weight``
``hint_kind``                               ``terms.hint.kind``
``rpn_soft_anchors``                        ``terms.rpn_soft.anchors``
``rpn_soft`` ``rcn_soft`` ``rpn_bounded``   ``terms.<name>.enabled``
``rcn_bounded`` ``hint``
==========================================  =================================================================

>>> cfg = DistillConfig(recipe="chen2017", mu=0.25, gamma=0.5)
>>> cfg.terms.rcn_soft.weight, cfg.terms.hint.weight, cfg.mu
(0.75, 0.5, 0.25)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from ..typed_config import Alias, Annotated, at_least, in_range, positive
from .terms import RECIPES, TermConfig, TermsConfig

__all__ = ["DistillConfig", "RecipeName", "TermConfig", "TermsConfig"]

RecipeName = Literal[("default", *RECIPES)]  # type: ignore[valid-type]
"""The recipes the registry knows (every one is registered in ``distill/terms/__init__.py``, imported above): a
choice, so a misspelt ``distill.recipe`` is refused with a did-you-mean when the config is built."""


@dataclass
class DistillConfig:
    """Which distillation terms are on (a recipe plus switches) and every term's knobs.

    ``DistillConfig()`` is the default recipe; ``DistillConfig(recipe="chen2017")`` the paper's objective
    (Chen et al. 2017) with the paper's defaults (``detdistill distill --list-terms`` lists every term).
    """

    recipe: RecipeName = "default"
    """Named set of terms: ``default`` (the recipe chosen on validation, BENCHMARKS.md), ``chen2017`` (the
    paper), ``objects``, ``pkd``, ``none``; ``terms.<name>.enabled`` adds or removes single terms."""
    terms: TermsConfig = field(default_factory=TermsConfig)
    """One section per registered term: ``distill.terms.<name>.enabled``, ``.weight`` and the term's knobs."""
    lambda_reg: Annotated[float, at_least(0.0, integer=False)] = 1.0
    """λ: weight of a regression loss against its classification loss in L_RPN and L_RCN, applied where the
    regression loss is joined by its bounded term (with every term off the losses stay the student's own)."""
    background_weight: Annotated[float, positive()] = 1.5
    """w_0: class weight of background in the soft cross-entropies (``rpn_soft``, ``rcn_soft``; others weigh 1)."""
    temperature: Annotated[float, positive()] = 1.0
    """T: softmax temperature of the soft targets of ``rpn_soft`` and ``rcn_soft`` (T = 1 works best for
    detection)."""
    hint_levels: list[str] | None = None
    """Teacher levels the feature terms read: FPN level keys of the teacher, or None for every level paired by
    stride."""
    guided_levels: list[str] | None = None
    """Student guided layers, in the same order as ``hint_levels`` (None: paired by stride)."""
    adaptation: bool = True
    """Adaptation layer (1×1 conv) between guided and hint layers; off only when channels match."""
    adapter_init: Literal["zero", "kaiming"] = "zero"
    """Adaptation layer initialisation (the paper does not say): ``zero`` (the student's features get no hint
    gradient until the adapter has learnt a projection) or ``kaiming`` (random; measured on the synthetic
    data, a random adapter made the hint cost the student mAP, see BENCHMARKS.md). A term may ask for its own
    start (PKD's is random)."""
    init_from_teacher: bool = False
    """Copy every teacher weight whose name and shape the student shares before training (FGD's start for
    homogeneous pairs); the dry-run reports what was copied."""
    teacher_min_map: Annotated[float, in_range(0.0, 1.0)] = 0.3
    """Refuse a teacher whose validation mAP@0.5 is below this (see ``allow_weak_teacher``)."""
    allow_weak_teacher: bool = False
    """Go on with a teacher below ``teacher_min_map``."""
    teacher_eval_images: Annotated[int, at_least(1)] = 64
    """Validation images scored to check the teacher before step 1."""
    teacher_cache: str | None = None
    """Folder of a teacher cache (the teacher's FPN levels and RPN outputs per training image and flip state,
    memory-mapped): built on first use, then read instead of running the teacher; refused on any mismatch of
    teacher file, transform, augmentation, dataset or dtype. None: run the teacher every step."""
    teacher_cache_dtype: Literal["float16", "float32"] = "float16"
    """Storage dtype of the teacher cache: ``float16`` (half the disk; losses within ~1e-3) or ``float32``."""
    pseudo_label_score: Annotated[float | None, in_range(0.0, 1.0, optional=True, text="a score in [0, 1], or null (off)")] = None
    """On unlabelled images (``data.unlabeled``), the teacher's detections scoring at least this become hard
    targets for the student's own losses; None (the default): unlabelled images get only the teacher's terms."""


# ------------------------------------------------------------------------------------ the old flat names
def _sections(*names: str) -> Any:
    return lambda cfg: [getattr(cfg.terms, n) for n in names]


# old name -> (the sections it maps onto, their field, value -> field value, field value -> value, type, text)
_FLAT: dict[str, tuple[Any, str, Any, Any, Any, str]] = {
    "mu": (_sections("rpn_soft", "rcn_soft"), "weight", lambda v: 1.0 - v, lambda w: 1.0 - w, float,
           "{prefix}terms.rpn_soft.weight and {prefix}terms.rcn_soft.weight = 1 - mu"),
    "nu": (_sections("rpn_bounded", "rcn_bounded"), "weight", None, None, float,
           "{prefix}terms.rpn_bounded.weight and {prefix}terms.rcn_bounded.weight"),
    "margin": (_sections("rpn_bounded", "rcn_bounded"), "margin", None, None, float,
               "{prefix}terms.rpn_bounded.margin and {prefix}terms.rcn_bounded.margin"),
    "gamma": (_sections("hint"), "weight", None, None, float, "{prefix}terms.hint.weight"),
    "hint_kind": (_sections("hint"), "kind", None, None, Literal["l2", "l1"], "{prefix}terms.hint.kind"),
    "rpn_soft_anchors": (_sections("rpn_soft"), "anchors", None, None, Literal["sampled", "all"],
                         "{prefix}terms.rpn_soft.anchors"),
    **{name: (_sections(name), "enabled", None, None, bool | None, f"{{prefix}}terms.{name}.enabled")
       for name in ("rpn_soft", "rcn_soft", "rpn_bounded", "rcn_bounded", "hint")},
}


def _flat_property(name: str) -> property:
    sections, attr, to_field, from_field, _, replacement = _FLAT[name]

    def get(self: DistillConfig) -> Any:
        value = getattr(sections(self)[0], attr)
        return from_field(value) if from_field else value

    def set_(self: DistillConfig, value: Any) -> None:
        for section in sections(self):
            setattr(section, attr, to_field(value) if to_field and value is not None else value)

    return property(get, set_, doc=f"Old name of {replacement.format(prefix='')}.")


for _name in _FLAT:
    setattr(DistillConfig, _name, _flat_property(_name))
DistillConfig.__config_aliases__ = {n: Alias(spec[4], spec[5]) for n, spec in _FLAT.items()}  # type: ignore[attr-defined]

_dataclass_init = DistillConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self: DistillConfig, *args: Any, **kwargs: Any) -> None:
    flat = {k: kwargs.pop(k) for k in list(kwargs) if k in _FLAT}
    _dataclass_init(self, *args, **kwargs)
    for key, value in flat.items():
        setattr(self, key, value)


DistillConfig.__init__ = _init  # type: ignore[method-assign]
