import pytest
import yaml

from detdistill.config import ConfigError, DistillConfig, ExperimentConfig, describe_fields, load_config, save_config


def test_paper_defaults():
    d = DistillConfig()
    assert (d.mu, d.lambda_reg, d.nu, d.margin, d.gamma, d.background_weight, d.temperature, d.hint_kind) == (
        0.5, 1.0, 0.5, 0.0, 0.5, 1.5, 1.0, "l2")
    from detdistill.distill.terms import active_terms

    paper = DistillConfig(recipe="chen2017")
    assert [t.name for t in active_terms(paper)] == ["rpn_soft", "rpn_bounded", "rcn_soft", "rcn_bounded", "hint"]
    assert d.adaptation


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"max_steps": 7, "batch_size": 3}, "model": {"name": "cpu_tiny"}}))
    cfg = load_config(path, ["train.max_steps=9", "optim.lr=1e-3", "model.overrides={min_size: 448}",
                             "data.scale_jitter=[0.8, 1.2]", "teacher=runs/t/last.pt"])
    assert cfg.train.max_steps == 9 and cfg.train.batch_size == 3 and cfg.model.name == "cpu_tiny"
    assert cfg.optim.lr == 1e-3 and cfg.model.overrides == {"min_size": 448}
    assert cfg.data.scale_jitter == [0.8, 1.2] and cfg.teacher == "runs/t/last.pt"


def test_int_is_accepted_for_float_and_none_for_optional():
    cfg = load_config(None, ["distill.temperature=2", "optim.grad_clip_norm=null"])
    assert cfg.distill.temperature == 2.0 and isinstance(cfg.distill.temperature, float)
    assert cfg.optim.grad_clip_norm is None


def test_integer_level_keys_become_strings_but_booleans_stay_errors():
    cfg = load_config(None, ["distill.hint_levels=[0, 1]", "distill.guided_levels=['0', 1]"])
    assert cfg.distill.hint_levels == ["0", "1"] and cfg.distill.guided_levels == ["0", "1"]
    with pytest.raises(ConfigError, match="expected a string"):
        load_config(None, ["distill.hint_levels=[true]"])


@pytest.mark.parametrize("override, message", [
    ("train.max_step=3", "unknown key 'train.max_step'; did you mean 'train.max_steps'"),
    ("distill.backgound_weight=2", "did you mean 'distill.background_weight'"),
    ("trian.seed=1", "did you mean 'train'"),
    ("train.max_steps=many", "'train.max_steps': expected an integer, got 'many'"),
    ("distill.hint=yes please", "'distill.hint': expected true/false"),
    ("train", "expected key=value"),
])
def test_bad_overrides_name_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_config(None, [override])


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'optim.learning_rate'"):
        load_config(typo)


def test_every_field_documented_and_round_trips(tmp_path):
    rows = describe_fields()
    assert len(rows) > 50
    undocumented = [key for key, _, doc in rows if not doc]
    assert undocumented == []
    cfg = load_config(None, ["train.seed=4", "distill.hint_levels=['0', '1']"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert ExperimentConfig() == load_config(None)


def test_shipped_recipes_load():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    for path in recipes:
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("optim.scheduler=cosin", "'optim.scheduler': unknown value 'cosin'; did you mean 'cosine'?"),
    ("optim.optimizer=adam", "did you mean 'adamw'?"),
    ("data.on_bad_box=skipp", "did you mean 'skip'?"),
    ("data.format=yolov5", "choose one of coco, voc, yolo, kitti, csv, synthetic"),
    ("train.device=gpu", "'train.device': unknown value 'gpu'"),
    ("optim.lr=-0.01", "'optim.lr': value -0.01 is out of range"),
    ("optim.lr=.nan", "'optim.lr': value nan is out of range"),
    ("optim.warmup_factor=-0.5", "'optim.warmup_factor': value -0.5 is out of range"),
    ("optim.grad_clip_norm=-1", "'optim.grad_clip_norm': value -1.0 is out of range"),
    ("optim.momentum=1.5", "'optim.momentum'"),
    ("optim.milestones=[30, 10]", "'optim.milestones'"),
    ("train.max_steps=0", "'train.max_steps': value 0 is out of range; expected an integer >= 1"),
    ("train.batch_size=0", "'train.batch_size'"),
    ("train.threads=-1", "'train.threads': value -1"),
    ("data.num_workers=-2", "'data.num_workers'"),
    ("data.hflip_prob=2", "'data.hflip_prob'"),
    ("data.scale_jitter=[1.2, 0.8]", "'data.scale_jitter'"),
    ("model.overrides={min_size: -5}", "'model.overrides.min_size': value -5 is out of range"),
])
def test_values_are_checked_when_the_config_is_built(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


@pytest.mark.parametrize("spelling", ["None", "none", "null", "~"])
def test_optional_values_accept_none_spelled_like_python(spelling):
    assert load_config(None, [f"data.val_split={spelling}"]).data.val_split is None


def test_non_utf8_config_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("train:\n  out_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c.yaml: config file is not UTF-8 text"):
        load_config(path)
