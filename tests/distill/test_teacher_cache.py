"""Teacher cache: cached vs live teacher losses, refusals, killed builds, DDP shards, resume, CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from detdistill.config import DistillConfig, load_config
from detdistill.data import SYNTHETIC_CLASS_NAMES, SyntheticConfig, SyntheticShapes
from detdistill.data.base import DetectionDataset, ImageRecord
from detdistill.data.transforms import AugmentConfig, DetectionAugment
from detdistill.distill.distiller import Distiller
from detdistill.distill.teacher import LiveTeacher
from detdistill.distill.teacher_cache import (
    TeacherCache,
    TeacherCacheError,
    build_teacher_cache,
    cache_identity,
    open_or_build,
)
from detdistill.models import build_detector, save_detector

SIZE = 96
KW = {"min_size": SIZE, "max_size": SIZE}
FLIP = AugmentConfig(hflip_prob=0.5)
TERMS = ("rpn_soft", "rpn_bounded", "rcn_soft", "rcn_bounded", "hint")
HERE = Path(__file__).parent


def sharp_teacher(seed=0, name="cpu_base"):
    """A random teacher whose scores are far from uniform, so its outputs move every term (a freshly
    initialised one gives near-constant logits: any two such teachers give almost the same losses)."""
    torch.manual_seed(seed)
    teacher = build_detector(name, 7, **KW)
    with torch.no_grad():
        for module in (teacher.rpn.head, teacher.roi_heads.box_predictor):
            for p in module.parameters():
                p.mul_(30)
        for p in teacher.backbone.fpn.parameters():
            p.mul_(3)
    return teacher


def _student():
    torch.manual_seed(0)
    return build_detector("cpu_tiny", 7, **KW)


def _data(n=2):
    return SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=40))


def _batch(ds, flipped):
    augment = DetectionAugment(AugmentConfig(hflip_prob=1.0 if flipped else 0.0))
    images, targets = zip(*[augment(*ds[i]) for i in range(len(ds))])
    assert all(bool(t["hflipped"]) == flipped for t in targets)
    return list(images), list(targets)


def _losses_and_stats(distiller, cache, images, targets):
    distiller.teacher_source = cache if cache is not None else LiveTeacher(distiller.teacher)
    torch.manual_seed(123)  # the RPN and RoI samplers draw from torch's RNG
    losses = {k: float(v.detach()) for k, v in distiller(images, targets).items()}
    return losses, {k: distiller.stats[k] for k in TERMS}


def _relative(a, b):
    return {k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b}


# ------------------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cached_losses_match_the_live_teacher_for_every_term(tmp_path, dtype):
    teacher, ds = sharp_teacher(), _data()
    distiller = Distiller(teacher, _student(), DistillConfig(recipe="chen2017", adapter_init="kaiming")).train()
    # Built in batches of 2 on the same-size images: the same convolution calls as the training batch.
    cache = build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, dtype=dtype,
                                batch_size=2, progress=False)
    for flipped in (False, True):
        images, targets = _batch(ds, flipped)
        want = _losses_and_stats(distiller, None, images, targets)
        got = _losses_and_stats(distiller, cache, images, targets)
        for w, g in zip(want, got):
            assert set(w) == set(g)
            if dtype == "float32":
                assert g == w
            else:
                assert max(_relative(g, w).values()) <= 1e-3, _relative(g, w)
    assert cache.reads == {(0, False): 1, (1, False): 1, (0, True): 1, (1, True): 1}
    # The tolerance means something: the cache of another teacher moves every term by more than it.
    other = build_teacher_cache(sharp_teacher(1), ds, tmp_path / "other", teacher_sha256="u", augment=FLIP,
                                dtype=dtype, batch_size=2, progress=False)
    images, targets = _batch(ds, False)
    moved = _relative(_losses_and_stats(distiller, other, images, targets)[1],
                      _losses_and_stats(distiller, None, images, targets)[1])
    assert min(moved.values()) > 1e-3, moved


def test_a_cache_built_one_image_at_a_time_differs_only_by_convolution_rounding(tmp_path):
    teacher, ds = sharp_teacher(), _data()
    distiller = Distiller(teacher, _student(), DistillConfig(recipe="chen2017", adapter_init="kaiming")).train()
    cache = build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, dtype="float32",
                                batch_size=1, progress=False)
    images, targets = _batch(ds, True)
    want, got = (_losses_and_stats(distiller, c, images, targets)[1] for c in (None, cache))
    assert max(_relative(got, want).values()) <= 1e-5


class _MixedSizes(DetectionDataset):
    """Two images of different heights: the batch canvas pads the shorter one."""

    def __init__(self) -> None:
        base = _data(2)
        self.pixels = [base[0][0], base[1][0][:, :64, :]]
        records = [ImageRecord(i, f"img{i}.png", SIZE, h, boxes=[[10, 10, 50, 40]], labels=[1 + i])
                   for i, h in enumerate((SIZE, 64))]
        super().__init__(records, list(SYNTHETIC_CLASS_NAMES), name="mixed")

    def load_image(self, idx):
        return self.pixels[idx]


def mixed_size_differences(tmp_path, dtype="float32"):
    """Relative loss differences, cached vs live, on a batch whose images differ in size (README figure)."""
    teacher, ds = sharp_teacher(), _MixedSizes()
    distiller = Distiller(teacher, _student(), DistillConfig(recipe="chen2017", adapter_init="kaiming")).train()
    cache = build_teacher_cache(teacher, ds, tmp_path / "mixed", teacher_sha256="t", augment=FLIP, dtype=dtype,
                                progress=False)
    images, targets = _batch(ds, False)
    want, got = (_losses_and_stats(distiller, c, images, targets)[1] for c in (None, cache))
    return _relative(got, want), cache, distiller, images, targets


def test_mixed_sizes_paste_into_the_canvas_and_stay_close(tmp_path):
    rel, cache, distiller, images, targets = mixed_size_differences(tmp_path)
    image_list, targets_t = distiller.student.transform(images, targets)
    out = cache.teacher_outputs(image_list, targets_t, need_rpn=True)
    live = distiller.teacher.backbone(image_list.tensors)
    for key, feats in out.features.items():
        assert feats.shape == live[key].shape, key
    # Inside the small image's own canvas the pasted levels are its cached ones; they differ from the
    # teacher's on the big canvas away from the bottom border (the live teacher's receptive field reaches
    # across it into padding that the cached canvas ended at).
    small = cache.entry(1, False)[1]
    h, w = small[0].shape[-2:]
    assert torch.equal(out.features["0"][1, :, :h, :w], small[0])
    assert torch.allclose(out.features["0"][1, :, :3, :w], live["0"][1, :, :3, :w], atol=1e-4)
    # What the README states: the loss difference the padding borders make on this batch.
    print({k: f"{v:.1e}" for k, v in rel.items()})
    assert max(rel.values()) < 1e-2, rel


# ------------------------------------------------------------------------------------------- refusal
def _refusal(cache_dir, **changes):
    teacher, ds = changes.pop("teacher", sharp_teacher()), changes.pop("ds", _data())
    expected = cache_identity(teacher, changes.pop("sha", "t"), ds, changes.pop("augment", FLIP),
                              changes.pop("dtype", "float16"))
    with pytest.raises(TeacherCacheError) as info:
        TeacherCache(cache_dir, expected)
    message = str(info.value)
    assert "\n" not in message and "does not match this run" in message
    return message


def test_a_cache_that_does_not_match_the_run_is_refused_in_one_line(tmp_path):
    teacher, ds = sharp_teacher(), _data()
    build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t" * 64, augment=FLIP, progress=False)
    TeacherCache(tmp_path / "c", cache_identity(teacher, "t" * 64, ds, FLIP))  # the same run opens it
    assert "teacher file (SHA-256): cache built with tttttttttttt…, this run has uuuuuuuuuuuu…" in _refusal(
        tmp_path / "c", sha="u" * 64)
    bigger = build_detector("cpu_base", 7, min_size=128, max_size=128)
    assert "model transform" in _refusal(tmp_path / "c", sha="t" * 64, teacher=bigger)
    assert "dataset: cache built on 2 images, this run has 3" in _refusal(tmp_path / "c", sha="t" * 64, ds=_data(3))
    other_seed = SyntheticShapes("train", num_images=2, seed=5,
                                 config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=40))
    assert "dataset: cache built on synthetic-train" in _refusal(tmp_path / "c", sha="t" * 64, ds=other_seed)
    assert "dtype (distill.teacher_cache_dtype): cache built with float16, this run has float32" in _refusal(
        tmp_path / "c", sha="t" * 64, dtype="float32")
    assert "augmentation" in _refusal(tmp_path / "c", sha="t" * 64, augment=AugmentConfig(hflip_prob=0.0))


def _yolo_two_images(tmp_path):
    from PIL import Image

    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * i, np.uint8)).save(root / "images" / "train" / f"{i}.png")
        (root / "labels" / "train" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    return root


def _bump_mtime(path):
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))


def test_an_image_with_other_bytes_is_refused_naming_it(tmp_path):
    from detdistill.data.open import open_dataset

    root = _yolo_two_images(tmp_path)
    ds = open_dataset(str(root), split="train", format="yolo")
    teacher = build_detector("cpu_tiny", 2, **KW)
    build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, progress=False)
    path = root / "images" / "train" / "1.png"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash can tell
    path.write_bytes(bytes(data))
    _bump_mtime(path)
    again = open_dataset(str(root), split="train", format="yolo")
    with pytest.raises(TeacherCacheError, match=r"1\.png changed"):
        open_or_build(tmp_path / "c", teacher, "unused", again, FLIP, teacher_sha256="t", progress=False,
                      log=lambda m: None)
    message = _refusal(tmp_path / "c", teacher=teacher, ds=again)
    assert "dataset: image" in message and "1.png changed" in message


def test_an_image_touched_with_the_same_bytes_keeps_the_cache(tmp_path):
    """A copy without -p or a re-extracted archive changes mtimes, not bytes: no rebuild, one log line."""
    from detdistill.data.open import open_dataset

    root = _yolo_two_images(tmp_path)
    ds = open_dataset(str(root), split="train", format="yolo")
    teacher = build_detector("cpu_tiny", 2, **KW)
    built = build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, progress=False)
    _bump_mtime(root / "images" / "train" / "1.png")
    lines = []
    cache = open_or_build(tmp_path / "c", teacher, "unused", open_dataset(str(root), split="train", format="yolo"),
                          FLIP, teacher_sha256="t", progress=False, log=lines.append)
    assert cache.sha256 == built.sha256  # the same folder, not a rebuild
    assert any("1 image(s) have a new mtime but the bytes the cache was built from" in line for line in lines)


@pytest.mark.parametrize("augment, field", [
    (AugmentConfig(scale_jitter=(0.8, 1.2)), "data.scale_jitter"),
    (AugmentConfig(photometric=True), "data.photometric"),
])
def test_non_enumerable_augmentation_is_refused_before_any_work(tmp_path, augment, field):
    with pytest.raises(TeacherCacheError, match=rf"^{field}: .*cannot be enumerated.*teacher_cache=null$"):
        build_teacher_cache(sharp_teacher(), _data(), tmp_path / "c", teacher_sha256="t", augment=augment,
                            progress=False)
    assert not list(tmp_path.iterdir())
    multiscale = build_detector("cpu_tiny", 7, min_size=(80, 96), max_size=SIZE)
    with pytest.raises(TeacherCacheError, match=r"^model min_size: value \[80, 96\] .*cannot be enumerated"):
        build_teacher_cache(multiscale, _data(), tmp_path / "c", teacher_sha256="t", augment=FLIP, progress=False)


# ----------------------------------------------------------------------------------------- killed build
def test_an_interrupted_build_leaves_no_cache_and_the_next_build_is_complete(tmp_path):
    teacher, ds = sharp_teacher(), _data(6)

    def fail(k):
        if k == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, batch_size=2,
                            progress=False, on_batch=fail)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TeacherCacheError, match="not a finished teacher cache"):
        TeacherCache(tmp_path / "c")
    cache = build_teacher_cache(teacher, ds, tmp_path / "c", teacher_sha256="t", augment=FLIP, batch_size=2,
                                progress=False)
    assert len(cache) == 12


def test_a_killed_build_process_leaves_no_cache_that_looks_complete(tmp_path):
    marker = tmp_path / "two_batches_written"
    proc = subprocess.Popen([sys.executable, str(HERE / "run_cache_build.py"), str(tmp_path / "c"), str(marker)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "build did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = tmp_path / f"c.partial-{proc.pid}"
    assert partial.is_dir() and not (partial / "manifest.json").exists() and not (tmp_path / "c").exists()
    with pytest.raises(TeacherCacheError, match="not a finished teacher cache"):
        TeacherCache(tmp_path / "c")
    # The rebuild removes the dead build's leftovers and writes what an uninterrupted build writes.
    from run_cache_build import DATA, teacher

    cache = build_teacher_cache(teacher(), DATA, tmp_path / "c", teacher_sha256="t", augment=FLIP, batch_size=2,
                                progress=False)
    assert not partial.exists()
    fresh = build_teacher_cache(teacher(), DATA, tmp_path / "fresh", teacher_sha256="t", augment=FLIP,
                                batch_size=2, progress=False)
    for name in cache.files:
        assert (cache.dir / name).read_bytes() == (fresh.dir / name).read_bytes(), name


# -------------------------------------------------------------------------------------------------- DDP
def test_two_gloo_ranks_each_read_their_own_shard_and_match_the_live_teacher(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(HERE / "run_cache_ddp.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = [torch.load(tmp_path / f"cached_rank{r}.pt", weights_only=True) for r in (0, 1)]
    live = [torch.load(tmp_path / f"live_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(not r["reads"] for r in live)  # the live run never touched the cache
    for rank in cached:
        # Exactly the rank's shard was read (each entry once per step it was drawn in), nothing else.
        assert sorted(map(tuple, rank["reads"])) == sorted(map(tuple, rank["shard"]))
    ids = [{i for i, _ in r["shard"]} for r in cached]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == set(range(8))
    # Both ranks built nothing twice: one manifest, the same one.
    assert cached[0]["manifest"] == cached[1]["manifest"]
    for key, value in live[0]["params"].items():
        assert torch.allclose(cached[0]["params"][key], value, rtol=1e-4, atol=1e-6), key
        assert torch.equal(cached[0]["params"][key], cached[1]["params"][key])


# -------------------------------------------------------------------------------- runs: resume, CLI
TINY = ["data.num_train_images=8", "data.val_split=null", "data.test_split=null", "train.max_steps=2",
        "train.batch_size=2", "train.eval_every=0", "train.progress=false", "distill.teacher_eval_images=4",
        "model.overrides={min_size: 96, max_size: 96}", "model.name=cpu_tiny", "distill.allow_weak_teacher=true"]


@pytest.fixture
def teacher_file(tmp_path):
    return save_detector(tmp_path / "teacher.pt", sharp_teacher(0, "cpu_small"), list(SYNTHETIC_CLASS_NAMES))


def test_distill_builds_records_and_checks_the_cache_on_resume(tmp_path, teacher_file):
    from detdistill.engine.run import distill_student
    from detdistill.models import read_checkpoint

    cache_dir, out = tmp_path / "cache", tmp_path / "run"
    overrides = TINY + [f"teacher={teacher_file}", f"train.out_dir={out}", f"distill.teacher_cache={cache_dir}"]
    logs = []
    distill_student(load_config(None, overrides), log=logs.append)
    assert any("teacher cache: building" in m for m in logs)
    sha = TeacherCache(cache_dir).sha256
    assert read_checkpoint(out / "last.pt")["metadata"]["teacher_cache"]["manifest_sha256"] == sha
    assert json.loads((out / "summary.json").read_text())["extra"]["teacher_cache"]["manifest_sha256"] == sha
    # Resuming with the same cache goes on without building again.
    logs.clear()
    distill_student(load_config(None, overrides + ["train.max_steps=3"]), resume=True, log=logs.append)
    assert not any("building" in m for m in logs)
    # A cache rebuilt in the same folder (here: fp32) is another cache; resuming refuses to mix the two.
    import shutil

    shutil.rmtree(cache_dir)
    changed = overrides + ["train.max_steps=4", "distill.teacher_cache_dtype=float32"]
    with pytest.raises(TeacherCacheError, match="manifest changed since this run started.*start a new run folder"):
        distill_student(load_config(None, changed), resume=True, log=lambda m: None)


def test_cache_teacher_cli_builds_then_reports_an_up_to_date_cache(tmp_path, teacher_file, capsys):
    from detdistill.cli import main

    args = ["cache-teacher", "--teacher", str(teacher_file), "--out", str(tmp_path / "c"), *TINY[:2], TINY[8]]
    assert main(args) == 0
    assert f"distill.teacher_cache={tmp_path / 'c'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["entries"] == 16
    assert main(args) == 0
    assert "already built and matches" in capsys.readouterr().out
    assert main([*args, "data.scale_jitter=[0.5, 1.5]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("detdistill cache-teacher: error: data.scale_jitter: value [0.5, 1.5]") and "\n" not in err


def test_open_or_build_shares_one_cache_across_runs(tmp_path):
    teacher, ds = sharp_teacher(), _data()
    logs = []
    first = open_or_build(tmp_path / "c", teacher, "unused", ds, FLIP, teacher_sha256="t", progress=False,
                          log=logs.append)
    second = open_or_build(tmp_path / "c", teacher, "unused", ds, FLIP, teacher_sha256="t", progress=False,
                           log=logs.append)
    assert sum("building" in m for m in logs) == 1 and first.sha256 == second.sha256


def test_ablation_builds_one_cache_that_every_cell_reads(tmp_path, teacher_file, monkeypatch):
    import detdistill.distill.teacher_cache as tc
    from detdistill.ablate import ablate
    from detdistill.models import read_checkpoint

    builds = []
    real_build = tc.build_teacher_cache
    monkeypatch.setattr(tc, "build_teacher_cache", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    base = load_config(None, TINY + [f"teacher={teacher_file}", f"distill.teacher_cache={tmp_path / 'cache'}",
                                     "data.test_split=val", "data.num_eval_images=2"])
    ablate(base, seeds=1, cells=["only_hint", "only_rcn_soft"], out_dir=tmp_path / "abl", log=lambda m: None,
           test_images=2)
    assert len(builds) == 1
    sha = TeacherCache(tmp_path / "cache").sha256
    for cell in ("only_hint", "only_rcn_soft"):
        meta = read_checkpoint(tmp_path / "abl" / "cells" / cell / "seed0" / "last.pt")["metadata"]
        assert meta["teacher_cache"]["manifest_sha256"] == sha, cell
