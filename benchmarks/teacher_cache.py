"""Teacher cache: distilled step with and without the cache against a plain student step, cache build cost,
and data loading with the cache against the training-step rate. Side by side in one run, one thread.

Per setting (synthetic: the configs/synthetic_*.yaml models, cpu_base -> cpu_tiny at 160 px; bccd: the
configs/bccd_*.yaml models, MobileNetV2-FPN -> MobileNetV2-0.5-FPN at 448 px on /work/shared/data/bccd;
random weights: timing does not depend on them):

* steps, interleaved round by round (plain, distilled live, distilled cached, cached without the RCN terms)
  on the same augmented batches,
  median after one warm-up round; ratios to the plain student step (target: cached <= 1.2x);
* the cache build against one teacher no-grad pass over the same (image, flip) entries with the same image
  loading and batching (alternated twice, the faster of each; target <= 1.1x plus writing);
* loading a batch (DataLoader fetch + augmentation + reading and pasting the cached entries) against a cached
  training step (target: loading rate >= 3x the step rate);
* the disk cost of the full training split, from the level shapes of the built entries.

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/teacher_cache.py
    ... --bccd /work/shared/data/bccd --images 24 --rounds 5   # defaults: both settings, ~5 min on one core
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detdistill.config import DistillConfig, load_config
from detdistill.data import DetectionAugment, build_loader
from detdistill.data.transforms import AugmentConfig
from detdistill.distill.distiller import Distiller
from detdistill.distill.teacher_cache import _entries, _teacher_forward, build_teacher_cache, flip_states
from kd_overhead import timed_step  # a sibling script: python puts benchmarks/ first on sys.path
from detdistill.engine.run import PAIRING_KWARGS, open_datasets
from detdistill.models import build_detector

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (teacher config, student config); bccd reads --bccd
    "synthetic": ("synthetic_teacher.yaml", "synthetic_distill.yaml"),
    "bccd": ("bccd_teacher.yaml", "bccd_distill.yaml"),
}


def _teacher_pass(teacher, dataset, states, batch_size) -> float:  # noqa: ANN001
    """What the build does minus the writing: load, flip, batch by size, teacher backbone + RPN head."""
    start = time.perf_counter()
    entries = _entries(dataset, states)
    for k in range(0, len(entries), batch_size):
        chunk = entries[k:k + batch_size]
        images = [dataset[i][0].flip(-1) if flip else dataset[i][0] for i, flip in chunk]
        _teacher_forward(teacher, images)
    return time.perf_counter() - start


class _Timer:
    """Wall time spent inside some modules (forward hooks), to split a step."""

    def __init__(self, modules) -> None:  # noqa: ANN001
        self.total, self._start = 0.0, 0.0
        for m in modules:
            m.register_forward_pre_hook(self._pre)
            m.register_forward_hook(self._post)

    def _pre(self, *_) -> None:  # noqa: ANN002
        self._start = time.perf_counter()

    def _post(self, *_) -> None:  # noqa: ANN002
        self.total += time.perf_counter() - self._start


def run_setting(name: str, images: int, rounds: int, dtype: str, bccd: Path) -> dict:
    teacher_cfg, student_cfg = SETTINGS[name]
    extra = [f"data.source={bccd}"] if name == "bccd" else []
    t_cfg = load_config(ROOT / "configs" / teacher_cfg, extra)
    cfg = load_config(ROOT / "configs" / student_cfg, extra + ["data.val_split=null", "data.test_split=null"])
    full_images = cfg.data.num_train_images if cfg.data.source == "synthetic" else None
    if cfg.data.source == "synthetic":
        cfg.data.num_train_images = images
    train = open_datasets(cfg).train
    full_images = full_images or len(train)
    train.records = train.records[:images]
    torch.manual_seed(0)
    teacher = build_detector(t_cfg.model.name, train.num_classes, **t_cfg.model.overrides).eval()
    spec_kwargs = {k: v for k, v in t_cfg.model.overrides.items() if k in PAIRING_KWARGS}
    students = [build_detector(cfg.model.name, train.num_classes, **spec_kwargs, **cfg.model.overrides)]
    students += [copy.deepcopy(students[0]) for _ in range(2)]
    plain = students[0].train()
    live = Distiller(teacher, students[1], DistillConfig()).train()
    cached = Distiller(teacher, students[2], DistillConfig()).train()
    # The same without the RCN terms: what is left once the teacher's RoI head (on the student's RoIs) is out.
    no_rcn = Distiller(teacher, copy.deepcopy(students[0]), DistillConfig(rcn_soft=False, rcn_bounded=False)).train()
    augment = AugmentConfig(hflip_prob=cfg.data.hflip_prob)
    states = flip_states(augment)
    bs = cfg.train.batch_size

    # Build vs one no-grad pass (same loading and batching), alternated twice; the faster of each (a shared
    # machine only ever adds time).
    passes, builds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(2):
            passes.append(_teacher_pass(teacher, train, states, bs))
            start = time.perf_counter()
            cache = build_teacher_cache(teacher, train, Path(tmp) / f"cache{rep}", teacher_sha256="bench",
                                        augment=augment, dtype=dtype, batch_size=bs, progress=False)
            builds.append(time.perf_counter() - start)
        cached.teacher_source = no_rcn.teacher_source = cache
        entry_bytes = cache.manifest["bytes"] / cache.manifest["entries"]

        # Steps, interleaved, on the same augmented batches.
        loader = build_loader(train, bs, train=True, transforms=DetectionAugment(augment), seed=0)
        batches = list(loader)[:max(2, min(rounds + 1, len(loader)))]
        modules = [(plain, torch.optim.SGD(plain.parameters(), lr=1e-4, momentum=0.9))]
        for d in (live, cached, no_rcn):
            modules.append((d, torch.optim.SGD([p for p in d.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)))
        heads = teacher.roi_heads
        roi_timer = _Timer([heads.box_roi_pool, heads.box_head, heads.box_predictor])
        times: list[list[float]] = [[], [], [], []]
        roi_in_cached: list[float] = []
        for r in range(rounds + 1):
            images_b, targets_b = batches[r % len(batches)]
            for k, (module, opt) in enumerate(modules):
                roi_timer.total = 0.0
                t = timed_step(module, opt, images_b, targets_b)
                if r > 0:  # warm-up round
                    times[k].append(t)
                    if k == 2:
                        roi_in_cached.append(roi_timer.total)
        plain_s, live_s, cached_s, no_rcn_s = (statistics.median(t) for t in times)

        # Loading with the cache: DataLoader fetch + augmentation, then reading and pasting the entries.
        fetch, read = [], []
        it = iter(build_loader(train, bs, train=True, transforms=DetectionAugment(augment), seed=1))
        for _ in range(len(batches)):
            start = time.perf_counter()
            images_b, targets_b = next(it)
            fetch.append(time.perf_counter() - start)
            with torch.no_grad():
                image_list, targets_t = cached.student.eval().transform(images_b, targets_b)
            start = time.perf_counter()
            cache.teacher_outputs(image_list, targets_t, need_rpn=True)
            read.append(time.perf_counter() - start)
        load_s = statistics.median(fetch) + statistics.median(read)
    return {"setting": name, "teacher": t_cfg.model.name, "student": cfg.model.name, "images": len(train),
            "entries": len(train) * len(states), "batch": bs, "plain": plain_s, "live": live_s, "cached": cached_s,
            "no_rcn": no_rcn_s, "teacher_roi": statistics.median(roi_in_cached), "pass": min(passes), "build": min(builds),
            "fetch": statistics.median(fetch), "read": statistics.median(read), "load": load_s,
            "full_bytes": entry_bytes * full_images * len(states), "full_images": full_images, "dtype": dtype}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["synthetic", "bccd"], choices=sorted(SETTINGS))
    parser.add_argument("--images", type=int, default=24, help="training images cached and stepped over")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of (plain, live, cached) steps")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bccd", type=Path, default=ROOT.parent / "shared" / "data" / "bccd", help="BCCD folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.settings:
        if name == "bccd" and not args.bccd.is_dir():
            print(f"bccd: skipped ({args.bccd} not found; pass --bccd PATH)")
            continue
        rows.append(run_setting(name, args.images, args.rounds, args.dtype, args.bccd))
    print(f"{args.threads} thread(s), {args.images} images x flip states cached ({args.dtype}), batch 4, "
          f"median of {args.rounds} interleaved rounds after one warm-up")
    print("| setting (teacher -> student) | plain step | distilled, live teacher | distilled, cached | "
          "of which teacher RoI head | cached, RCN terms off | build / teacher pass | loading (fetch + cache read) | "
          "loading rate / step rate | full train split on disk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} ({r['teacher']} -> {r['student']}) | {r['plain'] * 1e3:.0f} ms | "
              f"{r['live'] * 1e3:.0f} ms ({r['live'] / r['plain']:.2f}x) | "
              f"{r['cached'] * 1e3:.0f} ms ({r['cached'] / r['plain']:.2f}x) | {r['teacher_roi'] * 1e3:.0f} ms | "
              f"{r['no_rcn'] * 1e3:.0f} ms ({r['no_rcn'] / r['plain']:.2f}x) | "
              f"{r['build']:.1f} s / {r['pass']:.1f} s = {r['build'] / r['pass']:.2f}x | "
              f"{r['fetch'] * 1e3:.0f} + {r['read'] * 1e3:.1f} ms | {r['cached'] / r['load']:.1f}x | "
              f"{r['full_bytes'] / 1e6:.0f} MB ({r['full_images']} images x {r['entries'] // r['images']}) |")
    for r in rows:
        print(f"{r['setting']}: cached / plain = {r['cached'] / r['plain']:.2f} (target <= 1.2); build / pass = "
              f"{r['build'] / r['pass']:.2f} (target <= 1.1 plus writing); loading / step rate = "
              f"{r['cached'] / r['load']:.1f} (target >= 3)")


if __name__ == "__main__":
    main()
