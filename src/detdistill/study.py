"""One study runner: arms × seeds of runs, paired by seed, resumable, with the paired statistics.

An :class:`Arm` is one configuration (a baseline, a distillation recipe, a candidate student); a study runs
every arm for every seed and scores each finished run. It is what the ablation (:mod:`detdistill.ablate`),
the demo's students (:mod:`detdistill.demo.training`), the BCCD benchmark and the shrink search share:

- **paired by seed**: seed k of every arm uses ``train.seed = k`` (the student's initial weights and the
  data order), so ``StudyResult.paired(a, b)`` compares runs that differ only in the arm;
- **fixed threads**: every run gets ``train.threads = threads`` (recorded in its config and its result): the
  thread count alone moves a run's numbers. ``jobs > 1`` runs that many runs at once in spawned processes;
- **resumable**: a run folder whose ``summary.json`` says it finished (:meth:`RunFolder.is_done`), with the
  same config, is not trained again; its scores (``scores.json``) are read back; an unfinished one continues
  from its ``last.pt``;
- **choose on validation, report on test**: each run's validation metrics are its last step's (the run's
  own validation split); the test split is scored here from ``last.pt`` (``score_test=False`` never opens
  it, for a search that must choose on validation alone). A run's own test scoring is switched off, so the
  teacher is not re-scored beside every student: the study scores it once (``StudyResult.teacher``).
  A search chooses with ``score_test=False`` and :meth:`StudyResult.best`, then calls ``run_study`` again
  with ``runs=[(chosen, seed), ...]``: the chosen arm's finished runs are scored on test, not retrained.

Example::

    arms = [Arm("baseline", config=student_cfg), Arm("kd", config=distill_cfg, teacher=True)]
    result = run_study(arms, seeds=3, out="runs/study", jobs=2, threads=1)
    diff = result.paired("baseline", "kd")      # kd − baseline, paired by seed, 95 % t-interval
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import ExperimentConfig, config_to_dict, flatten_config
from .engine.folder import RunFolder
from .errors import ConfigError
from .stats import PairedDifference, paired_difference

Log = Callable[[str], None]
Layout = Callable[[str, int], Path]

# Config keys that do not make a finished run another run: where it was written, how it reported, what it
# was tested on (the study scores the test split itself), the teacher check's settings and the cache (it
# stands in for the live teacher).
_IGNORED_KEYS = frozenset({
    "train.out_dir", "train.progress", "train.log_every", "train.checkpoint_every", "data.num_workers",
    "data.test_split", "distill.teacher_min_map", "distill.allow_weak_teacher", "distill.teacher_eval_images",
    "distill.teacher_cache", "distill.teacher_cache_dtype"})


class StudyError(ConfigError):
    """A study cannot go on as asked (a run folder holds another config, a result is missing, ...)."""


@dataclass(frozen=True)
class Arm:
    """One configuration of a study.

    ``config``: the arm's whole config (default: the study's ``base``); ``changes``: dotted attribute
    assignments applied on it (``{"distill.recipe": "chen2017"}``); ``teacher``: the arm distils (a
    :class:`~detdistill.engine.run.DistillRun` with the study's teacher) rather than trains alone.
    ``datasets``: what opens the arm's datasets from a run's config (a
    :data:`~detdistill.engine.run.DatasetFactory`; default: the config's splits), for data a config cannot
    name: a seeded hold-out, a labelled subset. Its runs train, are scored on test and build the teacher cache
    on what it returns; with ``jobs > 1`` it must pickle (a module-level function or a ``functools.partial``).
    Arms of one study may hold different model configs (a search over candidate students).
    """

    name: str
    config: ExperimentConfig | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    teacher: bool = False
    datasets: Callable[[ExperimentConfig], Any] | None = None

    def build(self, base: ExperimentConfig | None) -> ExperimentConfig:
        cfg = copy.deepcopy(self.config if self.config is not None else base)
        if cfg is None:
            raise StudyError(f"arm {self.name!r}: no config (give the arm a config or the study a base config)")
        for key, value in self.changes.items():
            _set_dotted(cfg, key, value, self.name)
        return cfg


def _set_dotted(cfg: Any, key: str, value: Any, arm: str) -> None:
    *parents, leaf = key.split(".")
    obj = cfg
    for part in parents:
        obj = getattr(obj, part, None)
    if obj is None or not hasattr(obj, leaf):
        raise StudyError(f"arm {arm!r}: unknown config key {key!r} in its changes")
    setattr(obj, leaf, copy.deepcopy(value))


@dataclass
class RunResult:
    """One finished (arm, seed): where it ran, its thread count, and its last step's scores."""

    arm: str
    seed: int
    folder: str
    threads: int | None
    steps: int
    train_seconds: float
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] | None = None
    test_per_class: dict[str, float] = field(default_factory=dict)
    test_images: int | None = None

    def score(self, metric: str = "mAP50", split: str = "test") -> float | None:
        scores = self.val if split == "val" else (self.test or {})
        value = scores.get(metric)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunResult":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class StudyResult:
    """Every scored run of a study, by ``(arm, seed)``; the teacher's scores (once) when it has one."""

    arms: list[str]
    seeds: list[int]
    threads: int
    runs: dict[tuple[str, int], RunResult]
    teacher: dict[str, Any] | None = None
    out: str = ""

    def of(self, arm: str) -> list[RunResult]:
        """The runs of ``arm``, by seed."""
        return [r for (a, _), r in sorted(self.runs.items(), key=lambda kv: kv[0][1]) if a == arm]

    def values(self, arm: str, metric: str = "mAP50", split: str = "test") -> dict[int, float]:
        """``{seed: value}`` of ``arm``'s runs that have the metric on ``split``."""
        out = {}
        for r in self.of(arm):
            value = r.score(metric, split)
            if value is not None:
                out[r.seed] = value
        return out

    def paired(self, a: str, b: str, metric: str = "mAP50", split: str = "test") -> PairedDifference:
        """``b − a`` paired by seed (``a`` the control, e.g. the baseline; ``b`` the treatment) over the seeds
        both arms have, with the 95 % t-interval of :func:`detdistill.stats.paired_difference`."""
        va, vb = self.values(a, metric, split), self.values(b, metric, split)
        seeds = sorted(set(va) & set(vb))
        if not seeds:
            raise StudyError(f"paired({a!r}, {b!r}): no seed has {metric} on {split} in both arms")
        return paired_difference([va[s] for s in seeds], [vb[s] for s in seeds])

    def best(self, arms: Sequence[str] | None = None, metric: str = "mAP50", split: str = "val") -> str:
        """The arm with the highest mean ``metric`` on ``split`` (validation by default: choose there, report
        on test)."""
        names = list(arms or self.arms)
        means = {}
        for name in names:
            values = list(self.values(name, metric, split).values())
            if values:
                means[name] = sum(values) / len(values)
        if not means:
            raise StudyError(f"best: no arm of {names} has {metric} on {split}")
        return max(means, key=means.__getitem__)

    def as_dict(self) -> dict[str, Any]:
        return {"arms": self.arms, "seeds": self.seeds, "threads": self.threads, "teacher": self.teacher,
                "runs": [r.as_dict() for r in self.runs.values()]}


# ----------------------------------------------------------------------------------------- one run
@dataclass
class _Job:
    arm: str
    seed: int
    cfg: ExperimentConfig  # the run's config: seed, folder, threads set; its test split off
    distill: bool
    test_split: str | None  # scored by the study (None: not scored)
    test_images: int | None
    fresh: bool  # start afresh in a folder holding another config's run (the study's overwrite)
    datasets: Callable[[ExperimentConfig], Any] | None = None  # the arm's dataset factory (None: the config's)


def config_differences(folder: RunFolder, cfg: ExperimentConfig) -> list[str]:
    """The config keys whose value in ``folder/config.yaml`` differs from ``cfg`` ([] when equal or absent)."""
    import yaml

    if not folder.config.is_file():
        return []
    try:
        saved = yaml.safe_load(folder.config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ["config.yaml (unreadable)"]
    old = flatten_config(json.loads(json.dumps(saved)))
    new = flatten_config(json.loads(json.dumps(config_to_dict(cfg))))
    return sorted(k for k in new if k in old and old[k] != new[k] and k not in _IGNORED_KEYS)


def _score_test(job: _Job, checkpoint: Path) -> tuple[dict[str, float], dict[str, float]]:
    from .engine.run import open_datasets
    from .eval.inference import evaluate_model
    from .models import load_detector

    probe = copy.deepcopy(job.cfg)
    probe.data.val_split = None
    probe.data.test_split = job.test_split
    if job.test_images is not None and probe.data.source.startswith("synthetic"):
        probe.data.num_eval_images = job.test_images
    test = (job.datasets or open_datasets)(probe).test
    result = evaluate_model(load_detector(checkpoint), test, batch_size=8)
    per_class = {str(row["name"]): float(row["AP50"]) for row in result.per_class if "AP50" in row}
    return dict(result.metrics), per_class


def run_one(job: _Job) -> RunResult:
    """Train (or resume, or skip when finished) one (arm, seed) and score it; ``scores.json`` caches the scores."""
    from .engine import run as engine_run  # looked up at call time: tests replace the one-call forms

    folder = RunFolder(job.cfg.train.out_dir)
    steps = job.cfg.train.max_steps
    wanted = {"test_split": job.test_split, "test_images": job.test_images}
    if folder.is_done(steps) and not job.fresh:
        try:
            cached = json.loads(folder.scores.read_text(encoding="utf-8"))
            if cached.get("wanted") == wanted and cached.get("steps") == steps:
                return RunResult.from_dict(cached)
        except (OSError, ValueError):
            pass
        summary = folder.read_summary() or {}
    else:
        train = engine_run.distill_student if job.distill else engine_run.train_detector
        log = folder.file_log()
        done = train(job.cfg, resume=not job.fresh, overwrite=job.fresh, log=log, datasets=job.datasets)
        summary = done.to_dict()
    result = RunResult(arm=job.arm, seed=job.seed, folder=str(folder.path), threads=job.cfg.train.threads,
                       steps=int(summary.get("steps", 0)), train_seconds=float(summary.get("train_seconds", 0.0)),
                       val={k: float(v) for k, v in (summary.get("last_metrics") or {}).items()},
                       test_images=job.test_images)
    if job.test_split is not None:
        result.test, result.test_per_class = _score_test(job, folder.last)
    from .utils import atomic_write_text

    atomic_write_text(json.dumps({**result.as_dict(), "wanted": wanted}, indent=1), folder.scores)
    return result


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------- teacher
def _score_teacher(path: str, cfg: ExperimentConfig, out: Path, score_test: bool,
                   test_images: int | None, datasets: Callable[[ExperimentConfig], Any] | None = None) -> dict[str, Any]:
    """The teacher's val (and test) metrics, scored once per study folder and teacher file (on ``datasets``'s
    splits when the arm has a factory)."""
    from .engine.run import load_teacher, open_datasets
    from .eval.inference import evaluate_model
    from .utils import atomic_write_text, file_sha256

    sha = file_sha256(path)
    probe = copy.deepcopy(cfg)
    if not score_test:
        probe.data.test_split = None
    key = {"sha256": sha, "val_split": probe.data.val_split, "val_images": probe.data.num_eval_images,
           "test_split": probe.data.test_split, "test_images": test_images, "source": probe.data.source}
    record = out / "teacher.json"
    try:
        cached = json.loads(record.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached
    except (OSError, ValueError):
        pass
    teacher, _ = load_teacher(path)
    opened = datasets or open_datasets
    data = opened(probe)
    scores: dict[str, Any] = {"path": str(path), "key": key, "val": None, "test": None}
    if data.val is not None:
        scores["val"] = dict(evaluate_model(teacher, data.val, batch_size=8).metrics)
    if probe.data.test_split is not None:
        test_probe = copy.deepcopy(probe)
        test_probe.data.val_split = None
        if test_images is not None and test_probe.data.source.startswith("synthetic"):
            test_probe.data.num_eval_images = test_images
        test = opened(test_probe).test
        result = evaluate_model(teacher, test, batch_size=8)
        scores["test"] = dict(result.metrics)
        scores["test_per_class"] = {str(r["name"]): float(r["AP50"]) for r in result.per_class if "AP50" in r}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(scores, indent=1), record)
    return scores


# ------------------------------------------------------------------------------------------- study
def run_study(arms: Sequence[Arm], seeds: int | Iterable[int], out: str | Path, *,
              base: ExperimentConfig | None = None, jobs: int = 1, threads: int = 1, teacher: str | Path | None = None,
              score_test: bool = True, score_teacher: bool = True, test_images: int | None = None,
              layout: Layout | None = None, runs: Iterable[tuple[str, int]] | None = None, overwrite: bool = False,
              progress: bool = True, log: Log = print) -> StudyResult:
    """Run (or resume) ``arms`` × ``seeds`` and score every run; returns the :class:`StudyResult`.

    Args:
        arms: the configurations; names must be unique (they name the run folders).
        seeds: a count N (seeds 0..N-1) or the seeds themselves.
        out: the study folder; runs go to ``out/<arm>/seed<k>`` unless ``layout(arm, seed)`` says otherwise.
        base: the config of arms that carry none.
        jobs: runs at once, in spawned processes (1: in this process).
        threads: torch threads of every run (``train.threads``), fixed and recorded.
        teacher: the teacher checkpoint of the arms with ``teacher=True`` (default: their config's).
        score_test: score each run's last step on its config's test split (False: validation only).
        score_teacher: score the teacher once on val (and test) into ``StudyResult.teacher``.
        test_images: synthetic data only, the test split's size (validation keeps ``data.num_eval_images``).
        runs: only these ``(arm, seed)`` cells, in this order (default: every cell, arm by arm).
        overwrite: a run folder holding a run of another config starts afresh (default: refuse it).
    """
    from tqdm.auto import tqdm

    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise StudyError(f"arms: names repeat ({names}); each arm names its run folders")
    if jobs < 1 or threads < 1:
        raise StudyError(f"jobs={jobs}, threads={threads}: both must be >= 1")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise StudyError("seeds: no seeds to run")
    out = Path(out)
    by_name = {a.name: a for a in arms}
    cells = list(runs) if runs is not None else [(a.name, s) for a in arms for s in seed_list]
    unknown = sorted({a for a, _ in cells if a not in by_name})
    if unknown:
        raise StudyError(f"runs: unknown arm(s) {unknown}; the study's arms are {names}")
    place = layout or (lambda arm, seed: out / arm / f"seed{seed}")

    todo: list[_Job] = []
    for name, seed in cells:
        arm = by_name[name]
        cfg = arm.build(base)
        if arm.teacher:
            cfg.teacher = str(teacher) if teacher is not None else cfg.teacher
            if not cfg.teacher:
                raise StudyError(f"arm {name!r} distils, but the study has no teacher (teacher=PATH)")
        cfg.train.seed = seed
        cfg.train.threads = threads
        cfg.train.progress = False
        cfg.train.out_dir = str(place(name, seed))
        test_split = cfg.data.test_split if score_test else None
        cfg.data.test_split = None  # the study scores the test split itself, the teacher once
        folder = RunFolder(cfg.train.out_dir)
        differs = config_differences(folder, cfg)
        if differs and not overwrite:
            raise StudyError(f"{folder.path}: holds a run of another config ({', '.join(differs[:5])}); delete "
                             "it, choose another study folder, or pass overwrite=True to retrain it")
        todo.append(_Job(name, seed, cfg, arm.teacher, test_split, test_images, fresh=bool(differs),
                         datasets=arm.datasets))

    teacher_arms = [job for job in todo if job.distill]
    pending = [job for job in todo if job.fresh or not RunFolder(job.cfg.train.out_dir).is_done(job.cfg.train.max_steps)]
    from .engine import run as engine_run

    cached = [job for job in pending if job.distill and engine_run.teacher_cache_folder(job.cfg)]
    if cached:
        # Built once, with a progress bar, before any run; every distilled run then reads it.
        probe = copy.deepcopy(cached[0].cfg)
        probe.train.progress = progress
        engine_run.cache_teacher(probe, log=log, datasets=cached[0].datasets)
    for job in pending:
        with_teacher = " with the teacher" if job.distill else ""
        log(f"{job.arm} (seed {job.seed}): training {job.cfg.model.name} for {job.cfg.train.max_steps} steps"
            f"{with_teacher} (log: {RunFolder(job.cfg.train.out_dir).log})")

    import torch

    old_threads = torch.get_num_threads()
    results: dict[tuple[str, int], RunResult] = {}
    bar = tqdm(total=len(todo), desc="study", unit="run", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        if jobs == 1 or len(pending) <= 1:
            for job in todo:
                torch.set_num_threads(threads)
                results[(job.arm, job.seed)] = run_one(job)
                bar.update(1)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(run_one, job): job for job in todo}
                try:
                    for future in as_completed(futures):
                        job = futures[future]
                        results[(job.arm, job.seed)] = future.result()
                        if job in pending:
                            log(f"{job.arm} (seed {job.seed}): done")
                        bar.update(1)
                except BaseException:
                    for future in futures:  # a failed run stops the study: start nothing more
                        future.cancel()
                    raise
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
    ordered = {(j.arm, j.seed): results[(j.arm, j.seed)] for j in todo}
    teacher_scores = None
    if score_teacher and teacher_arms:
        first = teacher_arms[0]
        teacher_scores = _score_teacher(first.cfg.teacher, _with_test(first), out, score_test, test_images,
                                        first.datasets)
    result = StudyResult(arms=names, seeds=seed_list, threads=threads, runs=ordered, teacher=teacher_scores,
                         out=str(out))
    from .utils import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps({**result.as_dict(), "seconds": time.perf_counter() - start}, indent=1),
                      out / "study.json")
    return result


def _with_test(job: _Job) -> ExperimentConfig:
    cfg = copy.deepcopy(job.cfg)
    cfg.data.test_split = job.test_split
    return cfg
