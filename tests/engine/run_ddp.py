"""Launched by torchrun (2 ranks, gloo) or plainly (1 process) from test_distributed.py.

``python run_ddp.py OUT BATCH`` trains a deterministic toy module for one step and writes the parameters
and every image id the rank saw in one epoch to OUT/rank<R>.pt.
"""

import sys
from pathlib import Path

import torch
from torch import nn

from detdistill.config import OptimConfig, TrainConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.engine import Trainer, init_distributed


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 1)

    def forward(self, images, targets):  # noqa: ANN001, ANN201
        x = torch.stack([img.mean(dim=(1, 2)) for img in images])
        y = torch.tensor([float(len(t["boxes"])) for t in targets])
        return {"loss": ((self.linear(x).squeeze(1) - y) ** 2).mean()}


out, batch = Path(sys.argv[1]), int(sys.argv[2])
ctx = init_distributed("cpu")
data = SyntheticShapes("train", num_images=11, config=SyntheticConfig(image_size=48, min_size=8, max_size=20))
trainer = Trainer(Toy(), data, OptimConfig(lr=0.1, warmup_steps=0, scheduler="constant", grad_clip_norm=None),
                  TrainConfig(max_steps=1, batch_size=batch, eval_every=0, out_dir=str(out / "run"), progress=False),
                  dist=ctx)
seen = [int(t["image_id"]) for _, targets in trainer.loader for t in targets]
trainer.fit()
torch.save({"params": {k: v.clone() for k, v in trainer.module.state_dict().items()}, "seen": seen,
            "world_size": ctx.world_size}, out / f"rank{ctx.rank}.pt")
