"""The registry of distillation terms and recipes (a recipe = a named set of terms).

A term is one file in this package that calls :func:`register_term` on its ``compute`` function. The
registry imports nothing it registers; :mod:`detdistill.distill.terms` imports every module of the package
once (the one place), so adding a term is its file and its test. ``DistillConfig.terms`` (one section per
term that has its own settings), the dry-run report and the cells of ``detdistill ablate`` are all derived
from :func:`list_terms`, so a registered term cannot stay on unnoticed.

Every term's settings are one :class:`TermConfig` subclass declared in its file (``enabled``, ``weight`` and
the term's own knobs, with their ranges), so the paper's terms are sections like every other
(``distill.terms.hint.weight``). Which terms are active (:func:`active_terms`): the recipe's terms
(``distill.recipe``), then each section's explicit ``enabled`` on top (``distill.terms.pkd.enabled=true``); a
switch left at ``null`` follows the recipe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import PairingError
from ...typed_config import Annotated, at_least

NonNegative = Annotated[float, at_least(0.0, integer=False)]
"""A weight or knob that must be a finite number >= 0 (checked when the config is built)."""

JOINS = {"cls": ("loss_objectness", "loss_classifier"), "reg": ("loss_rpn_box_reg", "loss_box_reg")}
"""The torchvision loss keys a ``combine`` term may join."""


@dataclass
class TermConfig:
    """The shape every term's section shares; a term's file subclasses it with its own defaults and knobs."""

    enabled: bool | None = None
    """Switch this term on/off (null: the recipe decides)."""
    weight: NonNegative = 1.0
    """Weight of the term in the total loss."""


READS = {
    "rpn": "RPN outputs of both models on the student's sampled anchors",
    "rcn": "RoI-head outputs of both models on the student's sampled RoIs",
    "features": "paired feature levels (adapted student, teacher)",
    "gt_boxes": "ground-truth boxes on the batch canvas",
    "anchors": "the student's anchors per level",
}


@dataclass(frozen=True)
class TermSpec:
    """One registered term.

    ``compute(ctx, settings, distill_config) -> Tensor`` returns the term's unweighted value (``settings`` is
    its section of ``DistillConfig.terms``, a :class:`TermConfig`; ``distill_config`` carries the shared knobs).
    ``loss_key``: the loss-dict key it is written under, ``settings.weight * value``; or, with ``combine``
    (``"cls"``/``"reg"``), the torchvision key it joins as the paper does: ``(1−w)·L_hard + w·L_soft`` (w = 1−μ)
    or ``λ·(L_smoothL1 + w·L_b)`` (w = ν).
    """

    name: str
    compute: Callable[..., Any]
    reads: tuple[str, ...]
    summary: str
    reference: str
    config: type
    loss_key: str
    combine: str | None = None
    adapter_init: str | None = None
    excludes: tuple[str, ...] = ()
    check: Callable[..., None] | None = None
    order: int = 100
    weighted_inside: bool = False
    """``compute`` applies its own weights (e.g. separate fg/bg); ``weight`` is then only reported."""
    needs_labels: bool = False
    """The term compares to ground truth (bounded regression, GT-box masks): it sees only the batch's labelled
    images (``data.unlabeled``); every other term also sees the unlabelled ones."""

    @property
    def default_weight(self) -> float:
        return float(self.config().weight)

    def settings(self, distill_config: Any) -> Any:
        return getattr(distill_config.terms, self.name)

    def weight(self, distill_config: Any) -> float:
        return float(self.settings(distill_config).weight)

    def switch(self, distill_config: Any) -> bool | None:
        """The explicit on/off of this term in ``distill_config`` (None: follow the recipe)."""
        return self.settings(distill_config).enabled


@dataclass(frozen=True)
class Recipe:
    name: str
    terms: tuple[str, ...]
    summary: str


_TERMS: dict[str, TermSpec] = {}
RECIPES: dict[str, Recipe] = {}
DEFAULT_RECIPE = "pkd"
"""What ``distill.recipe=default`` (the config's default) means; chosen on validation (BENCHMARKS.md)."""


def register_term(name: str, *, reads: tuple[str, ...], summary: str, reference: str, config: type,
                  default_weight: float | None = None, loss_key: str | None = None, combine: str | None = None,
                  adapter_init: str | None = None, excludes: tuple[str, ...] = (),
                  check: Callable[..., None] | None = None, order: int = 100, weighted_inside: bool = False,
                  needs_labels: bool = False) -> Callable:
    """Decorator: register ``compute`` as the term ``name`` (see :class:`TermSpec`).

    ``config`` is the term's :class:`TermConfig` subclass (any dataclass with ``enabled`` and ``weight``);
    ``default_weight``, when given, must equal its ``weight`` default (a second statement of the authors' weight that cannot drift)."""
    unknown = [r for r in reads if r not in READS]
    if unknown:
        raise ValueError(f"term {name!r}: unknown reads {unknown}; choose from {list(READS)}")
    names = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    if not {"enabled", "weight"} <= names:
        raise TypeError(f"term {name!r}: config= must be a dataclass with 'enabled' and 'weight' fields (subclass "
                        f"TermConfig), got {config!r}")
    if default_weight is not None and float(config().weight) != float(default_weight):
        raise ValueError(f"term {name!r}: default_weight={default_weight} but {config.__name__}.weight defaults "
                         f"to {config().weight}")
    key = loss_key or f"loss_{name}"
    if combine is not None and key not in JOINS.get(combine, ()):
        # A combined term is only read back under the torchvision keys it joins; any other key would be dropped.
        raise ValueError(f"term {name!r}: combine={combine!r} joins one of {list(JOINS.get(combine, ()))}, "
                         f"not loss_key={key!r}" if combine in JOINS else
                         f"term {name!r}: unknown combine={combine!r}; choose from {list(JOINS)}")

    def deco(fn: Callable) -> Callable:
        if name in _TERMS and _TERMS[name].compute is not fn:
            raise ValueError(f"term {name!r} is registered twice")
        _TERMS[name] = TermSpec(name, fn, tuple(reads), summary, reference, config, key, combine, adapter_init,
                                tuple(excludes), check, order, weighted_inside, needs_labels)
        return fn

    return deco


def register_recipe(name: str, terms: tuple[str, ...], summary: str) -> None:
    RECIPES[name] = Recipe(name, tuple(terms), summary)


def list_terms() -> list[TermSpec]:
    """Every registered term: the paper's five first (in the paper's order), then the others by name."""
    return sorted(_TERMS.values(), key=lambda s: (s.order, s.name))


def get_term(name: str) -> TermSpec:
    if name not in _TERMS:
        raise PairingError(f"unknown distillation term {name!r}; registered: {[s.name for s in list_terms()]}")
    return _TERMS[name]


def resolve_recipe(name: str) -> Recipe:
    """``default`` -> :data:`DEFAULT_RECIPE`; an unknown name is a PairingError naming the known ones."""
    key = DEFAULT_RECIPE if name == "default" else name
    if key not in RECIPES:
        import difflib

        close = difflib.get_close_matches(str(name), ["default", *RECIPES], n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PairingError(f"distill.recipe: unknown value {name!r}; {hint}choose one of {['default', *RECIPES]}")
    return RECIPES[key]


def active_terms(distill_config: Any) -> list[TermSpec]:
    """The terms ``distill_config`` switches on (recipe, then explicit switches), in registry order."""
    chosen = set(resolve_recipe(distill_config.recipe).terms)
    for spec in list_terms():
        switch = spec.switch(distill_config)
        if switch is True:
            chosen.add(spec.name)
        elif switch is False:
            chosen.discard(spec.name)
    active = [s for s in list_terms() if s.name in chosen]
    for spec in active:
        clash = [o for o in spec.excludes if o in chosen]
        if clash:
            raise PairingError(f"distill: term {spec.name!r} replaces {clash[0]!r}; switch one off "
                               f"(distill.terms.{clash[0]}.enabled=false or distill.terms.{spec.name}.enabled=false)")
    return active


def make_terms_config() -> type:
    """The ``DistillConfig.terms`` dataclass: one section per registered term, in registry order."""
    fields = [(s.name, s.config, dataclasses.field(default_factory=s.config)) for s in list_terms()]
    cls = dataclasses.make_dataclass("TermsConfig", fields)
    cls.__doc__ = "One section per registered term (``distill.terms.<name>.<field>``)."
    # Lives as ``detdistill.distill.terms.TermsConfig`` (assigned there), so configs pickle (ablate's workers).
    cls.__module__ = __name__.rsplit(".", 1)[0]
    return cls


def format_term_table() -> str:
    """The registry as text (``detdistill distill --list-terms``)."""
    lines = [f"{'term':12s} {'reads':28s} {'weight':>8s}  {'loss key':17s} summary / reference"]
    for s in list_terms():
        lines.append(f"{s.name:12s} {'+'.join(s.reads):28s} {s.default_weight:>8g}  {s.loss_key:17s} {s.summary}")
        lines.append(f"{'':12s} {'':28s} {'':>8s}  {'':17s} [{s.reference}]")
    lines.append("")
    lines.append("recipes (distill.recipe=NAME; 'default' = " + DEFAULT_RECIPE + "):")
    for r in RECIPES.values():
        lines.append(f"  {r.name:10s} {', '.join(r.terms) or '(no terms)'}: {r.summary}")
    return "\n".join(lines)
