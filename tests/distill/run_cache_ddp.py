"""Launched by torchrun (2 gloo ranks) from test_teacher_cache.py.

``python run_cache_ddp.py OUT`` distils a tiny student for 2 steps of batch 2 per rank, first with the teacher
cache in OUT/cache (rank 0 builds it, fp32), then with the live teacher, and writes the parameters, the cache
entries the rank read and the rank's shard to OUT/{cached,live}_rank<R>.pt.
"""

import sys
from pathlib import Path

import torch

from detdistill.config import DistillConfig, OptimConfig, TrainConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.data.transforms import AugmentConfig, DetectionAugment
from detdistill.distill.distiller import Distiller
from detdistill.distill.teacher_cache import open_or_build
from detdistill.engine.run import rank_barrier
from detdistill.engine import Trainer, init_distributed
from detdistill.models import build_detector

out = Path(sys.argv[1])
ctx = init_distributed("cpu")
data = SyntheticShapes("train", num_images=8, config=SyntheticConfig(image_size=96, min_size=12, max_size=40))
torch.manual_seed(0)
teacher = build_detector("cpu_base", 7, min_size=96, max_size=96)
with torch.no_grad():  # scores far from uniform, so the teacher's outputs move the student (as in the tests)
    for module in (teacher.rpn.head, teacher.roi_heads.box_predictor):
        for p in module.parameters():
            p.mul_(30)
augment = AugmentConfig(hflip_prob=0.5)
cache = open_or_build(out / "cache", teacher, "unused", data, augment, "float32", teacher_sha256="t",
                      batch_size=2, progress=False, log=lambda m: None, is_main=ctx.is_main,
                      barrier=rank_barrier(ctx))
for mode in ("cached", "live"):
    torch.manual_seed(0)
    student = build_detector("cpu_tiny", 7, min_size=96, max_size=96)
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017"), teacher_source=cache if mode == "cached" else None)
    trainer = Trainer(distiller, data, OptimConfig(lr=0.01, warmup_steps=0, scheduler="constant", grad_clip_norm=None),
                      TrainConfig(max_steps=2, batch_size=2, eval_every=0, out_dir=str(out / f"run_{mode}"),
                                  progress=False), transforms=DetectionAugment(augment), dist=ctx)
    shard = []
    for batch in trainer.loader.batch_sampler.epoch_batches(0)[:2]:
        for index, seed in batch:
            _, target = trainer.loader.dataset[(index, seed)]
            shard.append([int(target["image_id"]), int(target["hflipped"])])
    reads_before = dict(cache.reads)
    trainer.fit()  # BatchNorm statistics stay per rank (DDP syncs them only at forward); compare parameters
    reads = [[i, int(f)] for (i, f), n in cache.reads.items() for _ in range(n - reads_before.get((i, f), 0))]
    torch.save({"params": {k: v.detach().clone() for k, v in trainer.module.student.named_parameters()},
                "reads": reads, "shard": shard, "manifest": cache.sha256}, out / f"{mode}_rank{ctx.rank}.pt")
