"""`train` and `distill` runs on a CUDA device with AMP and channels_last, loaded back on the CPU.

CI has no GPU, so these skip there; run them on a GPU machine with ``pytest -m cuda``.
"""

import json
import math

import pytest
import torch

from detdistill.config import load_config
from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.engine.run import distill_student, train_detector
from detdistill.models import build_detector, load_detector, read_checkpoint, save_detector

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]

GPU_TINY = ["data.num_train_images=16", "data.num_eval_images=8", "data.test_split=null", "train.max_steps=6",
            "train.batch_size=4", "train.eval_every=3", "train.checkpoint_every=3", "train.progress=false",
            "train.device=cuda", "train.amp=true", "train.channels_last=true", "distill.teacher_eval_images=8",
            "distill.allow_weak_teacher=true", "model.overrides={min_size: 128, max_size: 128}"]


def test_amp_training_on_cuda_writes_a_cpu_loadable_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(None, GPU_TINY + ["model.name=cpu_tiny", f"train.out_dir={out}", "train.max_steps=3"])
    first = train_detector(cfg, log=lambda m: None)
    assert first.steps == 3
    cfg = load_config(None, GPU_TINY + ["model.name=cpu_tiny", f"train.out_dir={out}"])
    summary = train_detector(cfg, resume=True, log=lambda m: None)
    assert summary.steps == 6
    ckpt = read_checkpoint(out / "last.pt")
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
    model = load_detector(out / "last.pt").eval()
    with torch.no_grad():
        assert isinstance(model([torch.rand(3, 128, 128)])[0]["boxes"], torch.Tensor)


def test_distill_on_cuda_with_amp_logs_finite_terms(tmp_path):
    torch.manual_seed(0)
    teacher = save_detector(tmp_path / "teacher.pt", build_detector("cpu_small", 7, min_size=128, max_size=128),
                            list(SYNTHETIC_CLASS_NAMES))
    out = tmp_path / "kd"
    cfg = load_config(None, GPU_TINY + ["model.name=cpu_tiny", f"teacher={teacher}", f"train.out_dir={out}"])
    summary = distill_student(cfg, log=lambda m: None)
    assert summary.steps == 6
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines
    train_lines = [json.loads(line) for line in lines if "loss_hint" in line]
    assert train_lines and all(math.isfinite(v) for row in train_lines for k, v in row.items()
                               if k.startswith("loss") and isinstance(v, float))
    assert not any(k.startswith(("teacher", "adapters")) for k in read_checkpoint(out / "last.pt")["state_dict"])
