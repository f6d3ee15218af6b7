"""Teacher cache: the frozen teacher's student-independent outputs, computed once and memory-mapped.

A distillation step re-runs the teacher on inputs it has already seen. With an enumerable augmentation
(horizontal flip or none) the teacher's input depends on ``(image, flip)`` alone, so its FPN levels and RPN
head outputs can be computed once per ``(image, flip)`` and read back in every step, seed and ablation cell.
The teacher's RoI head is not cached: it runs on the student's sampled RoIs, pooled from the cached levels.

Layout of a cache folder (numpy memmaps: numpy is already a dependency, a flat file per output slices with
no decoding, and every DataLoader worker or DDP rank maps only the pages it touches)::

    manifest.json        identity (teacher SHA-256, transform, augmentation, dataset files, dtype, levels),
                         every data file's size and blake2b hash and each image's blake2b; written last, so
                         a folder without it is not a cache
    index.npz            per entry: image id, flip, canvas, per-level (h, w), per-file element offsets
    fill.npz             the teacher's per-channel response to an all-padding canvas (fills a batch canvas
                         around a smaller image)
    feat_<level>.bin     C x h x w per entry, concatenated
    obj_<i>.bin          RPN objectness A x h x w per entry, level i
    del_<i>.bin          RPN deltas 4A x h x w per entry, level i

Flip is cached as two states rather than by flipping features: convolutions are not flip-equivariant.

Opening a cache (:class:`TeacherCache`, so every run that uses one, ``--resume`` included) checks the
manifest's fields and re-hashes every data file against it before step 1: a zero-filled, overwritten or
truncated file would otherwise train silently on wrong teacher outputs. ``detdistill cache-teacher --verify
DIR`` runs the same check alone. Format 1 caches (no hashes) must be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DetDistillError
from ..utils import file_sha256

FORMAT_VERSION = 2  # 2: the manifest records each data file's size and blake2b hash ("data_files")
DTYPES = {"float16": np.float16, "float32": np.float32}
MANIFEST = "manifest.json"
_JSON_TYPES = {dict: "object", list: "array", int: "integer", str: "string"}
HASH_CHUNK = 1 << 22  # 4 MiB reads: large enough that hashing, not the syscalls, sets the pace
#: What a manifest must hold, with the type each field has (anything else is a damaged or foreign manifest).
MANIFEST_FIELDS: dict[str, type] = {"format": int, "teacher_sha256": str, "transform": dict, "augmentation": dict,
                                    "dtype": str, "dataset": dict, "levels": dict, "files": list, "entries": int,
                                    "bytes": int, "data_files": dict}


class TeacherCacheError(DetDistillError):
    """The cache cannot be used or built as asked; the message says what differs and what to do."""


# ----------------------------------------------------------------------------------------- identity
def flip_states(augment: Any) -> list[bool]:
    """The enumerable augmentation states of ``augment`` (an ``AugmentConfig``); refuse anything else."""
    if augment is None:
        return [False]
    if getattr(augment, "scale_jitter", None) is not None:
        raise TeacherCacheError(f"data.scale_jitter: value {list(augment.scale_jitter)} draws a new input size per "
                                "sample, so the teacher's outputs cannot be enumerated; set data.scale_jitter=null "
                                "or distill.teacher_cache=null")
    if getattr(augment, "photometric", False):
        raise TeacherCacheError("data.photometric: value true draws new colours per sample, so the teacher's outputs "
                                "cannot be enumerated; set data.photometric=false or distill.teacher_cache=null")
    p = float(getattr(augment, "hflip_prob", 0.0))
    return [False] if p <= 0 else [True] if p >= 1 else [False, True]


def transform_spec(model: torch.nn.Module) -> dict[str, Any]:
    """What of the detector's ``GeneralizedRCNNTransform`` decides the teacher's input."""
    t = model.transform
    spec = {"min_size": [int(s) for s in t.min_size], "max_size": int(t.max_size),
            "image_mean": [float(v) for v in t.image_mean], "image_std": [float(v) for v in t.image_std],
            "size_divisible": int(t.size_divisible), "fixed_size": list(t.fixed_size) if t.fixed_size else None}
    if len(spec["min_size"]) > 1:
        raise TeacherCacheError(f"model min_size: value {spec['min_size']} picks a random size per training batch "
                                "(multi-scale training), so the teacher's outputs cannot be enumerated; use one "
                                "min_size or distill.teacher_cache=null")
    return spec


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """The dataset's image list with sizes and mtimes (or, for generated data, its generator settings)."""
    files = []
    for i, rec in enumerate(dataset.records):
        path = Path(dataset.image_path(i))
        entry: list[Any] = [int(rec.image_id), str(rec.file_name), int(rec.width), int(rec.height)]
        if path.is_file():
            st = path.stat()
            entry += [int(st.st_size), int(st.st_mtime_ns)]
        files.append(entry)
    info: dict[str, Any] = {"name": getattr(dataset, "name", type(dataset).__name__), "files": files}
    if hasattr(dataset, "seed") and hasattr(dataset, "config"):  # generated in memory: no files to stat
        config = dataset.config
        info["generator"] = {"seed": int(dataset.seed),
                             "config": asdict(config) if hasattr(config, "__dataclass_fields__") else repr(config)}
    return info


def image_hashes(dataset: Any) -> list[str | None]:
    """blake2b of every image file, in the dataset's order (None where there is no file: generated data).

    Stored in the manifest (``image_blake2b``) so that an image whose mtime changed with the same bytes (a copy
    without ``-p``, a re-extracted archive, ``git checkout``) does not force a rebuild; see
    :func:`accept_touched_images`."""
    paths = [Path(dataset.image_path(i)) for i in range(len(dataset.records))]
    return [file_record(path)["blake2b"] if path.is_file() else None for path in paths]


def accept_touched_images(manifest: dict[str, Any], expected: dict[str, Any], dataset: Any) -> int:
    """Images whose only change since the build is the mtime and whose bytes still hash as built: their
    ``expected`` entries take the built mtime (so the identity check passes), and their count is returned.

    A cache built before the manifest recorded image hashes, or an image with other bytes, is left as it is:
    the identity check then refuses it, naming the image."""
    hashes = manifest.get("image_blake2b")
    built = manifest.get("dataset", {}).get("files", [])
    wanted = expected["dataset"]["files"]
    if not isinstance(hashes, list) or len(hashes) != len(wanted) or len(built) != len(wanted):
        return 0
    touched = 0
    for i, (a, b) in enumerate(zip(built, wanted)):
        if len(a) == len(b) == 6 and list(a[:5]) == list(b[:5]) and a[5] != b[5] and hashes[i]:
            if file_record(dataset.image_path(i))["blake2b"] != hashes[i]:
                return touched  # other bytes: leave the difference for the identity check to name
            b[5] = a[5]
            touched += 1
    return touched


def cache_identity(teacher: torch.nn.Module, teacher_sha256: str, dataset: Any, augment: Any,
                   dtype: str = "float16") -> dict[str, Any]:
    """The part of the manifest a cache must match to be used (checked field by field on open)."""
    if dtype not in DTYPES:
        raise TeacherCacheError(f"distill.teacher_cache_dtype: unknown value {dtype!r}; choose one of {list(DTYPES)}")
    states = flip_states(augment)
    return {"format": FORMAT_VERSION, "teacher_sha256": teacher_sha256, "transform": transform_spec(teacher),
            "augmentation": {"hflip_states": states}, "dtype": dtype, "dataset": dataset_fingerprint(dataset)}


def _first_difference(built: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """One line naming what differs between a manifest and what this run needs, or None."""
    labels = {"format": "cache format", "teacher_sha256": "teacher file (SHA-256)", "transform": "model transform",
              "augmentation": "augmentation", "dtype": "dtype (distill.teacher_cache_dtype)"}
    for key, label in labels.items():
        if built.get(key) != wanted[key]:
            a, b = built.get(key), wanted[key]
            if key == "teacher_sha256":
                a, b = f"{str(a)[:12]}…", f"{b[:12]}…"
            return f"{label}: cache built with {a}, this run has {b}"
    bd, wd = built.get("dataset", {}), wanted["dataset"]
    if bd.get("name") != wd["name"] or bd.get("generator") != wd.get("generator"):
        return f"dataset: cache built on {bd.get('name')} {bd.get('generator', '')}, this run uses {wd['name']} " \
               f"{wd.get('generator', '')}".replace("  ", " ")
    bf, wf = bd.get("files", []), wd["files"]
    if len(bf) != len(wf):
        return f"dataset: cache built on {len(bf)} images, this run has {len(wf)}"
    for a, b in zip(bf, wf):
        if list(a) != list(b):
            return (f"dataset: image {b[1]} changed (cache: id/size/mtime {a[0]}/{a[4:] or a[2:4]}, now "
                    f"{b[0]}/{b[4:] or b[2:4]})")
    return None


# ------------------------------------------------------------------------------------------- build
def _level_strides(canvas: tuple[int, int], shapes: Sequence[tuple[int, int]]) -> list[int]:
    return [int(round(canvas[0] / h)) if h else 0 for h, _ in shapes]


def _entries(dataset: Any, states: list[bool]) -> list[tuple[int, bool]]:
    """(dataset index, flip) in build order, grouped by image size so that a build batch shares one canvas."""
    order = sorted(range(len(dataset)), key=lambda i: (dataset.records[i].height, dataset.records[i].width, i))
    return [(i, flip) for flip in states for i in order]


@torch.no_grad()
def _teacher_forward(teacher: torch.nn.Module, images: list[Tensor]) -> tuple[Any, dict[str, Tensor], list, list]:
    image_list, _ = teacher.transform(images)
    features = teacher.backbone(image_list.tensors)
    objectness, deltas = teacher.rpn.head(list(features.values()))
    return image_list, features, objectness, deltas


def _clean_stale_partials(out: Path) -> None:
    """Remove what builds killed before they finished left behind (their process is gone)."""
    for stale in out.parent.glob(f"{out.name}.partial-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except (ValueError, ProcessLookupError):
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(stale, ignore_errors=True)


def build_teacher_cache(teacher: torch.nn.Module, dataset: Any, out_dir: str | Path, *, teacher_sha256: str,
                        augment: Any = None, dtype: str = "float16", batch_size: int = 4, progress: bool = True,
                        device: str | torch.device = "cpu", on_batch: Callable[[int], None] | None = None,
                        teacher_path: str | Path | None = None) -> "TeacherCache":
    """Run the teacher once over every (image, flip state) of ``dataset`` and write the cache to ``out_dir``.

    The folder appears complete or not at all: everything is written into ``<out_dir>.partial-<pid>``, the
    manifest last, and the folder renamed into place. A killed build leaves only that partial folder, which
    the next build removes. ``on_batch(k)`` is called after each written batch (tests kill a build there).
    ``teacher_path`` is recorded so that a failed verification can print the command that rebuilds the cache.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    if (out / MANIFEST).is_file():
        raise TeacherCacheError(f"{out}: a teacher cache is already there; remove it to rebuild")
    if out.exists() and any(out.iterdir()):
        raise TeacherCacheError(f"{out}: folder exists and is not a teacher cache (no {MANIFEST}); choose another "
                                "distill.teacher_cache folder")
    identity = cache_identity(teacher, teacher_sha256, dataset, augment, dtype)
    ids = [int(r.image_id) for r in dataset.records]
    if len(set(ids)) != len(ids):
        raise TeacherCacheError(f"{getattr(dataset, 'name', 'dataset')}: image ids repeat, so the cache cannot key "
                                "its entries by image id")
    np_dtype = DTYPES[dtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_partials(out)
    tmp = out.parent / f"{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    was_training = teacher.training
    teacher.eval()
    device = torch.device(device)
    files: dict[str, Any] = {}
    try:
        entries = _entries(dataset, identity["augmentation"]["hflip_states"])
        levels: list[str] = []
        file_names: list[str] = []
        image_ids, flips, canvases, shapes, offsets = [], [], [], [], []
        cursor: list[int] = []
        start = time.perf_counter()
        bar = tqdm(total=len(entries), desc="teacher cache", unit="img", disable=not progress, dynamic_ncols=True)
        batches: list[list[tuple[int, bool]]] = []
        for idx, flip in entries:  # batch only entries with the same flip and image size (one shared canvas)
            rec = dataset.records[idx]
            last = batches[-1][-1] if batches else None
            if (last is None or len(batches[-1]) >= batch_size or last[1] != flip
                    or (dataset.records[last[0]].height, dataset.records[last[0]].width) != (rec.height, rec.width)):
                batches.append([])
            batches[-1].append((idx, flip))
        for k, batch in enumerate(batches):
            images = []
            for idx, flip in batch:
                image = dataset[idx][0]
                images.append(image.flip(-1) if flip else image)  # = v2.functional.horizontal_flip
            image_list, features, objectness, deltas = _teacher_forward(teacher, [im.to(device) for im in images])
            if not files:
                levels = list(features)
                file_names = [f"feat_{key}.bin" for key in levels] + [f"obj_{i}.bin" for i in range(len(levels))] \
                    + [f"del_{i}.bin" for i in range(len(levels))]
                files = {name: open(tmp / name, "wb") for name in file_names}
                hashes = {name: hashlib.blake2b() for name in file_names}
                cursor = [0] * len(file_names)
                channels = [int(features[key].shape[1]) for key in levels]
                anchors = [int(o.shape[1]) for o in objectness]
            outputs = [*features.values(), *objectness, *deltas]
            canvas = tuple(int(s) for s in image_list.tensors.shape[-2:])
            for j, (idx, flip) in enumerate(batch):
                image_ids.append(int(dataset.records[idx].image_id))
                flips.append(flip)
                canvases.append(canvas)
                shapes.append([tuple(int(s) for s in f.shape[-2:]) for f in features.values()])
                row = []
                for f_i, (name, tensor) in enumerate(zip(file_names, outputs)):
                    array = tensor[j].detach().to("cpu", torch.float32).numpy().astype(np_dtype, copy=False)
                    data = np.ascontiguousarray(array).tobytes()
                    files[name].write(data)
                    hashes[name].update(data)  # hashed as written: no second pass over the files
                    row.append(cursor[f_i])
                    cursor[f_i] += array.size
                offsets.append(row)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(k)
        bar.close()
        build_seconds = time.perf_counter() - start
        for fh in files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        # The far-field response to padding: what the teacher sees around a smaller image in a batch canvas.
        biggest = max(canvases, key=lambda c: c[0] * c[1])
        with torch.no_grad():
            pad = torch.zeros(1, 3, *biggest, device=device)
            f_pad = teacher.backbone(pad)
            o_pad, d_pad = teacher.rpn.head(list(f_pad.values()))
        centre = lambda t: t[0, :, t.shape[-2] // 2, t.shape[-1] // 2].float().cpu().numpy()  # noqa: E731
        fills = [centre(t) for t in [*f_pad.values(), *o_pad, *d_pad]]
        np.savez(tmp / "fill.npz", **{name: fill for name, fill in zip(file_names, fills)})
        np.savez(tmp / "index.npz", image_ids=np.asarray(image_ids, np.int64), hflipped=np.asarray(flips, bool),
                 canvases=np.asarray(canvases, np.int64).reshape(-1, 2),
                 shapes=np.asarray(shapes, np.int64).reshape(len(image_ids), len(levels), 2),
                 offsets=np.asarray(offsets, np.int64).reshape(len(image_ids), len(file_names)))
        strides = _level_strides(biggest, shapes[canvases.index(biggest)])
        item = np.dtype(np_dtype).itemsize
        data_files = {name: {"bytes": cursor[f_i] * item, "blake2b": hashes[name].hexdigest()}
                      for f_i, name in enumerate(file_names)}
        data_files.update({name: file_record(tmp / name) for name in ("index.npz", "fill.npz")})
        manifest = {**identity, "levels": {key: {"channels": c, "stride": s, "anchors": a}
                                           for key, c, s, a in zip(levels, channels, strides, anchors)},
                    "files": file_names, "entries": len(image_ids),
                    "bytes": int(sum(cursor) * np.dtype(np_dtype).itemsize), "build_seconds": build_seconds,
                    "teacher_device": str(device), "data_files": data_files, "image_blake2b": image_hashes(dataset),
                    "built_with": {"teacher": str(teacher_path) if teacher_path is not None else None}}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            if out.exists() and not any(out.iterdir()):
                out.rmdir()  # os.replace cannot replace a folder that is not empty
            os.replace(tmp, out)
        except OSError:
            if not (out / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same build first: use it
    except BaseException:
        for fh in files.values():
            fh.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        teacher.train(was_training)
    return TeacherCache(out, verify=False)


# -------------------------------------------------------------------------------------------- read
def manifest_sha256(cache_dir: str | Path) -> str:
    return file_sha256(Path(cache_dir) / MANIFEST)


def file_record(path: str | Path, progress: Any = None) -> dict[str, Any]:
    """``{"bytes", "blake2b"}`` of a file, read in chunks (``progress.update(n)`` per chunk when given)."""
    digest, size = hashlib.blake2b(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return {"bytes": size, "blake2b": digest.hexdigest()}


def rebuild_command(cache_dir: str | Path, manifest: dict[str, Any] | None = None) -> str:
    """How to rebuild the cache in ``cache_dir``: the command line, with the teacher the manifest records."""
    import shlex

    teacher = ((manifest or {}).get("built_with") or {}).get("teacher") if isinstance(manifest, dict) else None
    folder = shlex.quote(str(cache_dir))
    return (f"delete it and rebuild: `rm -r {folder} && detdistill cache-teacher --teacher "
            f"{shlex.quote(str(teacher)) if teacher else 'TEACHER.pt'} --config RECIPE.yaml --out {folder}` "
            "with the recipe the run uses (a distill run with distill.teacher_cache set rebuilds a missing cache "
            "itself)")


def check_manifest(cache_dir: str | Path, manifest: Any) -> None:
    """The manifest's fields are all there with their types, and of this format; else a TeacherCacheError."""
    path = Path(cache_dir) / MANIFEST
    if not isinstance(manifest, dict):
        raise TeacherCacheError(f"{path}: manifest is a JSON {type(manifest).__name__}, not an object; "
                                f"{rebuild_command(cache_dir)}")
    version = manifest.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise TeacherCacheError(f"{path}: field 'format' has value {version}: built by a newer detdistill (this one "
                                f"reads format {FORMAT_VERSION}); upgrade detdistill or "
                                f"{rebuild_command(cache_dir, manifest)}")
    if version == 1 or (isinstance(version, int) and version < FORMAT_VERSION and "data_files" not in manifest):
        raise TeacherCacheError(f"{path}: field 'format' has value {version}: built by an older detdistill that "
                                "recorded no content hashes, so its data files cannot be verified; "
                                f"{rebuild_command(cache_dir, manifest)}")
    for key, kind in MANIFEST_FIELDS.items():
        if key not in manifest:
            raise TeacherCacheError(f"{path}: manifest has no field '{key}' (the file was edited or damaged); "
                                    f"{rebuild_command(cache_dir, manifest)}")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TeacherCacheError(f"{path}: field '{key}' has value {str(value)[:60]!r}: expected a JSON "
                                    f"{_JSON_TYPES[kind]}; {rebuild_command(cache_dir, manifest)}")
    if manifest["dtype"] not in DTYPES:
        raise TeacherCacheError(f"{path}: field 'dtype' has value {manifest['dtype']!r}: expected one of "
                                f"{list(DTYPES)}; {rebuild_command(cache_dir, manifest)}")
    for key, level in manifest["levels"].items():
        for sub in ("channels", "anchors"):
            if not isinstance(level, dict) or not isinstance(level.get(sub), int) or level[sub] <= 0:
                raise TeacherCacheError(f"{path}: field 'levels.{key}.{sub}' is missing or not a positive integer; "
                                        f"{rebuild_command(cache_dir, manifest)}")
    if len(manifest["files"]) != 3 * len(manifest["levels"]) or not all(isinstance(f, str) for f in manifest["files"]):
        raise TeacherCacheError(f"{path}: field 'files' has {len(manifest['files'])} entries for "
                                f"{len(manifest['levels'])} levels (expected 3 file names per level); "
                                f"{rebuild_command(cache_dir, manifest)}")
    for name in [*manifest["files"], "index.npz", "fill.npz"]:
        record = manifest["data_files"].get(name)
        if not (isinstance(record, dict) and isinstance(record.get("bytes"), int)
                and isinstance(record.get("blake2b"), str)):
            raise TeacherCacheError(f"{path}: field 'data_files.{name}' is missing or lacks 'bytes'/'blake2b'; "
                                    f"{rebuild_command(cache_dir, manifest)}")


def verify_data_files(cache_dir: str | Path, manifest: dict[str, Any], progress: bool = False) -> dict[str, Any]:
    """Every data file of a (checked) manifest is a regular file of the recorded size and blake2b hash.

    Sizes are compared first (a truncated file fails without being read), then contents are hashed.
    Returns ``{"files", "bytes", "seconds"}``; the first failure raises a TeacherCacheError naming the file.
    """
    from tqdm.auto import tqdm

    folder = Path(cache_dir)
    records = manifest["data_files"]
    names = [*manifest["files"], "index.npz", "fill.npz"]
    for name in names:
        target, want = folder / name, records[name]["bytes"]
        if not target.exists():
            raise TeacherCacheError(f"{target}: data file missing (the manifest records {want:,} bytes); "
                                    f"{rebuild_command(folder, manifest)}")
        if not target.is_file():
            raise TeacherCacheError(f"{target}: not a regular file (the manifest records a {want:,}-byte data "
                                    f"file); {rebuild_command(folder, manifest)}")
        size = target.stat().st_size
        if size != want:
            what = "truncated" if size < want else "longer than written"
            raise TeacherCacheError(f"{target}: {size:,} bytes, the manifest records {want:,} ({what}); "
                                    f"{rebuild_command(folder, manifest)}")
    total = sum(records[name]["bytes"] for name in names)
    start = time.perf_counter()
    with tqdm(total=total, desc="verify teacher cache", unit="B", unit_scale=True, disable=not progress,
              dynamic_ncols=True) as bar:
        for name in names:
            got = file_record(folder / name, bar)["blake2b"]
            if got != records[name]["blake2b"]:
                raise TeacherCacheError(f"{folder / name}: content differs from the manifest's blake2b hash (the "
                                        f"file was overwritten or damaged after the build); "
                                        f"{rebuild_command(folder, manifest)}")
    check_layout(folder, manifest)
    return {"files": len(names), "bytes": total, "seconds": time.perf_counter() - start}


INDEX_ARRAYS = ("image_ids", "hflipped", "canvases", "shapes", "offsets")


def check_layout(cache_dir: str | Path, manifest: dict[str, Any]) -> None:
    """The manifest's ``entries``, ``dtype``, ``levels`` and ``bytes`` agree with the index and the data files'
    sizes: every entry's slice of every file lies inside the file, and the entries fill each file exactly.

    A hash only says that a file is the one the build wrote; this says the manifest describes it (a hand-edited
    ``dtype`` or ``entries`` would otherwise pass and fail at the first step, deep inside numpy)."""
    folder = Path(cache_dir)
    path = folder / MANIFEST
    fix = rebuild_command(folder, manifest)
    try:
        with np.load(folder / "index.npz") as index:
            arrays = {name: index[name] for name in INDEX_ARRAYS}
    except (OSError, ValueError, KeyError) as exc:
        raise TeacherCacheError(f"{folder / 'index.npz'}: unreadable index ({exc}); {fix}") from exc
    entries, levels = len(arrays["image_ids"]), list(manifest["levels"])
    if manifest["entries"] != entries:
        raise TeacherCacheError(f"{path}: field 'entries' has value {manifest['entries']}, the index holds {entries} "
                                f"entries (the manifest was edited); {fix}")
    files, n = manifest["files"], len(levels)
    want_shapes = {"hflipped": (entries,), "canvases": (entries, 2), "shapes": (entries, n, 2),
                   "offsets": (entries, len(files))}
    for name, shape in want_shapes.items():
        if arrays[name].shape != shape:
            raise TeacherCacheError(f"{folder / 'index.npz'}: array '{name}' has shape {arrays[name].shape}, the "
                                    f"manifest's {entries} entries and {n} levels need {shape}; {fix}")
    channels = [manifest["levels"][k]["channels"] for k in levels]
    anchors = [manifest["levels"][k]["anchors"] for k in levels]
    per_file = channels + anchors + [4 * a for a in anchors]
    item = np.dtype(DTYPES[manifest["dtype"]]).itemsize
    total_bytes = 0
    for f_i, name in enumerate(files):
        h, w = arrays["shapes"][:, f_i % n, 0], arrays["shapes"][:, f_i % n, 1]
        sizes = per_file[f_i] * h * w
        recorded = manifest["data_files"][name]["bytes"]
        total_bytes += recorded
        if int(sizes.sum()) * item != recorded or bool((arrays["offsets"][:, f_i] + sizes > recorded // item).any()):
            raise TeacherCacheError(
                f"{path}: fields 'dtype' ({manifest['dtype']}, {item} bytes a value) and 'levels' describe "
                f"{int(sizes.sum()) * item:,} bytes of {name} for the index's {entries} entries; the file holds "
                f"{recorded:,} (the manifest was edited, or the index does not belong to these files); {fix}")
    if manifest["bytes"] != total_bytes:
        raise TeacherCacheError(f"{path}: field 'bytes' has value {manifest['bytes']:,}, the data files hold "
                                f"{total_bytes:,} bytes (the manifest was edited); {fix}")


def read_manifest(cache_dir: str | Path) -> dict[str, Any]:
    """The manifest of ``cache_dir``, parsed and checked (:func:`check_manifest`); data files not read."""
    folder = Path(cache_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise TeacherCacheError(f"{folder}: not a finished teacher cache (no {MANIFEST}); build it with "
                                "`detdistill cache-teacher` or set distill.teacher_cache to let distill build it")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TeacherCacheError(f"{path}: unreadable manifest ({exc}); {rebuild_command(folder)}") from exc
    check_manifest(folder, manifest)
    return manifest


def verify_teacher_cache(cache_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """``detdistill cache-teacher --verify``: manifest fields, then every data file's size and hash.

    Returns ``{"entries", "files", "bytes", "seconds"}``; a failure raises a TeacherCacheError naming the file
    (and field) and the command that rebuilds the cache.
    """
    manifest = read_manifest(cache_dir)
    return {"entries": manifest["entries"], **verify_data_files(cache_dir, manifest, progress)}


class TeacherCache:
    """A built cache, opened read-only; ``teacher_outputs`` stands in for running the teacher on a batch.

    The memory maps open lazily in the process that first reads (so a forked DataLoader worker or a DDP rank
    maps its own view and reads only the pages of its shard). ``reads`` counts the ``(image_id, flip)``
    entries read, for checks and benchmarks. Opening verifies the files (:func:`verify_data_files`; about a
    second per 0.5 GB), so a run, a resumed run included, never trains on a damaged cache.
    """

    def __init__(self, cache_dir: str | Path, expected: dict[str, Any] | None = None, *, verify: bool = True) -> None:
        """Open ``cache_dir``: check the manifest (against ``expected``, a :func:`cache_identity`, when given) and
        every data file's size and blake2b hash, so damaged outputs never reach a training step."""
        self.dir = Path(cache_dir)
        path = self.dir / MANIFEST
        self.manifest = read_manifest(self.dir)
        if expected is not None:  # the cheap identity check first: a mismatch needs no hashing
            diff = _first_difference(self.manifest, expected)
            if diff is not None:
                raise TeacherCacheError(f"{path}: the teacher cache does not match this run ({diff}); delete the "
                                        "folder to rebuild it or point distill.teacher_cache at another folder")
        # verify=False only where the files were hashed as they were written a moment ago (the build's result)
        self.verified = verify_data_files(self.dir, self.manifest) if verify else {"files": 0, "bytes": 0,
                                                                                   "seconds": 0.0}
        self.sha256 = manifest_sha256(self.dir)
        self.levels = list(self.manifest["levels"])
        self.files = list(self.manifest["files"])
        self.np_dtype = DTYPES[self.manifest["dtype"]]
        index = np.load(self.dir / "index.npz")
        self.canvases, self.shapes, self.offsets = index["canvases"], index["shapes"], index["offsets"]
        self.entry_of = {(int(i), bool(f)): e for e, (i, f) in enumerate(zip(index["image_ids"], index["hflipped"]))}
        fill = np.load(self.dir / "fill.npz")
        self.fill = [torch.from_numpy(fill[name].astype(np.float32)) for name in self.files]
        self.channels = [self.manifest["levels"][k]["channels"] for k in self.levels]
        anchors = [self.manifest["levels"][k]["anchors"] for k in self.levels]
        self.file_channels = self.channels + anchors + [4 * a for a in anchors]
        self._maps: list[np.memmap] | None = None
        self._pid: int | None = None
        self.reads: Counter = Counter()

    def __len__(self) -> int:
        return len(self.entry_of)

    def __getstate__(self) -> dict[str, Any]:  # memory maps do not pickle; each process maps its own
        return {**self.__dict__, "_maps": None, "_pid": None}

    def _memmaps(self) -> list[np.memmap]:
        if self._maps is None or self._pid != os.getpid():
            self._maps = [np.memmap(self.dir / name, dtype=self.np_dtype, mode="r") for name in self.files]
            self._pid = os.getpid()
        return self._maps

    def entry(self, image_id: int, hflipped: bool) -> tuple[tuple[int, int], list[Tensor]]:
        """``(canvas, [per-file C x h x w float32 tensors])`` of one cached (image, flip)."""
        key = (int(image_id), bool(hflipped))
        e = self.entry_of.get(key)
        if e is None:
            raise TeacherCacheError(f"{self.dir}: no entry for image id {key[0]} with hflipped={key[1]} (the cache "
                                    f"holds {len(self)} entries); was it built on this dataset and augmentation?")
        self.reads[key] += 1
        maps = self._memmaps()
        out = []
        for f_i, (mm, c) in enumerate(zip(maps, self.file_channels)):
            h, w = (int(v) for v in self.shapes[e, f_i % len(self.levels)])
            start = int(self.offsets[e, f_i])
            out.append(torch.from_numpy(np.array(mm[start:start + c * h * w], dtype=np.float32).reshape(c, h, w)))
        return (int(self.canvases[e, 0]), int(self.canvases[e, 1])), out

    def teacher_outputs(self, image_list: Any, targets: list[dict[str, Tensor]], need_rpn: bool):  # noqa: ANN201
        """The teacher's levels (and RPN outputs when ``need_rpn``) of a batch, pasted into its canvas."""
        from .teacher import TeacherOutputs

        device = image_list.tensors.device
        read = [self.entry(int(t["image_id"]), bool(t["hflipped"]) if "hflipped" in t else False) for t in targets]
        canvas = tuple(int(s) for s in image_list.tensors.shape[-2:])
        biggest = (max(c[0] for c, _ in read), max(c[1] for c, _ in read))
        if canvas != biggest:
            raise TeacherCacheError(f"{self.dir}: batch canvas {canvas} differs from the cached images' canvas "
                                    f"{biggest}; the student's transform (min/max size, size_divisible) differs from "
                                    "the teacher's the cache was built with")
        wanted = range(len(self.files) if need_rpn else len(self.levels))
        pasted: list[Tensor] = []
        for f_i in wanted:
            parts = [arrays[f_i] for _, arrays in read]
            h, w = max(p.shape[-2] for p in parts), max(p.shape[-1] for p in parts)
            if all(p.shape[-2:] == (h, w) for p in parts):
                batch = torch.stack(parts)
            else:  # a smaller image sits top-left in the canvas; around it the teacher saw padding
                batch = self.fill[f_i].view(1, -1, 1, 1).repeat(len(parts), 1, h, w)
                for j, p in enumerate(parts):
                    batch[j, :, :p.shape[-2], :p.shape[-1]] = p
            pasted.append(batch.to(device, non_blocking=True))
        n = len(self.levels)
        out = TeacherOutputs(features=dict(zip(self.levels, pasted[:n])))
        if need_rpn:
            out.objectness, out.deltas = pasted[n:2 * n], pasted[2 * n:]
        return out


def open_or_build(cache_dir: str | Path, teacher: torch.nn.Module, teacher_path: str | Path, dataset: Any,
                  augment: Any, dtype: str = "float16", *, teacher_sha256: str | None = None, batch_size: int = 4,
                  progress: bool = True, log: Callable[[str], None] = print, is_main: bool = True,
                  barrier: Callable[[], None] | None = None, device: str | torch.device = "cpu") -> TeacherCache:
    """The cache in ``cache_dir`` checked against this run, built first when the folder has none.

    Under DDP the main process builds (``is_main``) while the others wait in ``barrier``, the caller's
    synchronisation of its ranks (this module knows nothing of process groups); then every rank opens the
    same files.
    """
    sha = teacher_sha256 or file_sha256(teacher_path)
    expected = cache_identity(teacher, sha, dataset, augment, dtype)
    path = Path(cache_dir)
    if not (path / MANIFEST).is_file() and is_main:
        log(f"teacher cache: building {path} ({len(dataset)} images x {len(expected['augmentation']['hflip_states'])}"
            f" flip states, {dtype})")
        build_teacher_cache(teacher, dataset, path, teacher_sha256=sha, augment=augment, dtype=dtype,
                            batch_size=batch_size, progress=progress, device=device, teacher_path=teacher_path)
    if barrier is not None:
        barrier()
    if (path / MANIFEST).is_file():
        touched = accept_touched_images(read_manifest(path), expected, dataset)
        if touched:
            log(f"teacher cache: {touched} image(s) have a new mtime but the bytes the cache was built from "
                "(blake2b): cache kept")
    cache = TeacherCache(path, expected)
    log(f"teacher cache: {path} ({len(cache)} entries, {cache.manifest['bytes'] / 2**20:.0f} MiB "
        f"{cache.manifest['dtype']}, manifest {cache.sha256[:12]}…, {cache.verified['files']} files verified in "
        f"{cache.verified['seconds']:.1f} s)")
    return cache

