"""The search: generate, time, filter, distil briefly, choose on validation, train the chosen one, report.

Run folder layout (every file written atomically; a folder's ``score.json`` / ``test.json`` is its done
marker, so after Ctrl-C or ``kill -9`` a rerun skips what finished and resumes the run that was cut short
from its last checkpoint)::

    candidates.json   generated candidates (keyed by the teacher file's hash)
    timing.json       the timing table (keyed by what it measured)
    holdout.json      the hold-out image list, when the dataset has no usable validation split
    teacher_cache/    the teacher's outputs on the training images, shared by every distillation run
    search/<id>/seed<k>/   short distillation runs; score.json = validation metrics
    final/distilled-seed<k>/, final/baseline-seed<k>/   the chosen candidate's full runs; test.json
    student.pt        the chosen distilled student (a self-describing checkpoint)
    candidates.csv, summary.json, shrink.html, shrink.png

Training goes through one function, :func:`train_run` (the engine's run object with the search's datasets),
so that switching to the study runner is a change in one place.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import ExperimentConfig, load_config
from ..engine.run import Datasets, open_datasets
from ..errors import DetDistillError
from ..utils import atomic_output, atomic_write_text, file_sha256
from .candidates import (FAMILIES, LOWRANK_RATIOS, TEST_TIERS, Candidate, Family, build_candidate,
                         generate_candidates)
from .front import Row, Target, pareto_front, shortlist
from .result import ShrinkResult
from .holdout import HOLDOUT_FILE, holdout_split, overlapping_images, write_holdout
from .timing import TEACHER, TimingTable, cached_timing, save_timing, time_candidates

Log = Callable[[str], None]


class ShrinkError(DetDistillError):
    """A search that cannot run as asked (missing teacher, bad budget); the message says what to change."""


def train_run(cfg: ExperimentConfig, data: Datasets, distill: bool, log: Log) -> None:
    """Train one run of the search into ``cfg.train.out_dir``, resuming it when it was cut short.

    The one place the search trains: the engine's run object (``TrainRun`` / ``DistillRun``) handed the
    search's datasets (the hold-out split, no test split). ``detdistill.study.run_study`` opens every run's
    datasets from its config, which cannot express a hold-out of the training split; when it can take them
    this function is where to switch.
    """
    from ..engine.run import DistillRun, TrainRun

    resume = (Path(cfg.train.out_dir) / "last.pt").is_file()
    base = DistillRun if distill else TrainRun

    class GivenData(base):  # type: ignore[misc, valid-type]
        def build_datasets(self) -> Datasets:
            self.data = data
            if distill:  # the distillation's setup reads self.data (and mixes in unlabelled images, if any)
                return super().build_datasets()
            self.train_set = data.train
            return data

    runner = GivenData(cfg, resume=resume, overwrite=True, log=log)
    runner.data = data
    runner.run()


def _file_log(path: Path) -> Log:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    return log


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_json(data: Any, path: Path) -> Path:
    return atomic_write_text(json.dumps(data, indent=1, default=str) + "\n", path)


def _evaluate(model: nn.Module, dataset: Any, threads: int) -> dict[str, float]:
    from ..eval.inference import evaluate_model

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {k: float(v) for k, v in evaluate_model(model, dataset, batch_size=8, progress=False).metrics.items()}
    finally:
        torch.set_num_threads(old)


def _search_datasets(cfg: ExperimentConfig, out: Path, fraction: float, seed: int, log: Log) -> tuple[Datasets, Any]:
    """The search's training and validation sets (hold-out when needed) and the test split, kept apart."""
    data = open_datasets(cfg)
    reason = None
    if data.val is None:
        reason = "the config has no validation split (data.val_split is null)"
    else:
        shared = overlapping_images(data.train, data.val)
        if shared:
            reason = (f"validation split '{cfg.data.val_split}' shares {shared} of its {len(data.val)} images with "
                      f"the training split '{cfg.data.train_split}'")
    if reason is None:
        return Datasets(data.train, data.val, None), data.test
    fit, val = holdout_split(data.train, fraction, seed)
    write_holdout(out / HOLDOUT_FILE, val, fraction, seed, reason)
    log(f"shrink: {reason}; validating on a seeded hold-out of {len(val)} of the {len(data.train)} training images "
        f"(seed {seed}, {out / HOLDOUT_FILE})")
    return Datasets(fit, val, None), data.test


def _candidates(teacher: nn.Module, teacher_sha: str, image_size: tuple[int, int], out: Path,
                families: Sequence[Family], ratios: Sequence[float], tiers: Sequence[tuple[str, float, float]],
                log: Log) -> list[Candidate]:
    key = {"teacher_sha256": teacher_sha, "image_size": list(image_size), "families": [asdict(f) for f in families],
           "lowrank_ratios": list(ratios), "tiers": [list(t) for t in tiers]}
    cached = _read_json(out / "candidates.json")
    if isinstance(cached, dict) and cached.get("key") == json.loads(json.dumps(key)):
        return [Candidate.from_dict(c) for c in cached["candidates"]]
    cands = generate_candidates(teacher, image_size, families, ratios, tiers=tiers, log=log)
    _write_json({"key": key, "candidates": [c.as_dict() for c in cands]}, out / "candidates.json")
    return cands


def _run_config(cfg: ExperimentConfig, cand: Candidate, init: Path | None, teacher: str | None, steps: int,
                seed: int, folder: Path, threads: int, progress: bool) -> ExperimentConfig:
    rc = copy.deepcopy(cfg)
    if init is not None:  # a low-rank student starts from the compressed teacher
        rc.model.name, rc.model.overrides = str(init), {}
    else:
        rc.model.name, rc.model.overrides = cand.entry, copy.deepcopy(cand.overrides)
    # Zoo students are other architectures than the config's: they start from scratch.
    rc.model.weights = rc.model.backbone_weights = None
    rc.teacher = teacher
    rc.data.test_split = None
    rc.train.max_steps = steps
    rc.train.seed = seed
    rc.train.eval_every = 0
    rc.train.checkpoint_every = max(10, steps // 5)
    rc.train.out_dir = str(folder)
    rc.train.threads = threads
    rc.train.progress = progress
    rc.optim.warmup_steps = min(rc.optim.warmup_steps, max(1, steps // 5))
    if rc.optim.milestones:  # a multistep schedule written for the config's length, scaled to this one
        scale = steps / max(1, cfg.train.max_steps)
        rc.optim.milestones = sorted({max(1, int(m * scale)) for m in rc.optim.milestones})
    return rc


def _init_checkpoint(cand: Candidate, teacher: nn.Module, teacher_ckpt: dict, folder: Path) -> Path | None:
    """The compressed teacher a low-rank candidate trains from, written once into its folder."""
    if cand.kind != "lowrank":
        return None
    from ..models import save_detector

    path = folder / "init.pt"
    if not path.is_file():
        model = build_candidate(cand, teacher)
        save_detector(path, model, teacher_ckpt["class_names"], teacher_ckpt.get("category_ids"),
                      {"kind": "compress", "shrink_candidate": cand.id, "ratio": cand.lowrank_ratio})
    return path


def _one_run(cfg: ExperimentConfig, cand: Candidate, teacher: nn.Module, teacher_ckpt: dict,
             teacher_path: str | None, data: Datasets, eval_set: Any, steps: int, seed: int, folder: Path,
             threads: int, progress: bool, marker: str) -> dict[str, Any]:
    """Train (or resume) one run and score its last checkpoint on ``eval_set``; the result is the done marker."""
    from ..models import load_detector

    done = _read_json(folder / marker)
    if isinstance(done, dict) and done.get("steps") == steps:
        return done
    folder.mkdir(parents=True, exist_ok=True)
    init = _init_checkpoint(cand, teacher, teacher_ckpt, folder.parent)
    rc = _run_config(cfg, cand, init, teacher_path, steps, seed, folder, threads, progress)
    start = time.perf_counter()
    train_run(rc, data, distill=teacher_path is not None, log=_file_log(folder / "train.log"))
    seconds = time.perf_counter() - start
    metrics = _evaluate(load_detector(folder / "last.pt"), eval_set, threads)
    result = {"candidate": cand.id, "seed": seed, "steps": steps, "split": eval_set.name, "metrics": metrics,
              "train_seconds": seconds, "distilled": teacher_path is not None}
    _write_json(result, folder / marker)
    return result


def _mean_metrics(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in results[0]["metrics"] if all(k in r["metrics"] for r in results)]
    return {k: statistics.fmean(r["metrics"][k] for r in results) for k in keys}


def choose(val_scores: dict[str, dict[str, float]], timings: TimingTable) -> str:
    """The candidate with the best validation mAP@0.5 (then AP, then the faster) — never a test score."""
    return max(val_scores, key=lambda cid: (round(val_scores[cid].get("mAP50", 0.0), 6),
                                            round(val_scores[cid].get("AP", 0.0), 6),
                                            -timings.rows[cid].median_ms))


def _copy_atomic(src: Path, dst: Path) -> Path:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def _teacher_cache_dir(cfg: ExperimentConfig, out: Path, log: Log) -> str | None:
    """One teacher cache for every run of the search, when the augmentation can be enumerated."""
    if cfg.distill.teacher_cache:
        return cfg.distill.teacher_cache
    from ..distill.teacher_cache import TeacherCacheError, flip_states
    from ..engine.run import augmentation

    try:
        flip_states(augmentation(cfg).config)
    except TeacherCacheError as exc:
        log(f"shrink: no teacher cache ({exc}); each run runs the teacher live")
        return None
    return str(out / "teacher_cache")


def search(teacher: str | Path, config: ExperimentConfig | str | Path | None = None, *,
           out: str | Path, target_speedup: float | None = None, target_ms: float | None = None,
           threads: int = 1, budget_steps: int = 300, candidates: int = 3, final_steps: int | None = None,
           target_margin: float = 0.05, with_baseline: bool = False, seeds: Sequence[int] = (0,),
           final_seeds: Sequence[int] | None = None,
           timing_images: int = 20,
           holdout_fraction: float = 0.2, holdout_seed: int = 0, families: Sequence[Family] = FAMILIES,
           lowrank_ratios: Sequence[float] = LOWRANK_RATIOS, tiers: Sequence[tuple[str, float, float]] = TEST_TIERS,
           progress: bool = True, report: bool = True,
           log: Log = print) -> ShrinkResult:
    """Find the most accurate distilled student of ``teacher`` that meets a speed target on this machine.

    Args:
        teacher: the trained teacher checkpoint.
        config: the ExperimentConfig (or a YAML path) whose data, optimiser, batch and distillation recipe
            every run uses; ``train.max_steps`` is the default ``final_steps``.
        out: the run folder (rerun with the same arguments to resume).
        target_speedup / target_ms: exactly one: at least X times the teacher's images/s, or at most M ms
            per image (batch 1, ``threads`` CPU threads, measured here). ``target_margin``: the share by
            which an untrained candidate must beat the target to be admitted (the final check has none).
        budget_steps: steps of each short distillation run; ``candidates``: how many candidates get one.
        final_steps: steps of the chosen candidate's final runs (default ``config.train.max_steps``).
        with_baseline: also train the chosen candidate without the teacher (same seeds, same schedule).
        seeds: the seeds of the short runs (every candidate runs every seed: paired by seed).
        final_seeds: the seeds of the final runs (default ``seeds``); distilled and baseline pair by seed.
        timing_images: validation images each model is timed on (after 2 warm-up images).

    Raises:
        TargetUnreachable: no candidate meets the target (before any training), naming the fastest one.

    The choice is made on validation (the config's split, or a seeded hold-out of the training split when
    there is none or it overlaps training); the test split is scored once, by the final runs.
    """
    from tqdm.auto import tqdm

    from ..engine.run import load_teacher
    from .report import write_report

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    target = Target(target_speedup, target_ms, target_margin)
    seeds = [int(s) for s in seeds]
    final_seeds = [int(s) for s in (seeds if final_seeds is None else final_seeds)]
    if budget_steps < 1 or candidates < 1 or threads < 1 or timing_images < 1 or not seeds or not final_seeds:
        raise ShrinkError(f"shrink: --budget-steps ({budget_steps}), --candidates ({candidates}), --threads "
                          f"({threads}) and the timing images ({timing_images}) must be >= 1, with one seed or more")
    teacher_path = Path(teacher)
    if not teacher_path.is_file():
        raise ShrinkError(f"--teacher: {teacher_path} is not a file; pass a trained teacher checkpoint")
    cfg = copy.deepcopy(config) if isinstance(config, ExperimentConfig) else load_config(config)
    final_steps = int(final_steps or cfg.train.max_steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    data, test = _search_datasets(cfg, out, holdout_fraction, holdout_seed, log)
    teacher_model, teacher_ckpt = load_teacher(teacher_path)
    if list(teacher_ckpt["class_names"]) != list(data.train.class_names):
        from ..distill.distiller import PairingError

        raise PairingError(f"{teacher_path}: the teacher's classes {teacher_ckpt['class_names']} differ from the "
                           f"dataset's {data.train.class_names}")
    sha = file_sha256(teacher_path)
    image_size = tuple(int(v) for v in data.val.load_image(0).shape[-2:])

    t0 = time.perf_counter()
    cands = _candidates(teacher_model, sha, image_size, out, families, lowrank_ratios, tiers, log)
    by_id = {c.id: c for c in cands}
    seconds["candidates"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_images = min(timing_images, len(data.val))
    key = {"teacher_sha256": sha, "candidates": [c.id for c in cands], "threads": threads, "images": n_images,
           "warmup": 2, "split": data.val.name}
    timings = cached_timing(out / "timing.json", key)
    if timings is None:
        log(f"shrink: timing the teacher and {len(cands)} candidates on {n_images} validation images, batch 1, "
            f"{threads} thread(s), interleaved")
        images = [data.val.load_image(i) for i in range(n_images)]
        timings = time_candidates(teacher_model, cands, images, threads, warmup=2, key=key, progress=progress)
        save_timing(timings, out / "timing.json")
    else:
        log(f"shrink: timing table reused ({out / 'timing.json'})")
    seconds["timing"] = time.perf_counter() - t0

    rows = [Row(c.id, timings.rows[c.id].median_ms, timings.rows[c.id].speed_up, c.params, c.kind) for c in cands]
    ok_ids = {r.id for r in rows if target.met(r.speed_up, r.median_ms, with_margin=True)}
    front_ids = [r.id for r in pareto_front(rows)]
    table = _table(cands, timings, ok_ids, front_ids, [], {})
    from .report import write_csv

    write_csv(table, out / "candidates.csv")
    picked = [r.id for r in shortlist(rows, target, candidates, threads)]  # TargetUnreachable: before any training
    log(f"shrink: {len(ok_ids)} of {len(cands)} candidates meet the target ({target.admitted()}); distilling "
        f"{len(picked)} for {budget_steps} steps x {len(seeds)} seed(s): {', '.join(picked)}")

    cfg.distill.teacher_cache = _teacher_cache_dir(cfg, out, log)
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {cid: [] for cid in picked}
    jobs = [(cid, seed) for cid in picked for seed in seeds]
    for cid, seed in tqdm(jobs, desc="shrink: distil candidates", unit="run", disable=not progress):
        res = _one_run(cfg, by_id[cid], teacher_model, teacher_ckpt, str(teacher_path), data, data.val,
                       budget_steps, seed, out / "search" / cid / f"seed{seed}", threads, progress, "score.json")
        results[cid].append(res)
    val_scores = {cid: _mean_metrics(rs) for cid, rs in results.items()}
    chosen = choose(val_scores, timings)
    seconds["search_runs"] = time.perf_counter() - t0
    log(f"shrink: chose {chosen} (validation mAP@0.5 {val_scores[chosen].get('mAP50', 0):.3f}, "
        f"{timings.rows[chosen].speed_up:.2f}x the teacher's images/s untrained)")

    t0 = time.perf_counter()
    final: dict[str, Any] = {}
    roles = [("distilled", str(teacher_path))] + ([("baseline", None)] if with_baseline else [])
    final_jobs = [(role, tp, seed) for role, tp in roles for seed in final_seeds]
    final_runs: dict[str, list[dict[str, Any]]] = {role: [] for role, _ in roles}
    fit_and_val = Datasets(data.train, data.val, None)
    if test is None:
        log("shrink: the config has no test split; the final runs are scored on validation instead")
    for role, tp, seed in tqdm(final_jobs, desc="shrink: final runs", unit="run", disable=not progress):
        res = _one_run(cfg, by_id[chosen], teacher_model, teacher_ckpt, tp, fit_and_val,
                       test if test is not None else data.val, final_steps, seed,
                       out / "final" / f"{role}-seed{seed}", threads, progress, "test.json")
        final_runs[role].append(res)
    for role, rs in final_runs.items():
        final[role] = {"mean": _mean_metrics(rs), "per_seed": {str(r["seed"]): r["metrics"] for r in rs},
                       "split": rs[0]["split"], "steps": final_steps}
    teacher_test = _read_json(out / "final" / "teacher_test.json")
    if not isinstance(teacher_test, dict):
        teacher_test = {"split": (test or data.val).name, "metrics": _evaluate(teacher_model, test or data.val, threads)}
        _write_json(teacher_test, out / "final" / "teacher_test.json")
    seconds["final_runs"] = time.perf_counter() - t0

    from ..models import load_detector

    best = out / "final" / f"distilled-seed{final_seeds[0]}" / "last.pt"
    speed = _read_json(out / "final" / "speed.json")
    if not isinstance(speed, dict):
        from ..models.timing import Latency, interleaved_times

        images = [data.val.load_image(i) for i in range(n_images)]
        secs = interleaved_times({TEACHER: teacher_model, chosen: load_detector(best)}, images, threads)
        lat = {k: Latency.from_seconds(v) for k, v in secs.items()}
        speed = {"teacher_ms": lat[TEACHER].median_ms, "student_ms": lat[chosen].median_ms,
                 "teacher_p10_p90_ms": [lat[TEACHER].p10_ms, lat[TEACHER].p90_ms],
                 "student_p10_p90_ms": [lat[chosen].p10_ms, lat[chosen].p90_ms],
                 "speed_up": lat[TEACHER].median_ms / lat[chosen].median_ms, "images": n_images,
                 "threads": threads, "meets_target": target.met(lat[TEACHER].median_ms / lat[chosen].median_ms,
                                                                  lat[chosen].median_ms)}
        _write_json(speed, out / "final" / "speed.json")
    checkpoint = _copy_atomic(best, out / "student.pt")

    table = _table(cands, timings, ok_ids, front_ids, picked, val_scores)
    teacher_row = {"path": str(teacher_path), "sha256": sha, "name": teacher_ckpt["model_spec"]["name"],
                   "params": sum(p.numel() for p in teacher_model.parameters()),
                   "timing": timings.rows[TEACHER].as_dict(), "test": teacher_test,
                   "val": {"metrics": _evaluate(teacher_model, data.val, threads), "split": data.val.name}}
    seconds["total"] = time.perf_counter() - start
    result = ShrinkResult(
        out_dir=out, target=str(target),
        target_value={"speed_up": target.speed_up, "ms": target.ms, "margin": target.margin},
        threads=threads, teacher=teacher_row, candidates=table, shortlist=picked,
        chosen=chosen, validation={"split": data.val.name, "images": len(data.val),
                                   "holdout": (out / HOLDOUT_FILE).is_file()},
        final=final, final_speed=speed, budget_steps=budget_steps, final_steps=final_steps, seeds=seeds,
        final_seeds=final_seeds, checkpoint=checkpoint, seconds=seconds)
    if report:
        result.page = write_report(result)
    log(f"shrink: {chosen}: test mAP@0.5 {final['distilled']['mean'].get('mAP50', 0):.3f} at "
        f"{speed['speed_up']:.2f}x the teacher's images/s (trained, measured side by side); page {result.page}")
    return result


def _table(cands: Sequence[Candidate], timings: TimingTable, ok: set[str], front: Sequence[str],
           picked: Sequence[str], val: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for c in cands:
        t = timings.rows[c.id]
        rows.append({"id": c.id, "kind": c.kind, "family": c.family, "entry": c.entry, "params": c.params,
                     "gflops": c.gflops, "compression": c.compression, "median_ms": t.median_ms, "p10_ms": t.p10_ms,
                     "p90_ms": t.p90_ms, "images_per_s": t.images_per_s, "speed_up": t.speed_up,
                     "feasible": c.id in ok, "front": c.id in front, "shortlisted": c.id in picked,
                     "val_mAP50": val.get(c.id, {}).get("mAP50"), "val_AP": val.get(c.id, {}).get("AP"),
                     "knobs": c.knobs, "overrides": c.overrides})
    return rows
