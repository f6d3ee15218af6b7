"""``python run_cache_build.py CACHE MARKER``: build a teacher cache, then hang after two written batches
(writing MARKER) so that test_teacher_cache.py can SIGKILL the process mid-build."""

import sys
import time
from pathlib import Path

import torch

from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.data.transforms import AugmentConfig
from detdistill.distill.teacher_cache import build_teacher_cache
from detdistill.models import build_detector

DATA = SyntheticShapes("train", num_images=6, config=SyntheticConfig(image_size=96, min_size=12, max_size=40))


def teacher():
    torch.manual_seed(0)
    return build_detector("cpu_base", 7, min_size=96, max_size=96)


if __name__ == "__main__":
    out, marker = Path(sys.argv[1]), Path(sys.argv[2])

    def hang(k):
        if k == 1:
            marker.write_text("written")
            time.sleep(600)

    build_teacher_cache(teacher(), DATA, out, teacher_sha256="t", augment=AugmentConfig(hflip_prob=0.5),
                        batch_size=2, progress=False, on_batch=hang)
