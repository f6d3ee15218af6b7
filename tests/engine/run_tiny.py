"""Subprocess entry for the resume test: ``python run_tiny.py OUT_DIR MAX_STEPS SLEEP [--resume]``."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_detector import Slow, tiny_detector  # noqa: E402

from detdistill.config import OptimConfig, TrainConfig  # noqa: E402
from detdistill.data import DetectionAugment, SyntheticConfig, SyntheticShapes  # noqa: E402
from detdistill.engine import Trainer  # noqa: E402

torch.set_num_threads(1)
out, max_steps, sleep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(0)
model = Slow(tiny_detector(), sleep)
data = SyntheticShapes("train", num_images=10, config=SyntheticConfig(image_size=64, min_size=10, max_size=30))
trainer = Trainer(model, data, OptimConfig(lr=0.01, warmup_steps=2),
                  TrainConfig(max_steps=max_steps, batch_size=3, checkpoint_every=3, eval_every=0, log_every=1,
                              out_dir=out, progress=False, seed=1),
                  transforms=DetectionAugment())
trainer.fit(resume="--resume" in sys.argv)
