"""COCO-size annotations: open time, peak RSS, ``data stats`` time and DataLoader-worker memory growth.

Generates a synthetic COCO ``instances`` file of train2017's size with a seed (118,287 images, 860,001
boxes, 80 non-contiguous category ids, ~1 % crowd boxes; no image files: nothing here decodes pixels) and
measures, side by side in one run on the same file, ``detdistill.data.open_dataset`` against
``pycocotools.coco.COCO``:

* open time (CPU and wall) and peak RSS, each in a fresh subprocess (``VmHWM`` of the child), so one
  measurement's heap never inflates the next. Peak RSS is reported whole and above the child's RSS after its imports
  (torch alone is a few hundred MB that pycocotools does not import);
* ``detdistill data stats`` on the file (the CLI in a subprocess, wall time);
* memory growth of 4 forked DataLoader workers over 2,000 ``__getitem__`` calls each with image decoding
  stubbed, as USS/PSS from ``/proc/<pid>/smaps_rollup`` (RSS counts pages still shared with the parent,
  so only USS shows copy-on-write copies), against the annotation memory the parent holds;
* a scaling curve: open time and peak RSS at 10k, 30k and 118k images (boxes in proportion).

Run (single-threaded, niced; ~3-5 minutes on 2 cores):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python benchmarks/dataset_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COCO_IMAGES, COCO_BOXES, COCO_CLASSES = 118_287, 860_001, 80


def generate(path: Path, num_images: int, num_boxes: int, num_classes: int = COCO_CLASSES, seed: int = 0) -> Path:
    """Write a COCO-style annotation file of the given size (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 600_000), num_images, replace=False))
    widths = rng.choice([640, 640, 640, 500, 427, 480, 612], num_images)
    heights = rng.choice([480, 427, 640, 375, 424, 512], num_images)
    # COCO's ids run 1..90 with gaps; pick num_classes of them.
    cat_ids = np.sort(rng.choice(np.arange(1, 91), num_classes, replace=False))
    images = [{"license": 1, "file_name": f"{i:012d}.jpg", "height": int(h), "width": int(w), "id": int(i)}
              for i, w, h in zip(ids, widths, heights)]
    owner = rng.integers(0, num_images, num_boxes)
    w_img, h_img = widths[owner].astype(np.float64), heights[owner].astype(np.float64)
    bw = np.round(np.minimum(rng.gamma(1.2, 0.12, num_boxes), 0.95) * w_img + 1, 2)
    bh = np.round(np.minimum(rng.gamma(1.2, 0.12, num_boxes), 0.95) * h_img + 1, 2)
    x = np.round(rng.uniform(0, 1, num_boxes) * (w_img - bw), 2)
    y = np.round(rng.uniform(0, 1, num_boxes) * (h_img - bh), 2)
    area = np.round(bw * bh * rng.uniform(0.4, 0.9, num_boxes), 4)
    crowd = (rng.uniform(size=num_boxes) < 0.01).astype(int)
    cats = cat_ids[rng.integers(0, num_classes, num_boxes)]
    ann_ids = rng.permutation(np.arange(1, num_boxes + 1)) + 900_000
    annotations = [{"area": float(a), "iscrowd": int(c), "image_id": int(ids[o]), "bbox": [float(xx), float(yy),
                    float(ww), float(hh)], "category_id": int(k), "id": int(aid)}
                   for a, c, o, xx, yy, ww, hh, k, aid in zip(area, crowd, owner, x, y, bw, bh, cats, ann_ids)]
    categories = [{"supercategory": "thing", "id": int(c), "name": f"class{c}"} for c in cat_ids]
    doc = {"info": {"description": f"synthetic COCO-size annotations, seed {seed}"}, "licenses": [],
           "images": images, "annotations": annotations, "categories": categories}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(", ", ": ")))
    return path


# Each child prints one JSON line: open seconds, peak RSS and RSS after imports. The peak is VmHWM (this
# process image's high-water mark), not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child
# of a big parent would report the parent's size.
_OPEN_CHILD = r"""
import json, sys, time
def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
def rss_kb():
    return status_kb("VmRSS:")
kind, path = sys.argv[1], sys.argv[2]
if kind == "detdistill":
    from detdistill.data import open_dataset
    base = rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    ds = open_dataset(path)
    n = len(ds)
else:
    import contextlib, io
    from pycocotools.coco import COCO
    base = rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        ds = COCO(path)
    n = len(ds.imgs)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
extra = {"table_bytes": ds.records.nbytes} if kind == "detdistill" else {}
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_kb": status_kb("VmHWM:"),
                  "base_kb": base, "held_kb": rss_kb(), "images": n, **extra}))
"""

# Forks 4 DataLoader workers over annotation-only samples (the image is a stub: the annotation side alone
# is measured) and reports each worker's USS/PSS before and after 2,000 __getitem__ calls.
_WORKER_CHILD = r"""
import json, os, sys, time
import torch
from torch.utils.data import DataLoader, Dataset
from detdistill.data import open_dataset

def rollup(pid):
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"):
            out[parts[0][:-1]] = int(parts[1])
    return {"rss": out["Rss"], "pss": out["Pss"], "uss": out["Private_Clean"] + out["Private_Dirty"]}

def rss_kb():
    return rollup(os.getpid())["rss"]

path, workers, calls, warmup, layout, report_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ds = open_dataset(path)
if layout == "table":
    annotation_kb = ds.records.nbytes / 1024
    get_target = ds.get_target
else:
    # The layout before RecordTable: one ImageRecord (five small arrays) per image, in a Python list.
    before = rss_kb()
    objects = list(ds.records)
    annotation_kb = rss_kb() - before
    get_target = lambda i: objects[i].target()

class Probe(Dataset):
    # dataset[i] with decoding stubbed: the target is built as DetectionDataset.__getitem__ builds it.
    counts = {}
    def __len__(self): return len(ds)
    def __getitem__(self, i):
        info = torch.utils.data.get_worker_info()
        k = self.counts.get(info.id, 0)
        if k == warmup:
            json.dump(rollup(os.getpid()), open(f"{report_dir}/w{info.id}_start.json", "w"))
        self.counts[info.id] = k + 1
        item = torch.zeros(1), get_target(i)
        if k + 1 == warmup + calls:
            json.dump(rollup(os.getpid()), open(f"{report_dir}/w{info.id}_end.json", "w"))
        return item

n = len(ds)
# Indices spread over the whole set, so each worker touches every part of the annotations.
order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
total = workers * (calls + warmup)
indices = (order * (total // n + 1))[:total]
# DataLoader hands batch j to worker j % workers: one sample per batch, calls + warmup batches each.
loader = DataLoader(Probe(), batch_sampler=[[i] for i in indices], num_workers=workers,
                    collate_fn=lambda b: b, persistent_workers=False, prefetch_factor=2)
t0 = time.perf_counter()
count = sum(1 for _ in loader)
seconds = time.perf_counter() - t0
res = {"samples": count, "seconds": seconds, "annotation_kb": annotation_kb, "workers": []}
for w in range(workers):
    res["workers"].append({"start": json.load(open(f"{report_dir}/w{w}_start.json")),
                           "end": json.load(open(f"{report_dir}/w{w}_end.json"))})
print(json.dumps(res))
"""


def _child(code: str, *args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_open(path: Path, repeats: int) -> dict[str, dict]:
    """Best-of-``repeats`` open time and the peak RSS of that run, each in a fresh child, alternating readers."""
    runs: dict[str, list[dict]] = {"detdistill": [], "pycocotools": []}
    for _ in range(repeats):
        for kind in runs:
            runs[kind].append(_child(_OPEN_CHILD, kind, str(path)))
    return {kind: min(r, key=lambda x: x["cpu"]) for kind, r in runs.items()}


def measure_stats(path: Path, out_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``detdistill data stats`` (a fresh CLI process: imports, open, stats, plot)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, "-c", "import sys; from detdistill.cli import main; sys.exit(main())", "data", "stats",
           str(path), "--out", str(out_dir / "stats.png")]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"data stats failed:\n{res.stderr[-3000:]}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure_workers(path: Path, workers: int, calls: int, warmup: int, layout: str, out_dir: Path) -> dict:
    report = out_dir / f"workers_{layout}"
    report.mkdir(exist_ok=True)
    return _child(_WORKER_CHILD, str(path), str(workers), str(calls), str(warmup), layout, str(report))


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=COCO_IMAGES)
    p.add_argument("--boxes", type=int, default=COCO_BOXES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve", default="10000,30000", help="smaller image counts for the scaling curve ('' for none)")
    p.add_argument("--repeats", type=int, default=2, help="open measurements per reader (best time is kept)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--calls", type=int, default=2000, help="__getitem__ calls per worker")
    p.add_argument("--warmup", type=int, default=50, help="calls per worker before the first USS reading")
    p.add_argument("--no-reference", action="store_true", help="skip the one-object-per-image reference layout")
    p.add_argument("--workdir", type=Path, default=None, help="where the generated files go (default: a temp dir)")
    args = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="dataset_scale_") if args.workdir is None else None
    work = Path(tmp.name) if tmp is not None else args.workdir
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    full = generate(work / "instances_full.json", args.images, args.boxes, seed=args.seed)
    print(f"generated {full.name}: {args.images} images, {args.boxes} boxes, {COCO_CLASSES} classes, "
          f"{full.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s (seed {args.seed})", flush=True)

    sizes = [int(s) for s in args.curve.split(",") if s.strip()] + [args.images]
    curve = {}
    for n in sizes:
        path = full if n == args.images else generate(work / f"instances_{n}.json", n,
                                                         round(args.boxes * n / args.images), seed=args.seed)
        curve[n] = measure_open(path, args.repeats)
        d, c = curve[n]["detdistill"], curve[n]["pycocotools"]
        print(f"  open {n} images: detdistill {d['cpu']:.2f} s CPU / {_mb(d['peak_kb'])}, "
              f"pycocotools {c['cpu']:.2f} s CPU / {_mb(c['peak_kb'])}", flush=True)
    stats_wall, stats_cpu = measure_stats(full, work)
    print(f"  data stats: {stats_wall:.1f} s wall, {stats_cpu:.1f} s CPU", flush=True)
    layouts = ["table"] + ([] if args.no_reference else ["objects"])
    wk = {layout: measure_workers(full, args.workers, args.calls, args.warmup, layout, work) for layout in layouts}

    d, c = curve[args.images]["detdistill"], curve[args.images]["pycocotools"]
    table_kb = d["table_bytes"] / 1024
    print()
    print(f"COCO-size annotations ({args.images} images, {args.boxes} boxes, {COCO_CLASSES} classes, seed "
          f"{args.seed}; {full.stat().st_size / 1e6:.0f} MB JSON; best CPU time of {args.repeats} fresh processes "
          f"per reader, alternating; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print()
    print("| measure | detdistill | pycocotools | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| open, CPU time | {d['cpu']:.2f} s | {c['cpu']:.2f} s | {d['cpu'] / c['cpu']:.2f}x | <= 1.5x |")
    print(f"| open, wall time (same runs) | {d['seconds']:.2f} s | {c['seconds']:.2f} s | "
          f"{d['seconds'] / c['seconds']:.2f}x | |")
    print(f"| peak RSS, whole process | {_mb(d['peak_kb'])} | {_mb(c['peak_kb'])} | "
          f"{d['peak_kb'] / c['peak_kb']:.2f}x | <= 1.0x |")
    dp, cp = d["peak_kb"] - d["base_kb"], c["peak_kb"] - c["base_kb"]
    print(f"| peak RSS above the imports | {_mb(dp)} | {_mb(cp)} | {dp / cp:.2f}x | |")
    dh, ch = d["held_kb"] - d["base_kb"], c["held_kb"] - c["base_kb"]
    print(f"| RSS held after open, above the imports | {_mb(dh)} | {_mb(ch)} | {dh / ch:.2f}x | |")
    print(f"| RSS of the imports alone | {_mb(d['base_kb'])} | {_mb(c['base_kb'])} | | |")
    print(f"| `detdistill data stats` (CLI process) | {stats_wall:.1f} s wall, {stats_cpu:.1f} s CPU | | | <= 10 s |")
    print()
    print(f"DataLoader workers: {args.workers} forked workers, {args.calls} `__getitem__` calls each after "
          f"{args.warmup} warm-up calls, decoding stubbed; USS = private pages (copy-on-write copies show here), "
          f"from /proc/<pid>/smaps_rollup. Annotation memory = the parent's RecordTable arrays "
          f"({table_kb / 1024:.1f} MB); the `objects` row is the same annotations as one ImageRecord per image "
          f"(the layout before this change), for reference.")
    print()
    print("| layout | annotation memory | worker | USS after warm-up | USS after calls | USS growth | growth / "
          "annotation memory | PSS growth |")
    print("|---|---|---|---|---|---|---|---|")
    worst = {}
    for layout, res in wk.items():
        held = res["annotation_kb"]
        growths = []
        for i, w in enumerate(res["workers"]):
            g, pg = w["end"]["uss"] - w["start"]["uss"], w["end"]["pss"] - w["start"]["pss"]
            growths.append(g)
            print(f"| {layout} | {_mb(held)} | {i} | {_mb(w['start']['uss'])} | {_mb(w['end']['uss'])} | "
                  f"{g / 1024:.1f} MB | {100 * g / held:.1f} % | {pg / 1024:.1f} MB |")
        worst[layout] = 100 * max(growths) / held
    print(f"\ntarget: USS growth <= 10 % of the annotation memory per worker; worst worker (table layout): "
          f"{worst['table']:.1f} %")
    print()
    print("Scaling curve (each open in a fresh process):")
    print()
    print("| images | boxes | detdistill open (CPU) | pycocotools open (CPU) | ratio | detdistill peak RSS "
          "(above imports) | pycocotools peak RSS (above imports) | ratio (whole) | ratio (above imports) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        d, c = curve[n]["detdistill"], curve[n]["pycocotools"]
        dp, cp = d["peak_kb"] - d["base_kb"], c["peak_kb"] - c["base_kb"]
        print(f"| {n} | {round(args.boxes * n / args.images)} | {d['cpu']:.2f} s | {c['cpu']:.2f} s | "
              f"{d['cpu'] / c['cpu']:.2f}x | {_mb(d['peak_kb'])} ({_mb(dp)}) | {_mb(c['peak_kb'])} ({_mb(cp)}) | "
              f"{d['peak_kb'] / c['peak_kb']:.2f}x | {dp / cp:.2f}x |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
