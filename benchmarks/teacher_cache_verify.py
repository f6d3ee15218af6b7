"""Teacher cache verification cost: what opening a cache (every run, --resume included) now adds.

Writes a cache-shaped folder of the BCCD cache's size (by default 584 entries at 0.78 MiB each, ~446 MiB fp16,
the size BENCHMARKS.md reports for the BCCD teacher cache; 5 FPN levels x 3 outputs + index + fill) with random
contents and a format-2 manifest, then times, side by side in this one process:

* ``verify_teacher_cache`` (manifest checks, sizes, blake2b of every file): cold (page cache dropped with
  ``posix_fadvise(DONTNEED)``, as after a reboot) and warm (just read, as when a run follows the build);
* a plain chunked read of the same files (what any check must pay for the disk) as the reference.

Prints MB/s and seconds of each (the median of ``--repeats``) and the ratio of verification to a plain read.
The folder is deleted at the end.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/teacher_cache_verify.py \\
        --out /work/runs/badinput/verify_bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from detdistill.distill.teacher_cache import FORMAT_VERSION, HASH_CHUNK, MANIFEST, file_record, verify_teacher_cache

LEVELS = ("0", "1", "2", "3", "pool")
# Per-entry share of each output at 448 px, 256 FPN channels, 3 anchors: strides 4..64 (fp16 bytes).
_SHARES = {f"feat_{k}.bin": 256 / 4**i for i, k in enumerate(LEVELS)}
_SHARES.update({f"obj_{i}.bin": 3 / 4**i for i in range(5)})
_SHARES.update({f"del_{i}.bin": 12 / 4**i for i in range(5)})


def write_cache(out: Path, entries: int, entry_mib: float, seed: int = 0) -> int:
    """A format-2 cache folder with random data files of the given size; returns the bytes written."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=False)
    total_share = sum(_SHARES.values())
    total = 0
    for name, share in _SHARES.items():
        size = int(entries * entry_mib * 2**20 * share / total_share) // 2 * 2
        with open(out / name, "wb") as fh:
            for start in range(0, size, 1 << 26):
                fh.write(rng.bytes(min(1 << 26, size - start)))
            fh.flush()
            os.fsync(fh.fileno())
        total += size
    np.savez(out / "index.npz", image_ids=np.arange(entries), hflipped=np.zeros(entries, bool))
    np.savez(out / "fill.npz", **{name: np.zeros(8, np.float32) for name in _SHARES})
    files = list(_SHARES)
    manifest = {"format": FORMAT_VERSION, "teacher_sha256": "0" * 64, "transform": {}, "augmentation": {},
                "dtype": "float16", "dataset": {}, "entries": entries, "bytes": total, "files": files,
                "levels": {k: {"channels": 256, "stride": 4 * 2**i, "anchors": 3} for i, k in enumerate(LEVELS)},
                "data_files": {name: file_record(out / name) for name in [*files, "index.npz", "fill.npz"]}}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return total


def drop_page_cache(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def plain_read(folder: Path) -> int:
    n = 0
    for path in sorted(folder.iterdir()):
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
                n += len(chunk)
    return n


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/runs/badinput/verify_bench"))
    parser.add_argument("--entries", type=int, default=584, help="cache entries (BCCD train: 292 images x 2 flips)")
    parser.add_argument("--entry-mib", type=float, default=0.764, help="MiB per entry (BCCD: 446 MiB / 584)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    try:
        total = write_cache(args.out, args.entries, args.entry_mib)
        mb = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
        rows: dict[str, list[float]] = {"verify cold": [], "plain read cold": [], "verify warm": [],
                                        "plain read warm": []}
        for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits every arm alike
            drop_page_cache(args.out)
            rows["verify cold"].append(timed(lambda: verify_teacher_cache(args.out)))
            drop_page_cache(args.out)
            rows["plain read cold"].append(timed(lambda: plain_read(args.out)))
            rows["verify warm"].append(timed(lambda: verify_teacher_cache(args.out)))
            rows["plain read warm"].append(timed(lambda: plain_read(args.out)))
        print(f"cache folder: {args.entries} entries, {total / 2**20:.0f} MiB of data files ({mb:.0f} MB in all), "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, median of {args.repeats}")
        med = {k: statistics.median(v) for k, v in rows.items()}
        for key, seconds in med.items():
            print(f"  {key:16s} {seconds:6.2f} s  {mb / seconds:7.0f} MB/s")
        for state in ("cold", "warm"):
            print(f"  verify / plain read ({state}): {med[f'verify {state}'] / med[f'plain read {state}']:.2f}x")
    finally:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
