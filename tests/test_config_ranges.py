"""Every number of a config has a declared range, checked once when the config is built (term weights too)."""

from __future__ import annotations

import pytest

from detdistill.config import ConfigError, ExperimentConfig, load_config, validate_config
from detdistill.distill.terms import list_terms


@pytest.mark.parametrize(("override", "key", "allowed"), [
    ("distill.terms.pkd.weight=-1", "distill.terms.pkd.weight", "a finite number >= 0"),
    ("distill.terms.fgd.alpha=-1e-5", "distill.terms.fgd.alpha", "a finite number >= 0"),
    ("distill.terms.rcn_dkd.temperature=0", "distill.terms.rcn_dkd.temperature", "a finite number > 0"),
    ("distill.terms.hint_fgfi.psi=1.5", "distill.terms.hint_fgfi.psi", r"a number in \[0, 1\]"),
    ("distill.terms.rpn_soft.weight=2", "distill.terms.rpn_soft.weight", r"a number in \[0, 1\]"),
    ("distill.gamma=-1", "distill.terms.hint.weight", "a finite number >= 0"),
    ("distill.background_weight=-1", "distill.background_weight", "a finite number > 0"),
    ("distill.temperature=.nan", "distill.temperature", "a finite number > 0"),
    ("distill.lambda_reg=-0.5", "distill.lambda_reg", "a finite number >= 0"),
    ("distill.teacher_min_map=1.2", "distill.teacher_min_map", r"a number in \[0.0, 1.0\]"),
    ("train.seed=1180591620717411303424", "train.seed", r"an integer in \[0, 2\*\*32\)"),
    ("data.dataset_seed=-1", "data.dataset_seed", r"an integer in \[0, 2\*\*32\)"),
    ("optim.lr=0", "optim.lr", "a finite number > 0"),
    ("model.overrides={anchor_sizes: [[-8, 16], [32]]}", "model.overrides.anchor_sizes", "a positive number"),
])
def test_an_out_of_range_value_is_refused_naming_key_and_range(override, key, allowed):
    with pytest.raises(ConfigError, match=rf"'{key}': value .* is out of range; expected {allowed}"):
        load_config(None, [override])


def test_every_term_weight_is_range_checked():
    for spec in list_terms():
        with pytest.raises(ConfigError, match=rf"'distill.terms.{spec.name}.weight'"):
            load_config(None, [f"distill.terms.{spec.name}.weight=-1"])


def test_a_config_built_in_python_is_checked_by_validate_config():
    cfg = ExperimentConfig()
    cfg.distill.terms.pkd.weight = float("nan")
    with pytest.raises(ConfigError, match="'distill.terms.pkd.weight': value nan"):
        validate_config(cfg)
    cfg.distill.terms.pkd.weight = 0.0  # zero switches a term's contribution off; allowed
    assert validate_config(cfg) is cfg
