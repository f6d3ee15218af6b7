import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from tiny_detector import tiny_detector  # noqa: E402

from detdistill.config import OptimConfig, TrainConfig  # noqa: E402
from detdistill.data import SyntheticConfig, SyntheticShapes  # noqa: E402
from detdistill.engine import NonFiniteLossError, Trainer  # noqa: E402
from detdistill.engine.trainer import lr_factor  # noqa: E402
from detdistill.utils import safe_torch_load  # noqa: E402

RUN_TINY = Path(__file__).parent / "run_tiny.py"
SMALL = SyntheticConfig(image_size=64, min_size=10, max_size=30)


def test_lr_schedule_values():
    cfg = OptimConfig(warmup_steps=10, warmup_factor=0.1, scheduler="cosine")
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(5, cfg, 110) == pytest.approx(0.55)
    assert lr_factor(10, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.5)
    assert lr_factor(110, cfg, 110) == pytest.approx(0.0, abs=1e-12)
    ms = OptimConfig(warmup_steps=0, scheduler="multistep", milestones=[3, 6], lr_gamma=0.5)
    assert [lr_factor(s, ms, 10) for s in (0, 2, 3, 5, 6, 9)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="optim.scheduler"):
        lr_factor(20, OptimConfig(warmup_steps=0, scheduler="poly"), 10)


def _run(out: Path, steps: int, sleep: float, resume: bool = False, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(RUN_TINY), str(out), str(steps), str(sleep)] + (["--resume"] if resume else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    return proc


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps = 10
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(straight, steps, 0.0)

    proc = _run(killed, steps, 0.4, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill after the step-6 checkpoint, before the last step
        ckpt = killed / "last.pt"
        if ckpt.is_file() and safe_torch_load(ckpt)["training_state"]["step"] >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = safe_torch_load(killed / "last.pt")["training_state"]
    assert 3 <= state["step"] < steps, "the kill must land after a checkpoint and before the end"
    resumed_from = state["step"]

    _run(killed, steps, 0.0, resume=True)
    a, b = safe_torch_load(straight / "last.pt"), safe_torch_load(killed / "last.pt")
    assert a["training_state"]["step"] == b["training_state"]["step"] == steps
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    opt_a, opt_b = a["training_state"]["optimizer"]["state"], b["training_state"]["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for idx in opt_a:
        assert torch.equal(opt_a[idx]["momentum_buffer"], opt_b[idx]["momentum_buffer"])
    # The batch right after the resume point (and every later one) holds the same images and losses.
    after_a = [r for r in _lines(straight) if r["step"] > resumed_from]
    after_b = [r for r in _lines(killed) if r["step"] > resumed_from]
    assert [r["image_ids"] for r in after_a] == [r["image_ids"] for r in after_b]
    assert [r["loss"] for r in after_a] == [r["loss"] for r in after_b]
    assert [r["step"] for r in _lines(killed)] == list(range(1, steps + 1))  # no duplicated lines


class _Toy(nn.Module):
    """Predicts the number of boxes from the mean colour; a deterministic loss dict."""

    def __init__(self, nan_at_call: int | None = None, huge_at_call: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.calls, self.nan_at_call, self.huge_at_call = 0, nan_at_call, huge_at_call

    def forward(self, images, targets):  # noqa: ANN001, ANN201
        self.calls += 1
        x = torch.stack([img.mean(dim=(1, 2)) for img in images])
        y = torch.tensor([float(len(t["boxes"])) for t in targets])
        loss = ((self.linear(x).squeeze(1) - y) ** 2).mean()
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        # A finite loss whose gradient norm overflows float32 (a term weighted 1e30, as pkd.weight=1e30 did).
        aux = 1e30 * loss if self.calls == self.huge_at_call else 0.1 * loss
        return {"loss_count": loss, "loss_aux": aux}


def test_non_finite_loss_names_the_term_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data = SyntheticShapes("train", num_images=8, config=SMALL)
    trainer = Trainer(_Toy(nan_at_call=5), data, OptimConfig(lr=0.01, warmup_steps=0),
                      TrainConfig(max_steps=10, batch_size=2, checkpoint_every=2, eval_every=0, out_dir=str(tmp_path),
                                  progress=False))
    with pytest.raises(NonFiniteLossError, match=r"'loss_count' is nan at step 5.*last\.pt \(step 4\)"):
        trainer.fit()
    assert safe_torch_load(tmp_path / "last.pt")["training_state"]["step"] == 4


@pytest.mark.parametrize("clip", [10.0, None])
def test_a_non_finite_gradient_norm_stops_the_run_naming_the_step_and_the_largest_term(tmp_path, clip):
    data = SyntheticShapes("train", num_images=8, config=SMALL)
    toy = _Toy(huge_at_call=3)
    trainer = Trainer(toy, data, OptimConfig(lr=0.01, warmup_steps=0, grad_clip_norm=clip),
                      TrainConfig(max_steps=10, batch_size=2, checkpoint_every=2, eval_every=0, out_dir=str(tmp_path),
                                  progress=False))
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is inf at step 3 \(largest loss term: 'loss_aux' = "
                                                 r"[0-9.]+e\+\d+\); the weights were not updated.*last\.pt \(step 2\)"):
        trainer.fit()
    after_two = safe_torch_load(tmp_path / "last.pt")
    assert after_two["training_state"]["step"] == 2
    for key, value in after_two["state_dict"].items():  # step 3 changed nothing
        assert torch.equal(value, toy.state_dict()[key]), key


def test_a_non_finite_loss_or_gradient_is_a_detdistill_error_the_cli_prints_in_one_line():
    from detdistill.errors import DetDistillError

    assert issubclass(NonFiniteLossError, DetDistillError) and issubclass(NonFiniteLossError, RuntimeError)


def test_best_checkpoint_follows_the_validation_metric(tmp_path):
    scores = iter([0.2, 0.5, 0.3, 0.4])
    data = SyntheticShapes("train", num_images=8, config=SMALL)
    trainer = Trainer(_Toy(), data, OptimConfig(lr=0.01, warmup_steps=0),
                      TrainConfig(max_steps=8, batch_size=2, eval_every=2, checkpoint_every=4, out_dir=str(tmp_path),
                                  progress=False),
                      evaluate_fn=lambda m: {"mAP50": next(scores)})
    summary = trainer.fit()
    assert (summary.best_value, summary.best_step) == (0.5, 4)
    assert safe_torch_load(tmp_path / "best.pt")["metadata"]["step"] == 4
    assert summary.last_metrics == {"mAP50": 0.4}
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["best_step"] == 4 and saved["steps"] == 8
    assert (tmp_path / "loss_curves.png").stat().st_size > 0


def test_real_detector_trains_and_loss_falls(tmp_path):
    torch.manual_seed(0)
    data = SyntheticShapes("train", num_images=8, config=SMALL)
    trainer = Trainer(tiny_detector(), data, OptimConfig(lr=0.02, warmup_steps=0, scheduler="constant"),
                      TrainConfig(max_steps=40, batch_size=4, eval_every=0, log_every=1, out_dir=str(tmp_path),
                                  progress=False))
    trainer.fit()
    losses = [r["loss"] for r in _lines(tmp_path)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
