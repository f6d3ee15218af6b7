"""Launched by torchrun (2 ranks, gloo) from test_distributed.py: a whole ``train_detector`` run with a test
split, so the final test evaluation (a collective: every rank gathers the detections) runs under DDP.

``python run_ddp_run.py OUT`` trains cpu_tiny for 2 steps into OUT/run; each rank writes OUT/rank<R>.json.
"""

import json
import sys
from pathlib import Path

from detdistill.config import load_config
from detdistill.engine.run import train_detector

out = Path(sys.argv[1])
cfg = load_config(None, ["model.name=cpu_tiny", "model.overrides={min_size: 64, max_size: 64}",
                         "data.num_train_images=8", "data.num_eval_images=3", "data.val_split=null",
                         "train.max_steps=2", "train.batch_size=2", "train.eval_every=0", "train.progress=false",
                         "train.device=cpu", f"train.out_dir={out / 'run'}"])
summary = train_detector(cfg, log=lambda line: print(line, flush=True))
rank = __import__("os").environ.get("RANK", "0")
(out / f"rank{rank}.json").write_text(json.dumps(summary.to_dict()))
