"""Training the demo's models: the teacher (cached by its config), the baseline and the distilled student.

Each run is a plain :func:`~detdistill.engine.run.train_detector` / :func:`distill_student` call on a config
built here. The teacher (when not cached) trains first, data-parallel over ``recipe.teacher_processes``
spawned single-thread processes (gloo, as ``torchrun`` would run it); the students then train through the
study runner (:func:`detdistill.study.run_study`): ``recipe.threads`` threads each, with ``jobs > 1`` in a
pool of spawned processes, a seed's baseline and distilled student side by side; a finished student (its
run folder's ``summary.json``, same config) is not trained again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import ExperimentConfig, config_to_dict
from ..engine.folder import RunFolder
from .recipe import DemoRecipe
from ..errors import ConfigError

Log = Callable[[str], None]


def experiment(recipe: DemoRecipe, role: str, seed: int, out_dir: Path) -> ExperimentConfig:
    """The run config of one model; every role gets the same data, schedule and threads."""
    cfg = ExperimentConfig()
    cfg.data.source = f"synthetic:{recipe.preset}"
    cfg.data.num_train_images = recipe.num_train
    cfg.data.num_eval_images = recipe.num_val
    cfg.data.test_split = None  # scored once at the end, side by side, on num_test images
    # One dataset for every seed: the seed moves the initial weights and the data order, so runs pair by seed.
    cfg.data.dataset_seed = 0
    if role == "teacher":
        cfg.model.name, cfg.model.overrides = recipe.teacher, dict(recipe.teacher_overrides)
    else:
        cfg.model.name, cfg.model.overrides = recipe.student, dict(recipe.student_overrides)
    cfg.optim.lr = recipe.lr
    cfg.optim.warmup_steps = min(recipe.warmup_steps, recipe.steps // 5)
    cfg.train.max_steps = recipe.steps
    # The teacher's batch is split over its processes (train.batch_size is per process): the same 4 images a step.
    cfg.train.batch_size = recipe.batch_size // recipe.teacher_processes if role == "teacher" else recipe.batch_size
    cfg.train.seed = seed
    cfg.train.eval_every = recipe.eval_every if recipe.eval_every < recipe.steps else 0
    cfg.train.checkpoint_every = max(50, recipe.steps // 4)
    cfg.train.threads = 1 if role == "teacher" else recipe.threads
    cfg.train.device = "cpu"
    cfg.train.progress = False
    cfg.train.out_dir = str(out_dir)
    # Safety checks of the distill run, not distillation knobs: the recipe itself is DistillConfig()'s default.
    cfg.distill.teacher_min_map = recipe.teacher_min_map
    cfg.distill.teacher_eval_images = recipe.num_val
    return cfg


def config_key(cfg: ExperimentConfig, world_size: int = 1) -> str:
    """A short hash of everything that shapes a trained teacher (not where it is written, not distillation),
    including how many data-parallel processes trained it."""
    spec = config_to_dict(cfg)
    spec["world_size"] = world_size
    spec["train"].pop("out_dir")
    spec["train"].pop("progress")
    # A teacher trains without distillation, so the distill knobs must not invalidate its cache.
    spec.pop("distill")
    spec.pop("teacher")
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def teacher_folder(recipe: DemoRecipe, cache_dir: Path) -> Path:
    probe = experiment(recipe, "teacher", 0, cache_dir)
    return Path(cache_dir) / f"teacher-{config_key(probe, recipe.teacher_processes)}"


def cached_teacher(recipe: DemoRecipe, cache_dir: Path) -> Path | None:
    folder = RunFolder(teacher_folder(recipe, cache_dir))
    return folder.last if folder.is_done(recipe.steps) else None


def _teacher_rank(rank: int, world_size: int, port: int, recipe: DemoRecipe, folder: Path) -> None:
    """One data-parallel teacher process (``torch.multiprocessing`` passes the rank first)."""
    import torch.distributed as dist

    from ..engine.run import train_detector

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cfg = experiment(recipe, "teacher", 0, folder)
    cfg.train.progress = rank == 0  # progress lines in the foreground; the key ignores this field
    try:
        train_detector(cfg, resume=True, log=print if rank == 0 else (lambda line: None))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train_teacher(recipe: DemoRecipe, cache_dir: Path, log: Log = print) -> Path:
    """Train the teacher into the cache, resuming a run that was cut short (its summary.json marks it done)."""
    from ..engine.run import train_detector

    folder = teacher_folder(recipe, cache_dir)
    if recipe.teacher_processes > 1:
        import torch.multiprocessing as mp

        log(f"teacher: {recipe.teacher_processes} data-parallel processes, "
            f"{recipe.batch_size // recipe.teacher_processes} images each per step")
        from ..engine.distributed import free_local_port

        mp.start_processes(_teacher_rank, args=(recipe.teacher_processes, free_local_port(), recipe, folder),
                           nprocs=recipe.teacher_processes, start_method="spawn")
    else:
        train_detector(experiment(recipe, "teacher", 0, folder), resume=True, log=log)
    return RunFolder(folder).last


def train_or_reuse_teacher(recipe: DemoRecipe, cache_dir: Path, log: Log = print) -> Path:
    """The cached teacher whose config is identical, or a freshly trained one."""
    found = cached_teacher(recipe, cache_dir)
    if found is not None:
        log(f"teacher: reusing {found.parent} (same config)")
        return found
    log(f"teacher: training {recipe.teacher} for {recipe.steps} steps -> {teacher_folder(recipe, cache_dir)}")
    return train_teacher(recipe, cache_dir, log)


ROLES_TRAINED = ("baseline", "distilled")


def train_student(recipe: DemoRecipe, role: str, seed: int, out_dir: Path, teacher: Path | None,
                  log: Log = print) -> Path:
    """The baseline (no teacher) or the distilled student (``DistillConfig()``'s default recipe), in this process."""
    from ..engine.run import distill_student, train_detector

    cfg = experiment(recipe, role, seed, out_dir)
    if role == "baseline":
        train_detector(cfg, log=log)
    elif role == "distilled":
        if teacher is None:
            raise ConfigError("distilled: no teacher checkpoint")
        cfg.teacher = str(teacher)
        distill_student(cfg, log=log)
    else:
        raise ValueError(f"role must be 'baseline' or 'distilled', got {role!r}")
    return Path(out_dir) / "last.pt"


def finished_run(folder: Path, steps: int) -> bool:
    """A run folder whose training reached ``steps`` (:meth:`RunFolder.is_done`: its ``summary.json``)."""
    return RunFolder(folder).is_done(steps)


@dataclass(frozen=True)
class Job:
    role: str
    seed: int
    out_dir: Path


def train_all(recipe: DemoRecipe, jobs: list[Job], cache_dir: Path, log: Log = print,
              skip: Callable[[Job], bool] = lambda job: False) -> tuple[Path, dict[Job, Path]]:
    """The teacher (cached) and every student job; returns the teacher's checkpoint and each job's.

    ``skip(job)`` says a job already finished (resumable multi-seed runs); its checkpoint is returned as is.
    The others go through :func:`~detdistill.study.run_study` (which also skips a finished run of the same
    config, and retrains a folder that holds another config's run).
    """
    from ..study import Arm, run_study

    unknown = sorted({job.role for job in jobs} - set(ROLES_TRAINED))
    if unknown:
        raise ValueError(f"role must be 'baseline' or 'distilled', got {unknown[0]!r}")
    threads = torch.get_num_threads()
    results: dict[Job, Path] = {}
    todo = [job for job in jobs if not skip(job)]
    for job in jobs:
        if job not in todo:
            results[job] = Path(job.out_dir) / "last.pt"
    try:
        # Every student either needs the teacher or would share its cores, so it trains first and alone.
        teacher = train_or_reuse_teacher(recipe, cache_dir, log)
        if todo:
            folders = {(job.role, job.seed): Path(job.out_dir) for job in todo}
            arms = [Arm(role, config=experiment(recipe, role, 0, Path(".")), teacher=role == "distilled")
                    for role in dict.fromkeys(job.role for job in todo)]
            run_study(arms, sorted({job.seed for job in todo}), Path(os.path.commonpath(list(folders.values()))),
                      jobs=recipe.jobs, threads=recipe.threads, teacher=teacher, score_test=False,
                      score_teacher=False, layout=lambda role, seed: folders[(role, seed)], runs=list(folders),
                      overwrite=True, progress=False, log=log)
            for job in todo:
                results[job] = RunFolder(job.out_dir).last
        return teacher, results
    finally:
        torch.set_num_threads(threads)  # a run in this process set its own thread count


def student_config(recipe: DemoRecipe, role: str, seed: int) -> dict:
    """The distillation recipe a run used, as recorded (the default of DistillConfig, never set here)."""
    cfg = experiment(recipe, role, seed, Path("."))
    return copy.deepcopy(config_to_dict(cfg.distill)) if role == "distilled" else {}
