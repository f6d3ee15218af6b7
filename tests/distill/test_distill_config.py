"""The distillation section: every term a TermConfig section, the paper's old flat keys as aliases."""

from __future__ import annotations

import logging

import pytest

from detdistill.config import load_config
from detdistill.distill.config import DistillConfig
from detdistill.distill.terms import TermConfig, active_terms, list_terms


def test_every_term_has_a_section_of_the_same_shape():
    cfg = DistillConfig()
    for spec in list_terms():
        section = spec.settings(cfg)
        assert isinstance(section, TermConfig), spec.name
        assert section.enabled is None and spec.weight(cfg) == spec.default_weight


def test_paper_defaults_live_in_the_term_sections():
    t = DistillConfig().terms
    assert (t.rpn_soft.weight, t.rcn_soft.weight) == (0.5, 0.5)  # 1 - mu, mu = 0.5
    assert (t.rpn_bounded.weight, t.rcn_bounded.weight, t.rpn_bounded.margin) == (0.5, 0.5, 0.0)  # nu, m
    assert (t.hint.weight, t.hint.kind, t.rpn_soft.anchors) == (0.5, "l2", "sampled")  # gamma


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("distill.mu=0.2", ("rpn_soft", "weight"), 0.8),
    ("distill.mu=0.2", ("rcn_soft", "weight"), 0.8),
    ("distill.nu=0.7", ("rcn_bounded", "weight"), 0.7),
    ("distill.margin=0.1", ("rpn_bounded", "margin"), 0.1),
    ("distill.gamma=2", ("hint", "weight"), 2.0),
    ("distill.hint_kind=l1", ("hint", "kind"), "l1"),
    ("distill.rpn_soft_anchors=all", ("rpn_soft", "anchors"), "all"),
    ("distill.hint=false", ("hint", "enabled"), False),
])
def test_old_flat_keys_load_onto_the_sections_with_a_note(old, new, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="detdistill.config"):
        cfg = load_config(None, [old])
    assert getattr(getattr(cfg.distill.terms, new[0]), new[1]) == pytest.approx(expected) if isinstance(
        expected, float) else getattr(getattr(cfg.distill.terms, new[0]), new[1]) == expected
    assert "is an old name; it still loads" in caplog.text and old.split("=")[0] in caplog.text


def test_old_names_work_as_python_keywords_and_attributes():
    cfg = DistillConfig(recipe="none", mu=0.3, gamma=0.25, rcn_soft=True)
    assert cfg.terms.rcn_soft.weight == pytest.approx(0.7) and cfg.mu == pytest.approx(0.3)
    assert cfg.terms.hint.weight == 0.25 and cfg.gamma == 0.25
    assert [s.name for s in active_terms(cfg)] == ["rcn_soft"]
    cfg.nu = 0.9
    assert cfg.terms.rpn_bounded.weight == cfg.terms.rcn_bounded.weight == 0.9


def test_a_yaml_file_with_old_and_new_keys_loads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("distill:\n  recipe: chen2017\n  gamma: 1.5\n  terms:\n    pkd:\n      enabled: true\n")
    cfg = load_config(path)
    assert cfg.distill.terms.hint.weight == 1.5 and cfg.distill.terms.pkd.enabled is True


@pytest.mark.parametrize("override, message", [
    ("distill.recipe=pkdd", "'distill.recipe': unknown value 'pkdd'; did you mean 'pkd'? choose one of default, "),
    ("distill.recipe=chen2071", "did you mean 'chen2017'?"),
    ("distill.terms.pkdd.enabled=true", "unknown key 'distill.terms.pkdd'; did you mean 'distill.terms.pkd'?"),
    ("distill.terms.hint.wieght=2", "did you mean 'distill.terms.hint.weight'?"),
])
def test_a_misspelt_recipe_or_term_is_refused_when_the_config_is_built_with_a_suggestion(override, message):
    from detdistill.config import load_config
    from detdistill.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, [override])  # no data read, no teacher loaded
    assert message in str(info.value)


def test_a_recipe_name_built_in_python_is_checked_with_a_suggestion_too():
    from detdistill.distill.terms import resolve_recipe
    from detdistill.errors import PairingError

    with pytest.raises(PairingError, match="unknown value 'pkdd'; did you mean 'pkd'"):
        resolve_recipe("pkdd")
