"""The term registry: what it lists, how recipes and switches resolve, and that config, dry-run, ablation
cells and the Distiller all derive from it (a new term needs no edit anywhere else)."""

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from detdistill import ablate as ablate_mod
from detdistill.config import DistillConfig, describe_fields, load_config
from detdistill.typed_config import _field_docs
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.distill import terms as terms_pkg
from detdistill.distill.distiller import Distiller, PairingError
from detdistill.distill.terms import (
    DEFAULT_RECIPE,
    RECIPES,
    active_terms,
    get_term,
    list_terms,
    make_terms_config,
    register_term,
    registry,
)
from detdistill.models import build_detector

PAPER = ["rpn_soft", "rpn_bounded", "rcn_soft", "rcn_bounded", "hint"]
NEW = [s.name for s in list_terms() if s.name not in PAPER]  # every term beyond the paper, from the registry
SIZE = 96


def _models():
    torch.manual_seed(0)
    return (build_detector("cpu_base", 7, min_size=SIZE, max_size=SIZE),
            build_detector("cpu_tiny", 7, min_size=SIZE, max_size=SIZE))


def _batch(n=2):
    ds = SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=40))
    images, targets = zip(*[ds[i] for i in range(n)])
    return list(images), list(targets)


def test_registry_lists_the_paper_terms_first_then_the_others():
    names = [s.name for s in list_terms()]
    assert names[:5] == PAPER and names[5:] == sorted(names[5:])
    assert {"fgd", "hint_fgfi", "hint_gt", "pkd", "rcn_dkd"} <= set(NEW)
    assert RECIPES["chen2017"].terms == tuple(PAPER)
    for spec in list_terms():
        assert spec.reads and spec.reference and spec.summary
        if spec.config is not None:
            docs = _field_docs(spec.config)
            missing = [f.name for f in dataclasses.fields(spec.config) if not docs.get(f.name)]
            assert not missing, f"{spec.name}: undocumented fields {missing}"
            assert spec.default_weight == spec.weight(DistillConfig())


def test_config_sections_derive_from_the_registry_and_load_from_keys():
    sections = [f.name for f in dataclasses.fields(DistillConfig().terms)]
    assert sections == [s.name for s in list_terms()]  # the paper's terms are sections like the others
    keys = {k for k, _, _ in describe_fields()}
    assert {"distill.terms.pkd.weight", "distill.terms.hint_fgfi.psi", "distill.recipe",
            "distill.terms.rpn_soft.enabled", "distill.terms.hint.weight"} <= keys
    assert "distill.rpn_soft" not in keys  # an old name: it loads (as an alias) but is not listed
    cfg = load_config(None, ["distill.recipe=chen2017", "distill.terms.pkd.enabled=true", "distill.terms.pkd.weight=3",
                             "distill.hint=false"])
    assert cfg.distill.terms.pkd.weight == 3.0
    assert [s.name for s in active_terms(cfg.distill)] == ["rpn_soft", "rpn_bounded", "rcn_soft", "rcn_bounded", "pkd"]
    with pytest.raises(Exception, match="did you mean 'distill.terms.pkd.weight'"):
        load_config(None, ["distill.terms.pkd.wieght=3"])


def test_recipes_and_switches_resolve():
    assert [s.name for s in active_terms(DistillConfig())] == list(RECIPES[DEFAULT_RECIPE].terms)
    assert [s.name for s in active_terms(DistillConfig(recipe="chen2017"))] == PAPER
    assert [s.name for s in active_terms(DistillConfig(recipe="objects"))] == ["rcn_soft", "hint_gt"]
    assert active_terms(DistillConfig(recipe="none")) == []
    cfg = DistillConfig(recipe="none", rcn_soft=True)
    assert [s.name for s in active_terms(cfg)] == ["rcn_soft"]
    with pytest.raises(ValueError, match=r"unknown value 'chen'; did you mean 'chen2017'\? choose one of \['default', 'chen2017'"):
        active_terms(DistillConfig(recipe="chen"))
    cfg = DistillConfig(recipe="chen2017")
    cfg.terms.rcn_dkd.enabled = True
    with pytest.raises(ValueError, match="'rcn_dkd' replaces 'rcn_soft'"):
        active_terms(cfg)


def test_ablation_cells_cover_every_term_alone_and_every_recipe():
    cells = ablate_mod.registry_cells()
    assert {f"only_{s.name}" for s in list_terms()} <= set(cells)
    assert {r for r, spec in RECIPES.items() if spec.terms} <= set(cells)
    # A cell resets every switch: a term switched on in the base config cannot leak into "only_hint".
    base = DistillConfig(recipe="chen2017", rpn_soft=True)
    base.terms.pkd.enabled = True
    cells["only_hint"].apply(base)
    assert [s.name for s in active_terms(base)] == ["hint"]


def test_a_new_term_shows_up_in_config_cells_and_the_distiller(monkeypatch):
    @dataclass
    class ProbeConfig:
        enabled: bool | None = None
        """Switch."""
        weight: float = 2.0
        """Weight."""

    monkeypatch.setattr(registry, "_TERMS", dict(registry._TERMS))

    @register_term("probe", reads=("features",), config=ProbeConfig, default_weight=2.0, summary="test probe",
                   reference="this test")
    def compute(ctx, settings, cfg):
        return torch.stack([p.adapted.pow(2).mean() for p in ctx.features]).mean()

    assert "probe" in [s.name for s in list_terms()] and "only_probe" in ablate_mod.registry_cells()
    terms_config = make_terms_config()
    assert "probe" in [f.name for f in dataclasses.fields(terms_config)]
    cfg = DistillConfig(recipe="none")
    cfg.terms = terms_config()
    cfg.terms.probe.enabled = True
    teacher, student = _models()
    distiller = Distiller(teacher, student, cfg).train()
    assert "probe" in str(distiller.plan) and "weight 2" in str(distiller.plan)
    losses = distiller(*_batch())
    assert losses["loss_probe"].item() == pytest.approx(2.0 * distiller.stats["probe"])


@pytest.mark.parametrize("name", NEW)
def test_each_new_term_alone_runs_in_the_distiller_with_its_own_key(name):
    cfg = DistillConfig(recipe="none")
    get_term(name).settings(cfg).enabled = True
    teacher, student = _models()
    distiller = Distiller(teacher, student, cfg).train()
    losses = distiller(*_batch())
    spec = get_term(name)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", spec.loss_key}
    value = losses[spec.loss_key]
    assert torch.isfinite(value) and value.item() > 0
    expected = distiller.stats[name] * (1.0 if spec.weighted_inside else spec.weight(cfg))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    sum(losses.values()).backward()
    if "features" in spec.reads:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.adapters.parameters())
    assert f"{name:12s} on" in str(distiller.plan)


def test_pkd_gets_its_own_random_adapters_beside_the_zero_hint_ones():
    cfg = DistillConfig(recipe="none", hint=True)
    cfg.terms.pkd.enabled = True
    teacher, student = _models()
    distiller = Distiller(teacher, student, cfg)
    keys = sorted(distiller.adapters)
    assert keys == ["0", "1", "kaiming_0", "kaiming_1", "kaiming_pool", "pool"]
    assert all(float(distiller.adapters[k].weight.detach().abs().sum()) == 0 for k in ("0", "1", "pool"))
    assert all(float(distiller.adapters[k].weight.detach().abs().sum()) > 0 for k in ("kaiming_0", "kaiming_1", "kaiming_pool"))


def test_dry_run_plan_lists_each_active_term_with_its_weight_and_the_init_from_teacher():
    teacher, student = _models()
    plan = str(Distiller(teacher, student, DistillConfig(recipe="chen2017", mu=0.3, gamma=0.25)).plan)
    assert "rpn_soft     on   weight 0.7" in plan and "hint         on   weight 0.25" in plan
    assert "pkd          off" in plan and "student initialised from the teacher: off" in plan
    teacher, student = _models()
    twin = build_detector("cpu_base", 7, min_size=SIZE, max_size=SIZE)
    distiller = Distiller(teacher, twin, DistillConfig(recipe="none", init_from_teacher=True))
    n = len(teacher.state_dict())
    assert f"on: {n} of {n} tensors" in str(distiller.plan)
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), twin.state_dict().values()))
    # A narrower student shares only some shapes; the rest keep their own initialisation.
    before = {k: v.clone() for k, v in student.state_dict().items()}
    text = Distiller(teacher, student, DistillConfig(recipe="none", init_from_teacher=True)).plan.init_from_teacher
    copied = [k for k, v in student.state_dict().items() if not torch.equal(v, before[k])]
    t_state = teacher.state_dict()
    assert all(torch.equal(student.state_dict()[k], t_state[k]) for k in copied)
    assert text.startswith("on: ")


def test_unknown_recipe_is_a_pairing_error_naming_the_choices():
    teacher, student = _models()
    with pytest.raises(PairingError, match="distill.recipe: unknown value 'paper'"):
        Distiller(teacher, student, DistillConfig(recipe="paper"))


def test_list_terms_cli_prints_the_registry(capsys):
    from detdistill.cli import main

    assert main(["distill", "--list-terms"]) == 0
    out = capsys.readouterr().out
    for spec in list_terms():
        assert spec.name in out and spec.reference in out
    assert "chen2017" in out and f"'default' = {DEFAULT_RECIPE}" in out
    assert terms_pkg.format_term_table() == out.rstrip("\n")


def test_config_with_term_sections_pickles_for_the_ablation_workers():
    import pickle

    cfg = load_config(None, ["distill.terms.hint_fgfi.psi=0.4"])
    assert pickle.loads(pickle.dumps(cfg)).distill.terms.hint_fgfi.psi == 0.4
