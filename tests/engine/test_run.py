"""train / distill runs from a config: outputs, student-only checkpoints, teacher checks, dry run, CLI."""

import hashlib
import json

import pytest
import torch

from detdistill.cli import main
from detdistill.config import load_config
from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.engine.run import distill_student, train_detector
from detdistill.models import build_detector, load_detector, read_checkpoint, save_detector

TINY = ["data.num_train_images=8", "data.num_eval_images=4", "data.test_split=null", "train.max_steps=2",
        "train.batch_size=2", "train.eval_every=0", "train.progress=false", "distill.teacher_eval_images=4",
        "model.overrides={min_size: 96, max_size: 96}"]


@pytest.fixture
def teacher_file(tmp_path):
    torch.manual_seed(0)
    model = build_detector("cpu_small", 7, min_size=96, max_size=96)
    return save_detector(tmp_path / "teacher.pt", model, list(SYNTHETIC_CLASS_NAMES))


def test_train_writes_a_self_describing_run(tmp_path):
    cfg = load_config(None, TINY + ["model.name=cpu_tiny", f"train.out_dir={tmp_path / 'run'}"])
    summary = train_detector(cfg, log=lambda m: None)
    assert summary.steps == 2
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "summary.json", "loss_curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["class_names"] == list(SYNTHETIC_CLASS_NAMES) and ckpt["metadata"]["kind"] == "train"
    assert isinstance(load_detector(tmp_path / "run" / "last.pt"), torch.nn.Module)


def test_distill_writes_a_student_only_checkpoint_and_guards_the_teacher(tmp_path, teacher_file):
    out = tmp_path / "kd"
    overrides = TINY + ["model.name=cpu_tiny", f"teacher={teacher_file}", f"train.out_dir={out}"]
    # An untrained teacher is refused by the mAP floor, with the way out in the message.
    with pytest.raises(ValueError, match="below distill.teacher_min_map=0.3.*--allow-weak-teacher"):
        distill_student(load_config(None, overrides), log=lambda m: None)
    overrides.append("distill.allow_weak_teacher=true")
    distill_student(load_config(None, overrides), log=lambda m: None)
    ckpt = read_checkpoint(out / "last.pt")
    sha = hashlib.sha256(teacher_file.read_bytes()).hexdigest()
    assert ckpt["metadata"]["teacher"]["sha256"] == sha and ckpt["metadata"]["distill"]["terms"]["rcn_soft"]["weight"] == 0.5  # 1 - mu
    assert ckpt["model_spec"]["name"] == "cpu_tiny"
    assert not any(k.startswith(("teacher", "adapters", "student.")) for k in ckpt["state_dict"])
    student = load_detector(out / "last.pt")  # loads strictly: exactly the student's tensors
    assert sum(p.numel() for p in student.parameters()) == sum(
        p.numel() for p in build_detector("cpu_tiny", 7).parameters())

    # Resume refuses a teacher file that changed since the run started.
    torch.manual_seed(1)
    save_detector(teacher_file, build_detector("cpu_small", 7, min_size=96, max_size=96), list(SYNTHETIC_CLASS_NAMES))
    with pytest.raises(ValueError, match="teacher file changed since this run started"):
        distill_student(load_config(None, overrides + ["train.max_steps=3"]), resume=True, log=lambda m: None)


def test_dry_run_reports_pairing_terms_and_adapters(teacher_file, capsys):
    rc = main(["distill", "--teacher", str(teacher_file), "--student", "cpu_tiny", "--dry-run", *TINY,
               "distill.recipe=chen2017"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "PAIR anchor by anchor" in out and "rpn_soft     on" in out
    assert "0 (64 ch) <- 32->64 adapter (2112 params) <- 0 (32 ch), stride 8" in out
    assert "adaptation parameters: 6336" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "train.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "detdistill train: error: command line: unknown key 'train.max_step'; did you mean " \
                          "'train.max_steps'?"
    assert main(["distill", "--student", "cpu_tiny", *TINY]) == 2
    assert "no teacher checkpoint given" in capsys.readouterr().err


def test_initial_weights_follow_the_seed_not_earlier_rng_use():
    from detdistill.engine.run import build_model

    cfg = load_config(None, TINY + ["model.name=cpu_tiny", "train.seed=3"])
    torch.manual_seed(100)
    first = build_model(cfg, 7).state_dict()
    torch.rand(1000)  # e.g. a dataset or a teacher check drew random numbers before the student was built
    second = build_model(cfg, 7).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    cfg.train.seed = 4
    third = build_model(cfg, 7).state_dict()
    assert any(not torch.equal(first[k], third[k]) for k in first if first[k].is_floating_point())


def test_a_student_given_as_a_checkpoint_gets_adaptation_layers_that_follow_the_seed(tmp_path, teacher_file):
    from detdistill.engine.run import DistillRun

    student = save_detector(tmp_path / "student.pt", build_detector("cpu_tiny", 7, min_size=96, max_size=96),
                            list(SYNTHETIC_CLASS_NAMES))
    cfg = load_config(None, TINY + [f"model.name={student}", f"teacher={teacher_file}", "distill.recipe=pkd",
                                    f"train.out_dir={tmp_path / 'kd'}"])

    def adapters(draws: int) -> dict:
        run = DistillRun(cfg, log=lambda m: None)
        run.open_data()
        run.load_and_check_teacher(check=False)
        torch.rand(draws)  # whatever ran before the module was built (a teacher check, a cache build)
        return {k: v.clone() for k, v in run.build_module().adapters.state_dict().items()}

    first, second = adapters(0), adapters(1000)
    assert first and any(bool(v.abs().sum()) for v in first.values())  # pkd's adapters start random
    assert all(torch.equal(first[k], second[k]) for k in first)
    cfg.train.seed = 1
    assert any(not torch.equal(first[k], v) for k, v in adapters(0).items())


def test_only_the_main_process_scores_the_test_split_and_prints_it(tmp_path):
    from detdistill.engine.distributed import DistContext
    from detdistill.engine.run import _finish
    from detdistill.engine.trainer import RunSummary

    class MustNotRun(torch.nn.Module):
        def forward(self, images):  # noqa: ANN001, ANN202
            raise AssertionError("a non-main rank evaluated the test split")

    from detdistill.data import SyntheticShapes

    test = SyntheticShapes("test", num_images=2, seed=0)
    printed: list[str] = []
    summary = RunSummary(out_dir=str(tmp_path), steps=1, last_checkpoint=None, best_checkpoint=None,
                         best_metric=None, best_value=None, best_step=None, last_metrics={}, train_seconds=0.0,
                         extra={})
    _finish(summary, MustNotRun(), test, printed.append, DistContext(rank=1, world_size=2))
    assert printed == [] and "test" not in summary.extra and not (tmp_path / "summary.json").exists()


def test_a_distillation_reads_the_teacher_file_once(tmp_path, teacher_file, monkeypatch):
    import detdistill.models as models_pkg
    import detdistill.models.checkpoint as checkpoint_mod

    loads: list[str] = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):  # noqa: ANN001, ANN202
        loads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    for where in (models_pkg, checkpoint_mod):
        monkeypatch.setattr(where, "load_detector", lambda *a, **k: pytest.fail("loaded the teacher again"))
    overrides = TINY + ["model.name=cpu_tiny", f"teacher={teacher_file}", f"train.out_dir={tmp_path / 'kd'}",
                        "distill.allow_weak_teacher=true", "data.test_split=test", "data.num_eval_images=2"]
    summary = distill_student(load_config(None, overrides), log=lambda m: None)
    assert loads.count(str(teacher_file)) == 1
    assert set(summary.extra["test"]) == {"model", "teacher"}  # the one teacher, scored beside the student
    saved = json.loads((tmp_path / "kd" / "summary.json").read_text())
    assert saved["extra"]["test"] == summary.extra["test"] and saved["steps"] == 2


def test_dry_run_report_is_a_string_and_writes_nothing(tmp_path, teacher_file):
    from detdistill.engine.run import dry_run_report

    out = tmp_path / "kd"
    report = dry_run_report(load_config(None, TINY + ["model.name=cpu_tiny", f"teacher={teacher_file}",
                                                      f"train.out_dir={out}"]), log=lambda m: None)
    assert isinstance(report, str) and "adaptation parameters:" in report and not out.exists()


def test_a_run_folder_that_holds_a_run_is_refused_by_default(tmp_path, teacher_file):
    from detdistill.errors import ConfigError

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run")
    cfg = load_config(None, TINY + ["model.name=cpu_tiny", f"train.out_dir={out}"])
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        train_detector(cfg, log=lambda m: None)
    with pytest.raises(ConfigError, match="already holds a run"):
        distill_student(load_config(None, TINY + ["model.name=cpu_tiny", f"teacher={teacher_file}",
                                                  f"train.out_dir={out}"]), log=lambda m: None)
    assert (out / "last.pt").read_bytes() == b"an earlier run"
    train_detector(cfg, log=lambda m: None, overwrite=True)
    assert read_checkpoint(out / "last.pt")["metadata"]["kind"] == "train"


def test_cache_teacher_leaves_its_callers_config_unchanged(tmp_path, teacher_file):
    import copy

    from detdistill.engine.run import cache_teacher

    cfg = load_config(None, TINY + ["data.num_train_images=2", "data.test_split=test", f"teacher={teacher_file}"])
    before = copy.deepcopy(cfg)
    cache = cache_teacher(cfg, tmp_path / "cache", log=lambda m: None)
    assert len(cache) == 2 * 2  # two images, with and without the flip
    assert cfg == before and cfg.data.val_split == "val" and cfg.data.test_split == "test"


def test_one_function_decides_where_a_runs_teacher_cache_lives(tmp_path):
    from detdistill.engine.run import teacher_cache_folder

    notes = []
    cfg = load_config(None, ["data.hflip_prob=0.5"])
    assert teacher_cache_folder(cfg) is None  # nothing asked for: the teacher runs live
    assert teacher_cache_folder(cfg, tmp_path / "shared") == str(tmp_path / "shared")
    cfg.distill.teacher_cache = str(tmp_path / "mine")
    assert teacher_cache_folder(cfg, tmp_path / "shared") == str(tmp_path / "mine")  # the config's own wins
    jitter = load_config(None, ["data.scale_jitter=[80, 112]"])
    assert teacher_cache_folder(jitter, tmp_path / "shared", log=notes.append) is None
    assert len(notes) == 1 and "data.scale_jitter" in notes[0] and "live" in notes[0]


def test_a_subclass_overriding_a_renamed_run_step_is_refused_where_it_is_written():
    from detdistill.engine.run import DistillRun, TrainRun

    with pytest.raises(TypeError, match=r"GivenData.build_datasets: the run step is gone; pass datasets="):
        class GivenData(DistillRun):  # what a caller wrote before the steps were named open_data, ...
            def build_datasets(self):  # noqa: ANN202
                return None
    with pytest.raises(TypeError, match=r"Mine.build_model: the run step is gone; override build_module"):
        class Mine(TrainRun):
            def build_model(self):  # noqa: ANN202
                return None

    class Fine(TrainRun):  # the new names are what a subclass overrides
        def open_data(self):  # noqa: ANN202
            return None
    assert Fine.open_data is not TrainRun.open_data
