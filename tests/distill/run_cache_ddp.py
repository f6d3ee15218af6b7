"""Launched by torchrun (2 gloo ranks) from test_teacher_cache.py.

``python run_cache_ddp.py OUT MODE`` distils a tiny student for 2 steps of batch 2 per rank, with the teacher
cache in OUT/cache (MODE=cached; rank 0 builds it, fp32) or the live teacher (MODE=live), and writes the
parameters, the cache entries the rank read and the rank's shard to OUT/<MODE>_rank<R>.pt.
"""

import sys
from pathlib import Path

import torch

from detdistill.config import DistillConfig, OptimConfig, TrainConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.data.transforms import AugmentConfig, DetectionAugment
from detdistill.distill.distiller import Distiller
from detdistill.distill.teacher_cache import open_or_build
from detdistill.engine import Trainer, init_distributed
from detdistill.models import build_detector

out, mode = Path(sys.argv[1]), sys.argv[2]
ctx = init_distributed("cpu")
data = SyntheticShapes("train", num_images=8, config=SyntheticConfig(image_size=96, min_size=12, max_size=40))
torch.manual_seed(0)
teacher = build_detector("cpu_base", 7, min_size=96, max_size=96)
with torch.no_grad():  # scores far from uniform, so the teacher's outputs move the student (as in the tests)
    for module in (teacher.rpn.head, teacher.roi_heads.box_predictor):
        for p in module.parameters():
            p.mul_(30)
torch.manual_seed(0)
student = build_detector("cpu_tiny", 7, min_size=96, max_size=96)
augment = AugmentConfig(hflip_prob=0.5)
cache = None
if mode == "cached":
    cache = open_or_build(out / "cache", teacher, "unused", data, augment, "float32", teacher_sha256="t",
                          batch_size=2, progress=False, log=lambda m: None, dist=ctx)
distiller = Distiller(teacher, student, DistillConfig(), teacher_cache=cache)
trainer = Trainer(distiller, data, OptimConfig(lr=0.01, warmup_steps=0, scheduler="constant", grad_clip_norm=None),
                  TrainConfig(max_steps=2, batch_size=2, eval_every=0, out_dir=str(out / f"run_{mode}"),
                              progress=False), transforms=DetectionAugment(augment), dist=ctx)
batches = trainer.loader.batch_sampler.epoch_batches(0)[:2]
shard = []
for batch in batches:
    for index, _seed in batch:
        _, target = trainer.loader.dataset[(index, _seed)]
        shard.append([int(target["image_id"]), int(target["hflipped"])])
trainer.fit()  # BatchNorm statistics stay per rank (DDP syncs them only at forward); compare parameters
torch.save({"params": {k: v.detach().clone() for k, v in trainer.module.student.named_parameters()},
            "reads": [[i, int(f)] for (i, f), n in (cache.reads.items() if cache else []) for _ in range(n)],
            "shard": shard, "manifest": cache.sha256 if cache else None}, out / f"{mode}_rank{ctx.rank}.pt")
