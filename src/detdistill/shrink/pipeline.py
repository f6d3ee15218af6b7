"""The search as a plan and six steps: generate, time, rank, distil, finish, report.

:func:`open_plan` checks and opens everything the search depends on (inputs, config, data, teacher) and the
run folder's record of them; each step reads the plan, adds to the :class:`SearchState` and stores what it
computed in the run folder keyed by its inputs (:mod:`.keys`), so that a rerun reuses exactly the pieces
whose inputs are unchanged and recomputes the others, saying what changed. Run folder::

    search.json        what the search depends on (teacher hash, data digests, config digest, budget, seeds)
    candidates.json    the generated candidates       timing.json   the timing table (both keyed)
    holdout.json       the hold-out image list, when the dataset has no usable validation split
    teacher_cache/<key>/   the teacher's outputs on the training images, shared by every distillation
    init/<candidate>/  the compressed teacher a low-rank candidate starts from
    search/<N>steps/<candidate>/seed<k>/   successive-halving runs; score.json = validation metrics
    final/<role>-seed<k>/   the chosen candidate's full runs; score.json = test (or validation) metrics
    final/teacher-<split>/, final/speed/   the teacher's scores, the trained student's speed check
    student.pt, candidates.csv, summary.json, shrink.html, shrink.png

Every run folder holds ``key.json`` (written before its first step) and its done marker ``score.json``;
a run cut short resumes from its last checkpoint, and every run is seeded by its own seed alone, so a kill
at any moment followed by the same command gives the student of an uninterrupted search bit for bit.
Training goes through one function, :func:`train_run` (the engine's run object with the search's datasets
as its dataset factory).
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import ExperimentConfig, load_config
from ..engine.run import Datasets, open_datasets
from ..errors import DetDistillError
from ..utils import atomic_output, atomic_write_text, file_sha256, seed_everything
from .candidates import (FAMILIES, LOWRANK_RATIOS, TEST_TIERS, Candidate, Family, build_candidate,
                         generate_candidates, small_object_share)
from .front import DEFAULT_TARGET_MARGIN, Row, pareto_front
from .halving import Rung, first_rung, halving_schedule, successive_halving
from .holdout import HOLDOUT_FILE, holdout_split, overlapping_images, write_holdout
from .inputs import ShrinkInputs, check_inputs
from .keys import claim, config_key, digest, split_key, what_changed
from .result import ShrinkResult
from .timing import (TEACHER, Timer, TimingTable, cached_timing, cpu_timer, save_timing, speed_up_ci, time_candidates,
                     timer_name)

Log = Callable[[str], None]
#: The final check passes every timing image this many times: one 20-image pass of the demo's chosen student
#: read 2.72x where five more passes read 2.96-3.12x (a verdict on a 3x target rode on that noise).
FINAL_SPEED_ROUNDS = 3
SMALL_OBJECT_SHARE = 0.1
"""The stride-8 family joins when at least this share of the training boxes is small, each class weighted equally
(see :func:`~detdistill.shrink.candidates.small_object_share`)."""


class ShrinkError(DetDistillError):
    """A search that cannot run as asked (another search in the folder, a teacher of other classes)."""


# ---------------------------------------------------------------------------------------------- training
def _recorded_config(last: Path) -> dict[str, Any]:
    from ..models import read_checkpoint

    config = read_checkpoint(last)["metadata"].get("config")
    return config if isinstance(config, dict) else {}


def _given(data: Datasets, cfg: ExperimentConfig) -> Datasets:
    """The search's datasets for a run of any config (a :data:`~detdistill.engine.run.DatasetFactory`)."""
    return data


def train_run(cfg: ExperimentConfig, data: Datasets, distill: bool, log: Log) -> None:
    """Train one run of the search into ``cfg.train.out_dir``, resuming it when it was cut short.

    The one place the search trains: the engine's run object with the search's datasets as its dataset factory
    (the hold-out, no test split: the search scores each checkpoint itself). Seeded by ``train.seed`` before
    anything is opened, so that what a run draws does not depend on what ran before it in the process. The
    resume check compares the run's settings, not where its files are: a moved run folder's init checkpoint
    and data source are taken as recorded (the run's key, checked by the caller, holds their content).
    """
    from ..engine.run import DistillRun, TrainRun

    last = Path(cfg.train.out_dir) / "last.pt"
    resume = last.is_file()
    base = DistillRun if distill else TrainRun

    class KeyedRun(base):  # type: ignore[misc, valid-type]
        def prepare_folder(self) -> None:
            real = (self.cfg.model.name, self.cfg.data.source)
            if resume:
                recorded = _recorded_config(last)
                self.cfg.model.name = recorded.get("model", {}).get("name", real[0])
                self.cfg.data.source = recorded.get("data", {}).get("source", real[1])
            try:
                super().prepare_folder()
            finally:
                self.cfg.model.name, self.cfg.data.source = real

    seed_everything(cfg.train.seed)
    KeyedRun(cfg, resume=resume, overwrite=True, log=log, datasets=functools.partial(_given, data)).run()


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


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class ShrinkPlan:
    """Everything a search depends on, checked and opened once; the steps read it and never change it.

    ``data``: the training (fit) and validation sets the choice is made on, no test split; ``test``: the split
    the final runs are scored on (None: validation is, and every output says so). ``identity``: what the run
    folder's pieces are keyed by. ``timer``: how models are timed (:data:`~detdistill.shrink.timing.Timer`).
    ``teacher_cache``: the folder every distillation reads the teacher from (None: live).
    ``hook(step)`` runs as each step starts (the tests stop a search there).
    """

    inputs: ShrinkInputs
    cfg: ExperimentConfig
    data: Datasets
    test: Any
    teacher: nn.Module
    teacher_ckpt: dict[str, Any]
    identity: dict[str, Any]
    rungs: list[Rung]
    final_steps: int
    teacher_cache: str | None
    families: Sequence[Family]
    lowrank_ratios: Sequence[float]
    tiers: Sequence[tuple[str, float, float]]
    with_baseline: bool
    timer: Timer
    progress: bool
    report: bool
    log: Log
    hook: Callable[[str], None]

    @property
    def out(self) -> Path:
        return self.inputs.out

    @property
    def teacher_sha(self) -> str:
        return str(self.identity["teacher_sha256"])

    @property
    def final_role(self) -> str:
        """The split the final runs are scored on, as the outputs name it."""
        return "test" if self.test is not None else "validation"


@dataclass
class SearchState:
    """What the steps found so far (each step adds its part)."""

    candidates: list[Candidate] = field(default_factory=list)
    timings: TimingTable | None = None
    rows: list[Row] = field(default_factory=list)
    admitted: set[str] = field(default_factory=set)
    front: list[str] = field(default_factory=list)
    first_rung: list[str] = field(default_factory=list)
    rungs: list[dict[str, Any]] = field(default_factory=list)
    chosen: str = ""
    final: dict[str, Any] = field(default_factory=dict)
    teacher_scores: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    result: ShrinkResult | None = None

    def by_id(self) -> dict[str, Candidate]:
        return {c.id: c for c in self.candidates}


def _search_datasets(cfg: ExperimentConfig, inputs: ShrinkInputs, log: Log) -> tuple[Datasets, Any, dict | None]:
    """The search's training and validation sets (a hold-out when needed), the test split, the hold-out's record."""
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
        return Datasets(data.train, data.val, None), data.test, None
    fit, val = holdout_split(data.train, inputs.holdout_fraction, inputs.holdout_seed)
    log(f"shrink: {reason}; validating on a seeded hold-out of {len(val)} of the {len(data.train)} training images "
        f"(seed {inputs.holdout_seed}, {inputs.out / HOLDOUT_FILE})")
    return Datasets(fit, val, None), data.test, {"fit": fit, "val": val, "reason": reason}


def _check_folder(inputs: ShrinkInputs, identity: dict[str, Any], log: Log) -> None:
    """Refuse a run folder holding a search of another teacher or other data; say what else changed."""
    path = inputs.out / "search.json"
    old = _read_json(path)
    if isinstance(old, dict):
        for what, key in (("another teacher", "teacher_sha256"), ("other data", "data")):
            if old.get(key) != identity[key]:
                changed = (f"SHA-256 {str(old.get(key))[:12]}… there, {identity[key][:12]}… now"
                           if key == "teacher_sha256" else f"{what_changed(old.get(key), identity[key])} differs")
                raise ShrinkError(f"shrink: --out {inputs.out} holds a search of {what} ({changed}); "
                                  "choose another --out, or remove that folder to start over")
        if old != identity:
            log(f"shrink: {inputs.out}: reusing what still applies; changed since its last run: "
                f"{what_changed(old, identity)}")
    _write_json(identity, path)


def open_plan(config: ExperimentConfig | str | Path | None, inputs: ShrinkInputs, *,
              families: Sequence[Family], lowrank_ratios: Sequence[float], tiers: Sequence[tuple[str, float, float]],
              with_baseline: bool, timer: Timer, progress: bool, report: bool, log: Log,
              hook: Callable[[str], None]) -> ShrinkPlan:
    """Open the config, the data and the teacher, key them, and check the run folder against them."""
    from ..engine.run import load_teacher

    cfg = copy.deepcopy(config) if isinstance(config, ExperimentConfig) else load_config(config)
    data, test, holdout = _search_datasets(cfg, inputs, log)
    teacher_model, teacher_ckpt = load_teacher(inputs.teacher)
    if list(teacher_ckpt["class_names"]) != list(data.train.class_names):
        raise ShrinkError(f"--teacher {inputs.teacher}: the teacher's classes {teacher_ckpt['class_names']} differ "
                          f"from the dataset's {data.train.class_names}")
    data_id = {"train": split_key(data.train), "val": split_key(data.val),
               "test": split_key(test) if test is not None else None,
               "holdout": None if holdout is None else [inputs.holdout_fraction, inputs.holdout_seed]}
    final_steps = inputs.final_steps or int(cfg.train.max_steps)
    identity = {"teacher_sha256": file_sha256(inputs.teacher), "data": data_id, "config": digest(config_key(cfg)),
                "budget_steps": inputs.budget_steps, "candidates": inputs.candidates, "finalists": inputs.finalists,
                "final_steps": final_steps, "seeds": list(inputs.seeds), "final_seeds": list(inputs.final_seeds),
                "candidate_set": digest([[f.__dict__ for f in families], list(lowrank_ratios), list(tiers)]),
                "target": str(inputs.target.admitted()), "threads": inputs.threads, "timer": timer_name(timer)}
    inputs.out.mkdir(parents=True, exist_ok=True)
    _check_folder(inputs, identity, log)
    if holdout is not None:
        write_holdout(inputs.out / HOLDOUT_FILE, holdout["val"], inputs.holdout_fraction, inputs.holdout_seed,
                      holdout["reason"])
    rungs = halving_schedule(inputs.candidates, inputs.budget_steps, inputs.finalists)
    cache = teacher_cache_dir(cfg, inputs.out, identity, lambda line: log(f"shrink: {line}"))
    return ShrinkPlan(inputs, cfg, data, test, teacher_model, teacher_ckpt, identity, rungs, final_steps, cache,
                      families, lowrank_ratios, tiers, with_baseline, timer, progress, report, log, hook)


# ---------------------------------------------------------------------------------------------- the steps
def step_generate(plan: ShrinkPlan, st: SearchState) -> None:
    """Every student the teacher admits (zoo families that pair with it, low-rank compressions of it)."""
    share = small_object_share(plan.data.train, plan.teacher)
    small = share >= SMALL_OBJECT_SHARE
    image_size = [int(v) for v in plan.data.val.load_image(0).shape[-2:]]
    key = {"teacher_sha256": plan.teacher_sha, "image_size": image_size, "candidate_set":
           plan.identity["candidate_set"], "small_objects": small,
           "distill": {k: v for k, v in config_key(plan.cfg).items() if k.startswith("distill.")}}
    cached = _read_json(plan.out / "candidates.json")
    if isinstance(cached, dict) and cached.get("key") == json.loads(json.dumps(key)):
        st.candidates = [Candidate.from_dict(c) for c in cached["candidates"]]
        return
    plan.log(f"shrink: {share * 100:.0f} % of the training boxes are small for the teacher's finest stride (classes "
             f"weighted equally, as mAP weighs them); the "
             f"stride-8 family is {'in' if small else 'left out'} (threshold {SMALL_OBJECT_SHARE * 100:g} %)")
    st.candidates = generate_candidates(plan.teacher, image_size, plan.families, plan.lowrank_ratios,
                                        tiers=plan.tiers, small_objects=small, distill_config=plan.cfg.distill,
                                        log=plan.log)
    _write_json({"key": key, "candidates": [c.as_dict() for c in st.candidates]}, plan.out / "candidates.json")


def step_time(plan: ShrinkPlan, st: SearchState) -> None:
    """The teacher and every candidate timed side by side on validation images with the plan's timer."""
    val = plan.data.val
    n_images = min(plan.inputs.timing_images, len(val))
    key = {"teacher_sha256": plan.teacher_sha, "candidates": digest([c.as_dict() for c in st.candidates]),
           "threads": plan.inputs.threads, "images": n_images, "warmup": 2, "split": plan.identity["data"]["val"],
           "timer": timer_name(plan.timer)}
    key = json.loads(json.dumps(key))
    st.timings = cached_timing(plan.out / "timing.json", key)
    if st.timings is not None:
        plan.log(f"shrink: timing table reused ({plan.out / 'timing.json'})")
        return
    plan.log(f"shrink: timing the teacher and {len(st.candidates)} candidates on {n_images} validation images, "
             f"batch 1, {plan.inputs.threads} thread(s), interleaved ({timer_name(plan.timer)})")
    images = [val.load_image(i) for i in range(n_images)]
    st.timings = time_candidates(plan.teacher, st.candidates, images, plan.inputs.threads, warmup=2, key=key,
                                 progress=plan.progress, timer=plan.timer)
    save_timing(st.timings, plan.out / "timing.json")


def step_rank(plan: ShrinkPlan, st: SearchState) -> None:
    """Which candidates the target admits, the front (for the page) and the first rung, before any training."""
    from .report import write_csv

    assert st.timings is not None
    t = st.timings.rows
    st.rows = [Row(c.id, t[c.id].median_ms, t[c.id].speed_up, c.params, c.kind, c.family, _arch(c))
               for c in st.candidates]
    target = plan.inputs.target
    st.admitted = {r.id for r in st.rows if target.met(r.speed_up, r.median_ms, with_margin=True)}
    st.front = [r.id for r in pareto_front(st.rows)]
    write_csv(_table(st), plan.out / "candidates.csv")
    st.first_rung = [r.id for r in first_rung(st.rows, target, plan.rungs[0].size, plan.inputs.threads)]
    families = sorted({st.by_id()[cid].family for cid in st.first_rung})
    plan.log(f"shrink: {len(st.admitted)} of {len(st.candidates)} candidates meet the target ({target.admitted()}); "
             f"successive halving from {len(st.first_rung)} ({', '.join(families)}): "
             + ", ".join(f"{r.size} x {r.steps} steps" for r in plan.rungs))


def step_distil(plan: ShrinkPlan, st: SearchState) -> None:
    """Successive halving: each rung's candidates distilled for its steps on every seed and scored on
    validation, the better part kept; the best of the last rung is the choice."""
    cands = st.by_id()

    def score(cid: str, steps: int) -> dict[str, float]:
        runs = [_one_run(plan, cands[cid], True, plan.data.val, steps, seed,
                         plan.out / "search" / f"{steps}steps" / cid / f"seed{seed}") for seed in plan.inputs.seeds]
        bar.update(len(runs))
        return _mean_metrics(runs)

    from tqdm.auto import tqdm

    total = sum(r.size for r in plan.rungs) * len(plan.inputs.seeds)
    with tqdm(total=total, desc="shrink: successive halving", unit="run", disable=not plan.progress) as bar:
        st.rungs = successive_halving(plan.rungs, st.first_rung, {c.id: c.params for c in st.candidates}, score)
    for r in st.rungs:
        plan.log(f"shrink: rung {r['index'] + 1}: {r['steps']} steps x {len(plan.inputs.seeds)} seed(s); kept "
                 + ", ".join(f"{cid} ({r['scores'][cid].get('mAP50', 0):.3f})" for cid in r["kept"])
                 + (f"; cut {len(r['entered']) - len(r['kept'])}" if len(r["kept"]) < len(r["entered"]) else ""))
    st.chosen = st.rungs[-1]["kept"][0]
    assert st.timings is not None
    plan.log(f"shrink: chose {st.chosen} (validation mAP@0.5 {st.rungs[-1]['scores'][st.chosen].get('mAP50', 0):.3f}, "
             f"{st.timings.rows[st.chosen].speed_up:.2f}x the teacher's images/s untrained)")


def step_finish(plan: ShrinkPlan, st: SearchState) -> None:
    """The chosen candidate at the final schedule (and without the teacher, if asked), scored once on the
    test split (or validation, said so); its trained speed checked with the plan's timer; ``student.pt``."""
    from tqdm.auto import tqdm

    chosen = st.by_id()[st.chosen]
    evaluate_on = plan.test if plan.test is not None else plan.data.val
    roles = [("distilled", True)] + ([("baseline", False)] if plan.with_baseline else [])
    jobs = [(role, distil, seed) for role, distil in roles for seed in plan.inputs.final_seeds]
    runs: dict[str, list[dict[str, Any]]] = {role: [] for role, _ in roles}
    for role, distil, seed in tqdm(jobs, desc="shrink: final runs", unit="run", disable=not plan.progress):
        runs[role].append(_one_run(plan, chosen, distil, evaluate_on, plan.final_steps, seed,
                                   plan.out / "final" / f"{role}-seed{seed}"))
    st.final = {role: {"mean": _mean_metrics(rs), "per_seed": {str(r["seed"]): r["metrics"] for r in rs},
                       "split": evaluate_on.name, "split_role": plan.final_role, "steps": plan.final_steps}
                for role, rs in runs.items()}
    st.teacher_scores = {"final": _teacher_score(plan, evaluate_on), "val": _teacher_score(plan, plan.data.val)}
    best = plan.out / "final" / f"distilled-seed{plan.inputs.final_seeds[0]}"
    st.speed = _final_speed(plan, st, best)
    st.checkpoint = _copy_atomic(best / "last.pt", plan.out / "student.pt")


def step_report(plan: ShrinkPlan, st: SearchState) -> None:
    """``ShrinkResult``; ``candidates.csv``, ``summary.json``, ``shrink.html`` when the plan asks for them."""
    from .report import write_report

    assert st.timings is not None and st.checkpoint is not None
    tm = plan.teacher
    teacher_row = {"path": str(plan.inputs.teacher), "sha256": plan.teacher_sha,
                   "name": plan.teacher_ckpt["model_spec"]["name"], "params": sum(p.numel() for p in tm.parameters()),
                   "timing": st.timings.rows[TEACHER].as_dict(), "test": st.teacher_scores["final"],
                   "val": st.teacher_scores["val"]}
    inp = plan.inputs
    st.result = ShrinkResult(
        out_dir=plan.out, target=str(inp.target),
        target_value={"speed_up": inp.target.speed_up, "ms": inp.target.ms, "margin": inp.target.margin},
        threads=inp.threads, teacher=teacher_row, candidates=_table(st), shortlist=st.first_rung,
        chosen=st.chosen, validation={"split": plan.data.val.name, "images": len(plan.data.val),
                                      "holdout": plan.identity["data"]["holdout"] is not None},
        final=st.final, final_speed=st.speed, budget_steps=inp.budget_steps, final_steps=plan.final_steps,
        seeds=list(inp.seeds), final_seeds=list(inp.final_seeds), checkpoint=st.checkpoint, seconds=st.seconds,
        rungs=st.rungs, final_split_role=plan.final_role, timer=timer_name(plan.timer),
        scored_as=timer_name(plan.timer) if _scores_exported(plan) else "torch fp32")
    if plan.report:
        st.result.page = write_report(st.result)
    d = st.final["distilled"]
    plan.log(f"shrink: {st.chosen}: {plan.final_role} mAP@0.5 {d['mean'].get('mAP50', 0):.3f} ({d['split']}, "
             f"{st.result.scored_as}) at "
             f"{st.speed['speed_up']:.2f}x the teacher's images/s (trained, measured side by side); "
             f"page {st.result.page}")


STEPS: tuple[Callable[[ShrinkPlan, SearchState], None], ...] = (
    step_generate, step_time, step_rank, step_distil, step_finish, step_report)


# ---------------------------------------------------------------------------------------------- the runs
def _arch(c: Candidate) -> str:
    return c.id.rsplit("-", 1)[0]


def _run_config(plan: ShrinkPlan, cand: Candidate, init: Path | None, distil: bool, steps: int, seed: int,
                folder: Path) -> ExperimentConfig:
    rc = copy.deepcopy(plan.cfg)
    if init is not None:  # a low-rank student starts from the compressed teacher
        rc.model.name, rc.model.overrides = str(init), {}
    else:
        rc.model.name, rc.model.overrides = cand.entry, copy.deepcopy(cand.overrides)
    # Zoo students are other architectures than the config's: they start from scratch.
    rc.model.weights = rc.model.backbone_weights = None
    rc.teacher = str(plan.inputs.teacher) if distil else None
    rc.distill.teacher_cache = plan.teacher_cache if distil else None
    rc.data.test_split = None
    rc.train.max_steps, rc.train.seed, rc.train.eval_every = steps, seed, 0
    rc.train.checkpoint_every = max(1, min(100, steps // 4))
    rc.train.out_dir, rc.train.threads, rc.train.progress = str(folder), plan.inputs.threads, plan.progress
    rc.optim.warmup_steps = min(rc.optim.warmup_steps, max(1, steps // 5))
    if rc.optim.milestones:  # a multistep schedule written for the config's length, scaled to this one
        scale = steps / max(1, plan.cfg.train.max_steps)
        rc.optim.milestones = sorted({max(1, int(m * scale)) for m in rc.optim.milestones})
    return rc


def teacher_cache_dir(cfg: ExperimentConfig, out: Path, identity: dict[str, Any], log: Log) -> str | None:
    """The search's one teacher cache, shared by every distillation, in a folder named by what it holds (teacher,
    training images, augmentation, dtype); :func:`~detdistill.engine.run.teacher_cache_folder` decides whether
    there is one (``distill.teacher_cache`` set, or the augmentation cannot be enumerated)."""
    from ..engine.run import teacher_cache_folder

    key = [identity["teacher_sha256"], identity["data"]["train"], identity["data"]["holdout"],
           {k: v for k, v in config_key(cfg).items() if k.startswith("data.")}, cfg.distill.teacher_cache_dtype]
    return teacher_cache_folder(cfg, shared=out / "teacher_cache" / digest(key), log=log)


def _init_checkpoint(plan: ShrinkPlan, cand: Candidate) -> Path | None:
    """The compressed teacher a low-rank candidate trains from, written once (keyed by teacher and candidate)."""
    if cand.kind != "lowrank":
        return None
    from ..models import save_detector

    folder = plan.out / "init" / cand.id
    path = folder / "init.pt"
    if not claim(folder, {"teacher_sha256": plan.teacher_sha, "candidate": cand.as_dict()}, f"init/{cand.id}",
                 plan.log) or not path.is_file():
        model = build_candidate(cand, plan.teacher)
        save_detector(path, model, plan.teacher_ckpt["class_names"], plan.teacher_ckpt.get("category_ids"),
                      {"kind": "compress", "shrink_candidate": cand.id, "ratio": cand.lowrank_ratio})
    return path


def _one_run(plan: ShrinkPlan, cand: Candidate, distil: bool, eval_set: Any, steps: int, seed: int,
             folder: Path) -> dict[str, Any]:
    """Train (or resume, or reuse) one run keyed by its inputs and score its last checkpoint on ``eval_set``."""
    from ..models import load_detector

    split = "val" if eval_set is plan.data.val else "test"
    key = {"teacher_sha256": plan.teacher_sha if distil else None, "data": digest(plan.identity["data"]),
           "config": plan.identity["config"], "candidate": cand.as_dict(), "steps": steps, "seed": seed,
           "scored_on": split, "threads": plan.inputs.threads}
    if _scores_exported(plan):
        key["scored_as"] = timer_name(plan.timer)  # absent for torch: the keys of eager searches stay as they were
    done = _read_json(folder / "score.json")
    if claim(folder, key, str(folder.relative_to(plan.out)), plan.log) and isinstance(done, dict):
        return done
    init = _init_checkpoint(plan, cand)
    rc = _run_config(plan, cand, init, distil, steps, seed, folder)
    start = time.perf_counter()
    train_run(rc, Datasets(plan.data.train, None, None), distill=distil, log=_file_log(folder / "train.log"))
    seconds = time.perf_counter() - start
    model = load_detector(folder / "last.pt")
    metrics = _evaluate(model, eval_set, plan.inputs.threads)
    result = {"candidate": cand.id, "seed": seed, "steps": steps, "split": eval_set.name,
              "split_role": "validation" if split == "val" else "test", "metrics": metrics,
              "train_seconds": seconds, "distilled": distil}
    if _scores_exported(plan):  # ranked and reported as it ships; the eager score kept beside it
        result.update(metrics=plan.timer.evaluate(model, eval_set, plan.data.train, plan.inputs.threads),
                      metrics_torch_fp32=metrics, scored_as=timer_name(plan.timer))
    _write_json(result, folder / "score.json")
    return result


def _scores_exported(plan: ShrinkPlan) -> bool:
    """Whether the plan's runtime changes a model's score (int8), so candidates are scored as exported."""
    return bool(getattr(plan.timer, "scores_exported", False))


def _teacher_score(plan: ShrinkPlan, dataset: Any) -> dict[str, Any]:
    role = "validation" if dataset is plan.data.val else "test"
    folder = plan.out / "final" / f"teacher-{role}"
    done = _read_json(folder / "score.json")
    key = {"teacher_sha256": plan.teacher_sha, "data": digest(plan.identity["data"]), "split": role}
    if claim(folder, key, f"final/teacher-{role}", plan.log) and isinstance(done, dict):
        return done
    done = {"split": dataset.name, "split_role": role, "metrics": _evaluate(plan.teacher, dataset, plan.inputs.threads)}
    _write_json(done, folder / "score.json")
    return done


EAGER_TEACHER = f"{TEACHER} (torch fp32)"


def _final_speed(plan: ShrinkPlan, st: SearchState, run: Path) -> dict[str, Any]:
    """The trained student against the teacher, side by side with the plan's timer (once per student)."""
    from ..models import load_detector
    from ..models.timing import Latency

    folder = plan.out / "final" / "speed"
    n = min(plan.inputs.timing_images, len(plan.data.val))
    key = {"student": _read_json(run / "key.json"), "timer": timer_name(plan.timer), "images": n,
           "rounds": FINAL_SPEED_ROUNDS, "threads": plan.inputs.threads}
    done = _read_json(folder / "speed.json")
    if claim(folder, key, "final/speed", plan.log) and isinstance(done, dict):
        return done
    images = [plan.data.val.load_image(i) for i in range(n)] * FINAL_SPEED_ROUNDS
    models = {TEACHER: plan.teacher, st.chosen: load_detector(run / "last.pt")}
    exported = hasattr(plan.timer, "fmt")  # a deployment runtime: the teacher in torch fp32 runs beside it too
    if exported:
        models[EAGER_TEACHER] = plan.teacher
        secs = plan.timer(models, images, plan.inputs.threads, 2, None, eager=[EAGER_TEACHER])
    else:
        secs = plan.timer(models, images, plan.inputs.threads, 2, None)
    lat = {k: Latency.from_seconds(v) for k, v in secs.items()}
    t, s = lat[TEACHER], lat[st.chosen]
    lo, hi = speed_up_ci(secs[TEACHER], secs[st.chosen])
    speed = {"teacher_ms": t.median_ms, "student_ms": s.median_ms, "teacher_p10_p90_ms": [t.p10_ms, t.p90_ms],
             "student_p10_p90_ms": [s.p10_ms, s.p90_ms], "speed_up": t.median_ms / s.median_ms,
             "speed_up_ci95": [lo, hi], "images": n, "rounds": FINAL_SPEED_ROUNDS, "threads": plan.inputs.threads,
             "timer": timer_name(plan.timer),
             "meets_target": plan.inputs.target.met(t.median_ms / s.median_ms, s.median_ms)}
    if exported:
        speed.update(teacher_torch_fp32_ms=lat[EAGER_TEACHER].median_ms,
                     speed_up_over_teacher_torch_fp32=lat[EAGER_TEACHER].median_ms / s.median_ms)
    _write_json(speed, folder / "speed.json")
    return speed


def _mean_metrics(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in results[0]["metrics"] if all(k in r["metrics"] for r in results)]
    return {k: statistics.fmean(r["metrics"][k] for r in results) for k in keys}


def _copy_atomic(src: Path, dst: Path) -> Path:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def _table(st: SearchState) -> list[dict[str, Any]]:
    assert st.timings is not None
    reached = {cid: r for r in st.rungs for cid in r["entered"]}  # each candidate's last rung
    rows = []
    for c in st.candidates:
        t = st.timings.rows[c.id]
        last = reached.get(c.id)
        score = last["scores"].get(c.id, {}) if last else {}
        rows.append({"id": c.id, "kind": c.kind, "family": c.family, "entry": c.entry, "params": c.params,
                     "gflops": c.gflops, "compression": c.compression, "median_ms": t.median_ms, "p10_ms": t.p10_ms,
                     "p90_ms": t.p90_ms, "images_per_s": t.images_per_s, "speed_up": t.speed_up,
                     "feasible": c.id in st.admitted, "front": c.id in st.front,
                     "shortlisted": c.id in st.first_rung,
                     "last_rung": None if last is None else last["index"] + 1,
                     "last_rung_steps": None if last is None else last["steps"],
                     "val_mAP50": score.get("mAP50"), "val_AP": score.get("AP"),
                     "knobs": c.knobs, "overrides": c.overrides})
    return rows


# ---------------------------------------------------------------------------------------------- the search
def search(teacher: str | Path, config: ExperimentConfig | str | Path | None = None, *,
           out: str | Path, target_speedup: float | None = None, target_ms: float | None = None,
           threads: int = 1, budget_steps: int = 300, candidates: int = 8, finalists: int = 2,
           final_steps: int | None = None, target_margin: float = DEFAULT_TARGET_MARGIN, with_baseline: bool = False,
           seeds: int | Sequence[int] = 1, final_seeds: int | Sequence[int] | None = None,
           timing_images: int = 20, holdout_fraction: float = 0.2, holdout_seed: int = 0,
           families: Sequence[Family] = FAMILIES, lowrank_ratios: Sequence[float] = LOWRANK_RATIOS,
           tiers: Sequence[tuple[str, float, float]] = TEST_TIERS, timer: Timer = cpu_timer,
           progress: bool = True, report: bool = True, log: Log = print,
           hook: Callable[[str], None] = lambda step: None) -> ShrinkResult:
    """Find the most accurate distilled student of ``teacher`` that meets a speed target on this machine.

    Args:
        teacher: the trained teacher checkpoint.
        config: the ExperimentConfig (or a YAML path) whose data, optimiser, batch and distillation recipe
            every run uses; ``train.max_steps`` is the default ``final_steps``.
        out: the run folder; rerun the same call to resume (pieces whose inputs changed are recomputed, a
            folder holding a search of another teacher or other data is refused).
        target_speedup / target_ms: exactly one: at least X times the teacher's images/s, or at most M ms
            per image (batch 1, ``threads`` CPU threads, measured here). ``target_margin``: the share by
            which an untrained candidate must beat the target to be admitted (the final check has none).
        candidates, finalists, budget_steps: successive halving from ``candidates`` (spread over the
            families, nearest the target line first) to ``finalists`` trained ``budget_steps`` steps
            (:func:`~detdistill.shrink.halving.halving_schedule`).
        final_steps: steps of the chosen candidate's final runs (default ``config.train.max_steps``).
        with_baseline: also train the chosen candidate without the teacher (same seeds, same schedule).
        seeds / final_seeds: a count N (seeds 0..N-1) or the seeds; every candidate of a rung runs every seed.
        timing_images: validation images each model is timed on (after 2 warm-up images).
        timer: how a set of models is timed (:data:`~detdistill.shrink.timing.Timer`; default eager CPU).
        hook: called with each step's name as it starts.

    Raises:
        ShrinkInputError: a flag out of range, before anything is read or written.
        TargetUnreachable: no candidate meets the target (before any training), naming the fastest one.

    The choice is made on validation (the config's split, or a seeded hold-out of the training split when
    there is none or it overlaps training); the test split is scored once, by the final runs — without one,
    the final runs are scored on validation and every output says so.
    """
    inputs = check_inputs(teacher=teacher, out=out, target_speedup=target_speedup, target_ms=target_ms,
                          target_margin=target_margin, threads=threads, budget_steps=budget_steps,
                          candidates=candidates, finalists=finalists, final_steps=final_steps, seeds=seeds,
                          final_seeds=final_seeds, timing_images=timing_images, holdout_fraction=holdout_fraction,
                          holdout_seed=holdout_seed)
    start = time.perf_counter()
    plan = open_plan(config, inputs, families=families, lowrank_ratios=lowrank_ratios, tiers=tiers,
                     with_baseline=with_baseline, timer=timer, progress=progress, report=report, log=log, hook=hook)
    st = SearchState()
    for step in STEPS:
        plan.hook(step.__name__)
        t0 = time.perf_counter()
        if step is step_report:
            st.seconds["total"] = time.perf_counter() - start
        step(plan, st)
        st.seconds[step.__name__.removeprefix("step_")] = time.perf_counter() - t0
    assert st.result is not None
    return st.result
