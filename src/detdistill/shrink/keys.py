"""What each piece of a search's run folder depends on, so that a rerun reuses exactly the unchanged pieces.

A piece (the candidate list, the timing table, one distillation run, the student) is stored with its *key*:
a JSON object of the inputs it was computed from. Keys hold content, never paths — the teacher by its SHA-256,
each split by a digest of its records and image bytes, the config without the keys that only say where things
are — so a run folder (or the data, or the teacher) moved elsewhere keys the same. A piece is reused when its
stored key equals the key it would be computed from now; otherwise :func:`what_changed` names the fields
that differ in the one line that says it is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import ExperimentConfig, config_to_dict, flatten_config
from ..utils import atomic_write_text

KEY_FILE = "key.json"

# Config keys that say where things are or how a run shows itself, not what it computes. The data's identity is
# its digest (data.source is where it lives); the teacher's is its hash; the search sets the per-run keys itself
# (model, steps, seed, folder, schedule), and each run's key records those.
NOT_IDENTITY = frozenset({
    "data.source", "data.num_workers", "teacher", "distill.teacher_cache", "train.out_dir", "train.progress",
    "train.log_every", "distill.teacher_eval_images", "distill.teacher_min_map",
    "distill.allow_weak_teacher"})
SET_PER_RUN = ("model.", "train.max_steps", "train.seed", "train.eval_every", "train.checkpoint_every",
               "train.threads", "optim.warmup_steps", "optim.milestones", "data.test_split")


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object (key order does not matter).

    >>> digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    True
    """
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def split_key(dataset: Any) -> dict[str, Any]:
    """A split's identity: its records (file names, sizes, boxes, labels) and every image file's bytes.

    Generated data (no files) is identified by its generator's seed and settings, which decide its pixels.
    """
    h = hashlib.blake2b(digest_size=16)
    rec = dataset.records
    for arr in (rec.names, rec.name_offsets, rec.widths, rec.heights, rec.box_offsets, rec.boxes, rec.labels,
                rec.iscrowd, rec.difficult):
        h.update(np.ascontiguousarray(arr).tobytes())
    for i in range(len(dataset)):
        path = Path(dataset.image_path(i))
        if path.is_file():
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    generator = {"seed": int(dataset.seed), "config": repr(getattr(dataset, "config", None)),
                 "split": str(getattr(dataset, "split", ""))} if hasattr(dataset, "seed") else None
    return {"images": len(dataset), "classes": list(dataset.class_names), "digest": h.hexdigest(),
            "generator": generator}


def config_key(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config's values that decide what a run computes (flattened; paths and per-run keys left out)."""
    flat = flatten_config(config_to_dict(cfg))
    return {k: v for k, v in sorted(flat.items())
            if k not in NOT_IDENTITY and not any(k == p or (p.endswith(".") and k.startswith(p))
                                                 for p in SET_PER_RUN)}


def what_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """The top-level fields of two keys that differ, as one phrase (the values when they are short).

    >>> what_changed({"steps": 3, "seed": 0, "data": {"digest": "ab"}}, {"steps": 2, "seed": 0, "data": {"digest": "cd"}})
    'data, steps (3 -> 2)'
    """
    if not isinstance(old, dict):
        return "no key recorded"
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str):
            continue
        short = all(isinstance(v, (int, float, str, type(None))) and len(str(v)) <= 24 for v in (a, b))
        parts.append(f"{k} ({a} -> {b})" if short else k)
    return ", ".join(parts) or "nothing"


def stored_key(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(folder) / KEY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claim(folder: Path, key: dict[str, Any], what: str, log: Callable[[str], None]) -> bool:
    """Make ``folder`` the piece keyed ``key``: True when it already is (reuse or resume what is there).

    A folder holding another key's piece is emptied, with one line naming what changed; an empty or new
    folder gets the key written before any work, so a later rerun knows what the files in it belong to.
    """
    folder = Path(folder)
    old = stored_key(folder)
    if old == json.loads(json.dumps(key, default=str)):
        return True
    if folder.exists() and any(folder.iterdir()):
        log(f"shrink: {what}: recomputing, its inputs changed: {what_changed(old, key)}")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(key, indent=1, default=str) + "\n", folder / KEY_FILE)
    return False
