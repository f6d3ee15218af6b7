"""Distillation terms as pluggable units: one module per term, registered with :func:`register_term`.

Importing this package imports every module in it once (the one place terms are imported), so a new term
is its file and its test. See :mod:`detdistill.distill.terms.registry` for the registry and the recipes.

>>> [t.name for t in list_terms()][:5]
['rpn_soft', 'rpn_bounded', 'rcn_soft', 'rcn_bounded', 'hint']
>>> resolve_recipe("chen2017").terms
('rpn_soft', 'rpn_bounded', 'rcn_soft', 'rcn_bounded', 'hint')
"""

from __future__ import annotations

import importlib
import pkgutil

from .context import FeaturePair, RCNSamples, RPNSamples, TermContext
from .registry import (
    DEFAULT_RECIPE,
    JOINS,
    READS,
    RECIPES,
    NonNegative,
    Recipe,
    TermConfig,
    TermSpec,
    active_terms,
    format_term_table,
    get_term,
    list_terms,
    make_terms_config,
    register_recipe,
    register_term,
    resolve_recipe,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

register_recipe("chen2017", ("rpn_soft", "rpn_bounded", "rcn_soft", "rcn_bounded", "hint"),
                "the paper's objective (Chen et al. 2017), every term at the paper's defaults")
register_recipe("objects", ("rcn_soft", "hint_gt"),
                "RCN soft cross-entropy + imitation inside the ground-truth boxes; no bounded regression, "
                "no RPN terms")
register_recipe("pkd", ("pkd",), "PKD alone: per-channel standardised feature imitation (Cao et al. 2022) on every "
                "stride-paired level; no logit or regression term")
register_recipe("none", (), "no distillation term (the Distiller trains the plain student)")

TermsConfig = make_terms_config()

__all__ = [
    "DEFAULT_RECIPE", "JOINS", "READS", "RECIPES", "FeaturePair", "NonNegative", "RCNSamples", "RPNSamples",
    "Recipe", "TermConfig", "TermContext", "TermSpec", "TermsConfig", "active_terms", "format_term_table", "get_term", "list_terms",
    "make_terms_config", "register_recipe", "register_term", "resolve_recipe",
]
