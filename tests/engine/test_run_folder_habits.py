"""Run-folder habits (gathered in issue 21): the Ctrl-C note, distill's progress label, the teacher-check size, the
empty-epoch refusal."""

import pytest
import torch

from detdistill.cli import main
from detdistill.config import OptimConfig, TrainConfig
from detdistill.data import SYNTHETIC_CLASS_NAMES, SyntheticShapes
from detdistill.engine import Trainer
from detdistill.models import build_detector, save_detector

TINY = ["data.num_train_images=4", "data.num_eval_images=2", "data.test_split=null", "train.max_steps=2",
        "train.batch_size=2", "train.eval_every=0", "model.name=cpu_tiny", "model.overrides={min_size: 64, max_size: 64}"]


def test_ctrl_c_names_the_last_checkpoint_step_and_the_resume_command(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", *TINY, "train.progress=false", "--out", str(run)]) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("detdistill.engine.run.train_detector", interrupted)
    argv = ["train", *TINY, "train.max_steps=5", "--out", str(run), "--resume"]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert f"the last checkpoint is {run / 'last.pt'} (step 2)" in err
    assert "continue with: detdistill train --resume " in err and "train.max_steps=5" in err
    assert len(err.splitlines()) == 1


def test_distill_labels_its_progress_and_sizes_the_teacher_check(tmp_path, capsys):
    torch.manual_seed(0)
    teacher = save_detector(tmp_path / "t.pt", build_detector("cpu_tiny", 7, min_size=64, max_size=64),
                            list(SYNTHETIC_CLASS_NAMES))
    assert main(["distill", "--teacher", str(teacher), "--allow-weak-teacher", "--teacher-eval-images", "1",
                 *TINY, "--out", str(tmp_path / "kd")]) == 0
    out = capsys.readouterr().out
    assert "teacher mAP@0.5 on 1 validation images" in out
    # Captured output is not a terminal: plain progress lines with distill's own label, no carriage returns.
    assert "distill: step 2/2" in out and "train: step" not in out and "\r" not in out


def test_trainer_refuses_a_batch_larger_than_the_training_set_before_step_1(tmp_path):
    model = build_detector("cpu_tiny", 7, min_size=64, max_size=64)
    with pytest.raises(ValueError, match=r"train.batch_size: value 5 is larger than the training set \(4 images"):
        Trainer(model, SyntheticShapes("train", num_images=4), OptimConfig(),
                TrainConfig(batch_size=5, out_dir=str(tmp_path / "run"), progress=False))
    assert not (tmp_path / "run").exists()
