"""Runs described by an :class:`~detdistill.config.ExperimentConfig`: ``train`` a detector, ``distill`` a student.

A run is one object (detectron2's ``DefaultTrainer`` split) whose steps say what they do: :class:`TrainRun`
opens its data (the config's splits, or a :data:`DatasetFactory`'s), builds the module, fits it with the
:class:`~detdistill.engine.trainer.Trainer` and tests the result, returning one :class:`RunSummary`;
:class:`DistillRun` adds a step that loads and checks the teacher (and opens its cache, the Distiller's teacher
source) and offers its pairing report as :meth:`DistillRun.dry_run_report`. The files a run writes are named
by :class:`~detdistill.engine.folder.RunFolder`; where its teacher cache lives, by :func:`teacher_cache_folder`.
``train_detector`` / ``distill_student`` / ``cache_teacher`` are the one-call forms the CLI and the study runner
use.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from ..config import ExperimentConfig, config_to_dict, flatten_config, save_config, validate_config
from ..data.base import DetectionDataset
from ..data.transforms import AugmentConfig, DetectionAugment
from ..data.validate import check_training_classes
from ..errors import CheckpointError, ConfigError, PairingError
from ..utils import atomic_write_text, file_sha256, seed_everything
from .distributed import DistContext, barrier, init_distributed
from .folder import RunFolder
from .trainer import RunSummary, Trainer

if TYPE_CHECKING:  # the cache module is imported where it is used: building one is optional
    from ..distill.teacher_cache import TeacherCache

Log = Callable[[str], None]

# Model kwargs a student inherits from its teacher's spec so the two pair (same input, anchors, normalisation).
PAIRING_KWARGS = ("min_size", "max_size", "image_mean", "image_std", "anchor_sizes", "aspect_ratios", "strides")


@dataclass
class Datasets:
    train: DetectionDataset
    val: DetectionDataset | None
    test: DetectionDataset | None
    prepared: Any = None  # data.prepare.PreparedData: the auto split and image check, recorded in the run folder


DatasetFactory = Callable[[ExperimentConfig], Datasets]
"""What opens a run's datasets from its config (default :func:`open_datasets`). A caller whose data the config
cannot name (a seeded hold-out of the training split, a labelled subset) gives its own; one the study runner
hands to spawned processes must pickle (a module-level function or a ``functools.partial`` of one)."""


def open_datasets(cfg: ExperimentConfig) -> Datasets:
    # data layer: layout, data.auto_split, and the pre-flight image check (data.on_bad_image), once
    from ..data.prepare import open_config_datasets

    prepared = open_config_datasets(cfg.data, progress=cfg.train.progress)
    check_training_classes(prepared.train)  # repeated class names would make one class two outputs
    return Datasets(prepared.train, prepared.val, prepared.test, prepared)


def open_unlabelled_for_run(cfg: ExperimentConfig, data: Datasets, log: Log = print,
                           distill: bool = True) -> tuple[DetectionDataset, dict[str, Any] | None]:
    """The training set of a run: ``data.train``, mixed with the images of ``data.unlabeled`` when set.

    Returns ``(train set, facts for the summary or None)``. The unlabelled set is refused when it shares an
    image (by file content) with the validation or test split, and without a teacher (``distill=False``).
    """
    spec = cfg.data.unlabeled
    if not spec:
        return data.train, None
    if not distill:
        raise ConfigError(f"data.unlabeled: value {spec!r} needs a teacher to learn from images without labels; "
                          "run `detdistill distill --teacher PATH`, or set data.unlabeled=null")
    from ..data.loader import mix_datasets, unlabelled_per_batch
    from ..data.unlabeled import open_unlabeled, refuse_overlap, split_spec

    d = cfg.data
    source = split_spec(spec)[0]
    kwargs: dict[str, Any] = {}
    if source.startswith("synthetic"):
        kwargs = {"seed": d.dataset_seed, **({"num_images": d.num_eval_images} if d.num_eval_images else {})}
    unlabelled = open_unlabeled(spec, format=d.format if source == d.source else None, progress=cfg.train.progress,
                                on_bad_image=d.on_bad_image, **kwargs)
    refuse_overlap(unlabelled, {"data.val_split": data.val, "data.test_split": data.test}, progress=cfg.train.progress)
    ratio = d.unlabeled_ratio
    per_batch = unlabelled_per_batch(cfg.train.batch_size, ratio)
    info = {"source": str(spec), "images": len(unlabelled), "skipped": unlabelled.skips.to_dict()["counts"],
            "ratio": ratio, "per_batch": per_batch, "labelled_per_batch": cfg.train.batch_size - per_batch,
            "pseudo_label_score": cfg.distill.pseudo_label_score}
    log(f"unlabelled images: {len(unlabelled)} from {spec}"
        + (f" ({unlabelled.skips.total} unreadable files left out)" if unlabelled.skips else "")
        + f"; {per_batch} of every {cfg.train.batch_size} images in a batch")
    return mix_datasets(data.train, unlabelled, ratio), info


def _is_checkpoint(name: str) -> bool:
    from ..models.weights import is_file_path

    return is_file_path(name)


def build_model(cfg: ExperimentConfig, num_classes: int, inherit: dict[str, Any] | None = None) -> nn.Module:
    """The configured detector: a registry name built fresh, or a checkpoint path loaded to continue from."""
    from ..models import build_detector, load_detector

    m = cfg.model
    # Initial weights (and what is built right after: a Distiller's adaptation layers) follow train.seed alone,
    # not whatever consumed the RNG before (datasets, a teacher check, earlier cells of an ablation): a baseline
    # and a distilled student with one seed start equal, and two identical commands agree from step 1.
    seed_everything(cfg.train.seed)
    if _is_checkpoint(m.name):
        model = load_detector(m.name)
        got = model.roi_heads.box_predictor.cls_score.out_features
        if got != num_classes:
            raise ConfigError(f"model.name: checkpoint {m.name} scores {got} classes (background included), the "
                              f"dataset has {num_classes}")
        return model
    overrides = {**(inherit or {}), **m.overrides}
    return build_detector(m.name, num_classes, weights=m.weights, backbone_weights=m.backbone_weights, **overrides)


def augmentation(cfg: ExperimentConfig) -> DetectionAugment:
    d = cfg.data
    jitter = tuple(d.scale_jitter) if d.scale_jitter else None
    return DetectionAugment(AugmentConfig(hflip_prob=d.hflip_prob, photometric=d.photometric,
                                          scale_jitter=jitter))  # type: ignore[arg-type]


def make_evaluate_fn(dataset: DetectionDataset | None, batch_size: int = 8) -> Callable[[nn.Module], dict] | None:
    if dataset is None:
        return None
    from ..eval.inference import evaluate_model

    def evaluate(module: nn.Module) -> dict[str, float]:
        return dict(evaluate_model(module, dataset, batch_size=batch_size).metrics)

    return evaluate


def _dataset_info(ds: DetectionDataset) -> dict[str, Any]:
    return {"name": ds.name, "images": len(ds), "class_names": list(ds.class_names)}


def _headline(metrics: dict[str, float]) -> str:
    keys = [k for k in ("mAP50", "AP", "AP75", "APs") if k in metrics]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)


# Keys a resumed run may change: they steer how long it runs, what it logs and where it computes, not what
# the checkpoint's optimizer state, schedule and data order were built from.
RESUMABLE_KEYS = frozenset({
    "train.max_steps", "train.eval_every", "train.checkpoint_every", "train.log_every", "train.progress",
    "train.device", "train.threads", "train.out_dir", "data.num_workers", "data.test_split",
    "teacher", "distill.teacher_min_map", "distill.allow_weak_teacher", "distill.teacher_eval_images",
    # the cache only replaces the live teacher; its manifest hash is checked on resume (open_teacher_cache)
    "distill.teacher_cache", "distill.teacher_cache_dtype"})


# What a run writes at the top of its folder (``--overwrite`` removes them before a fresh start).
RUN_OUTPUTS = RunFolder.OUTPUTS


def prepare_run_folder(cfg: ExperimentConfig, resume: bool, overwrite: bool = False,
                       log: Log = print) -> dict[str, Any]:
    """Check ``train.out_dir`` before anything is read or written; the resumed checkpoint's metadata ({} if none).

    A new run refuses a folder that already holds files (a second run would silently replace the first)
    unless ``overwrite``. ``resume`` continues from ``last.pt`` and refuses config values that differ from
    the checkpoint's except :data:`RESUMABLE_KEYS`; without ``last.pt`` it says that it starts fresh.
    """
    folder = RunFolder(cfg.train.out_dir)
    out = folder.path
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.out_dir: {out} is a file, not a folder; choose another run folder (--out DIR)")
    last = folder.last
    if resume:
        if not last.is_file():
            log(f"note: --resume: {out} has no last.pt yet; starting the run from step 0")
            return {}
        from ..models import read_checkpoint

        metadata = read_checkpoint(last)["metadata"]
        before = metadata.get("config")
        if not isinstance(before, dict):
            return metadata
        old, new = flatten_config(before), flatten_config(config_to_dict(cfg))
        changed = [k for k in new if k in old and old[k] != new[k] and k not in RESUMABLE_KEYS]
        if changed:
            diffs = ", ".join(f"{k}: {old[k]!r} in the run, {new[k]!r} now" for k in changed)
            raise ConfigError(f"--resume: {last} was trained with other settings ({diffs}); a resumed run keeps "
                              f"what its checkpoint was built with. Drop those overrides, or start a new run "
                              f"folder (--out DIR). Resuming may change: {', '.join(sorted(RESUMABLE_KEYS))}")
        return metadata
    if folder.holds_files():
        if not overwrite:
            held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
            raise ConfigError(f"train.out_dir: {out} already holds a run ({held}); continue it with --resume, "
                              f"replace it with --overwrite, or choose another folder with --out DIR")
        # A fresh run must not leave the old run's best.pt or summary beside its own, as if they were its.
        folder.clear_outputs()
    return {}


def _quiet(_line: str) -> None:
    return None


def _process_group_active() -> bool:
    import torch.distributed as torch_dist

    return torch_dist.is_available() and torch_dist.is_initialized()


def _finish(summary: RunSummary, model: nn.Module, test: DetectionDataset | None, log: Log, dist: DistContext,
            extra_models: dict[str, nn.Module] | None = None) -> RunSummary:
    """Score the final model (and any extra ones, e.g. the teacher) on the test split; write the summary.

    Under ``torchrun`` every rank enters the evaluation (it shards the images and gathers the detections, a
    collective every rank must join, or rank 0 would wait for ever); only the main process stores, prints and
    writes ``summary.json``. Without a process group (a rank told apart by ``dist`` alone) only the main
    process scores: the others hold the same weights and would repeat its work."""
    if test is not None and (dist.is_main or _process_group_active()):
        from ..eval.inference import evaluate_model

        models = {"model": model, **(extra_models or {})}
        scores = {name: dict(evaluate_model(m, test, batch_size=8).metrics) for name, m in models.items()}
        if dist.is_main:
            summary.extra["test"] = scores
            for name, metrics in scores.items():
                log(f"test ({test.name}, {len(test)} images) {name}: {_headline(metrics)}")
    if dist.is_main:
        atomic_write_text(json.dumps(summary.to_dict(), indent=2), RunFolder(summary.out_dir).summary)
    return summary


class TrainRun:
    """One training run of ``cfg``, in steps named for what they do: :meth:`prepare_folder`, :meth:`open_data`,
    :meth:`load_and_check_teacher` (a distillation's), :meth:`build_module`, :meth:`build_trainer`, :meth:`fit`,
    :meth:`test`; :meth:`run` does them in order and returns the :class:`RunSummary`.

    ``overwrite=False`` (the CLI's default too) refuses a run folder that already holds files unless
    ``resume``. ``datasets``: the run's :data:`DatasetFactory` (default: :func:`open_datasets`, the config's
    splits). Subclasses change what is trained (:class:`DistillRun`) by overriding the steps.

    Example::

        summary = TrainRun(load_config("configs/bccd_teacher.yaml")).run()
    """

    kind = "train"
    progress_label = "train"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The steps were renamed; an override of an old name would never be called, so the run would silently
        # do the default instead. Refuse it where the subclass is written.
        old = {"build_datasets": "pass datasets=<a DatasetFactory>, or override open_data",
               "build_model": "override build_module", "setup": "override load_and_check_teacher"}
        for name, instead in old.items():
            if name in cls.__dict__:
                raise TypeError(f"{cls.__qualname__}.{name}: the run step is gone; {instead}")

    def __init__(self, cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, log: Log = print,
                 dist: DistContext | None = None, datasets: DatasetFactory | None = None) -> None:
        validate_config(cfg)
        self.cfg, self.resume, self.overwrite = cfg, resume, overwrite
        self.dataset_factory: DatasetFactory = datasets or open_datasets
        self.dist = dist or init_distributed(cfg.train.device)
        self.log = log if self.dist.is_main else _quiet  # the other torchrun ranks would repeat every line
        self.folder = RunFolder(cfg.train.out_dir)
        self.previous_metadata: dict[str, Any] = {}
        self.data: Datasets | None = None
        self.train_set: DetectionDataset | None = None
        """What the Trainer reads: ``data.train``, or it mixed with ``data.unlabeled`` (a distillation)."""
        self.unlabelled_info: dict[str, Any] | None = None
        self.run_info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------ the steps
    def prepare_folder(self) -> None:
        self.previous_metadata = prepare_run_folder(self.cfg, self.resume, self.overwrite, self.log)

    def open_data(self) -> Datasets:
        """The run's datasets (its factory's) and the training set the Trainer reads."""
        self.data = self.dataset_factory(self.cfg)
        open_unlabelled_for_run(self.cfg, self.data, self.log, distill=False)  # refused: no teacher to learn from
        self.train_set = self.data.train
        return self.data

    def load_and_check_teacher(self) -> None:
        """A distillation's teacher (:class:`DistillRun`); a plain training run has none."""

    def build_module(self) -> nn.Module:
        """The module the Trainer trains (here the detector itself)."""
        assert self.data is not None
        return build_model(self.cfg, self.data.train.num_classes)

    def exported(self, module: nn.Module) -> nn.Module:
        """The detector a checkpoint holds, out of the trained module."""
        return module

    def metadata(self) -> dict[str, Any]:
        assert self.data is not None
        return {"kind": self.kind, "config": config_to_dict(self.cfg), "dataset": _dataset_info(self.data.train)}

    def build_trainer(self, module: nn.Module) -> Trainer:
        from ..models import checkpoint_payload

        assert self.data is not None and self.train_set is not None  # both set by open_data
        data, meta = self.data, self.metadata()
        return Trainer(
            module, self.train_set, self.cfg.optim, self.cfg.train, transforms=augmentation(self.cfg),
            evaluate_fn=make_evaluate_fn(data.val), num_workers=self.cfg.data.num_workers, dist=self.dist,
            export_fn=lambda m: checkpoint_payload(self.exported(m), data.train.class_names,
                                                   data.train.category_ids, meta),
            run_info=self.run_info, progress_label=self.progress_label, write_summary=False)

    def write_records(self) -> None:
        """What the main process writes before step 1, once every check has passed: a config that ran."""
        save_config(self.cfg, self.folder.config)
        if self.data is not None and self.data.prepared is not None:
            self.data.prepared.write_records(self.folder.path)

    def fit(self, trainer: Trainer) -> RunSummary:
        return trainer.fit(resume=self.resume)

    def test_models(self, module: nn.Module) -> dict[str, nn.Module]:
        """The models scored on the test split after training, by name (``model`` first)."""
        return {"model": self.exported(module)}

    def test(self, summary: RunSummary, module: nn.Module) -> RunSummary:
        assert self.data is not None
        models = self.test_models(module)
        model = models.pop("model")
        return _finish(summary, model, self.data.test, self.log, self.dist, extra_models=models)

    def run(self) -> RunSummary:
        """Check the folder, open the data, load and check the teacher, build, fit, test; ``summary.json`` (the
        run's done marker) is written once, last."""
        self.prepare_folder()
        self.open_data()
        self.load_and_check_teacher()
        module = self.build_module()
        trainer = self.build_trainer(module)
        if self.dist.is_main:
            self.write_records()
        summary = self.fit(trainer)
        return self.test(summary, trainer.module)


# ------------------------------------------------------------------------------------------ distillation
def load_teacher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher detector and its checkpoint dict, from one read of the file."""
    from ..models import read_checkpoint
    from ..models.checkpoint import detector_from_checkpoint

    ckpt = read_checkpoint(path)
    return detector_from_checkpoint(ckpt, path), ckpt


def teacher_pairing_kwargs(teacher_ckpt: dict[str, Any]) -> dict[str, Any]:
    kwargs = teacher_ckpt["model_spec"].get("kwargs", {})
    return {k: copy.deepcopy(v) for k, v in kwargs.items() if k in PAIRING_KWARGS}


def check_teacher(teacher: nn.Module, cfg: ExperimentConfig, val: DetectionDataset | None, log: Log) -> float | None:
    """Score the teacher on validation images; refuse one below ``distill.teacher_min_map``."""
    if val is None:
        log("teacher check skipped: no validation split")
        return None
    from ..eval.inference import evaluate_model

    n = min(len(val), cfg.distill.teacher_eval_images)
    subset = copy.copy(val)
    subset.records = val.records[:n]
    score = float(evaluate_model(teacher, subset, batch_size=8).metrics["mAP50"])
    floor = cfg.distill.teacher_min_map
    log(f"teacher mAP@0.5 on {n} validation images: {score:.3f} (floor {floor}; --teacher-eval-images N sets how "
        "many images this check scores)")
    if score < floor and not cfg.distill.allow_weak_teacher:
        raise ConfigError(f"{cfg.teacher}: teacher mAP@0.5 {score:.3f} on {n} validation images is below "
                          f"distill.teacher_min_map={floor}; a weak teacher teaches its mistakes. Train it longer, "
                          "or go on with --allow-weak-teacher")
    return score


def rank_barrier(dist: DistContext | None) -> Callable[[], None] | None:
    """What waits for every rank of a distributed run (None outside one): handed to code below the engine."""
    if dist is None or not dist.distributed:
        return None
    return lambda: barrier(dist)


def teacher_cache_folder(cfg: ExperimentConfig, shared: str | Path | None = None, log: Log = print) -> str | None:
    """Where the teacher cache of a run of ``cfg`` lives (None: the teacher runs live); the one place that decides.

    ``distill.teacher_cache`` when set. Otherwise ``shared``, a folder a caller running many distillations of one
    teacher on one training set offers (a search's, a study's), when the augmentation can be enumerated (else a
    note says why each run runs its teacher live); without ``shared``, None.
    """
    if cfg.distill.teacher_cache:
        return cfg.distill.teacher_cache
    if shared is None:
        return None
    from ..distill.teacher_cache import TeacherCacheError, flip_states

    try:
        flip_states(augmentation(cfg).config)
    except TeacherCacheError as exc:
        log(f"no teacher cache ({exc}); each run runs the teacher live")
        return None
    return str(shared)


def open_teacher_cache(cfg: ExperimentConfig, teacher: nn.Module, dataset: DetectionDataset, augment: Any,
                       teacher_sha256: str, previous_metadata: dict[str, Any] | None = None, log: Log = print,
                       dist: DistContext | None = None) -> TeacherCache:
    """``distill.teacher_cache`` opened (built first if absent) for a run: the run policy around the cache.

    The cache is not part of a checkpoint; its manifest hash is. A resumed run refuses a cache whose manifest
    differs from the one the run started with.
    """
    import torch

    from ..distill.teacher_cache import TeacherCacheError, open_or_build

    device = dist.device if dist is not None else torch.device("cpu")
    teacher.to(device)
    cache = open_or_build(teacher_cache_folder(cfg), teacher, cfg.teacher, dataset, augment,
                          cfg.distill.teacher_cache_dtype, teacher_sha256=teacher_sha256,
                          batch_size=cfg.train.batch_size, progress=cfg.train.progress, log=log,
                          is_main=dist is None or dist.is_main, barrier=rank_barrier(dist), device=device)
    before = (previous_metadata or {}).get("teacher_cache", {}).get("manifest_sha256")
    if previous_metadata and before is None:
        log("teacher cache: the run being resumed ran its teacher live; from here on it reads the cache")
    elif before is not None and before != cache.sha256:
        raise TeacherCacheError(f"{cache.dir}: the teacher cache's manifest changed since this run started (SHA-256 "
                                f"{cache.sha256[:12]}… ≠ {before[:12]}…); resuming would mix two caches. Restore "
                                "the old cache or start a new run folder")
    return cache


class DistillRun(TrainRun):
    """A :class:`TrainRun` that trains a :class:`~detdistill.distill.Distiller` (student + frozen teacher).

    :meth:`load_and_check_teacher` reads the teacher file once, checks its classes against the data, its
    SHA-256 against a resumed run's, its validation score against ``distill.teacher_min_map``, and opens the
    teacher cache when the run has one (:func:`teacher_cache_folder`): the Distiller's
    :class:`~detdistill.distill.teacher.TeacherSource`. :meth:`build_module` builds the student to pair with
    the teacher and the Distiller joining them. The teacher is scored on the test split beside the student.
    :meth:`dry_run_report` returns the pairing report and the term plan without touching the run folder.
    """

    kind = "distill"
    progress_label = "distill"

    def __init__(self, cfg: ExperimentConfig, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.teacher: nn.Module | None = None
        self.teacher_checkpoint: dict[str, Any] = {}
        self.teacher_sha256 = ""
        self.teacher_val_score: float | None = None
        self.teacher_source: Any = None  # None: the live teacher; else the TeacherCache
        self.distiller: Any = None  # a distill.Distiller (imported where it is used)

    @property
    def adapter_params(self) -> int:
        """Parameters of the adaptation layers (trained with the student, not exported)."""
        return sum(p.numel() for p in self.distiller.adapters.parameters())

    def open_data(self) -> Datasets:
        """The datasets, and the training set mixed with ``data.unlabeled`` when set."""
        if not self.cfg.teacher:  # before any data is read: the likelier mistake, and the cheaper check
            raise ConfigError("teacher: no teacher checkpoint given (--teacher PATH or teacher=PATH)")
        self.data = self.dataset_factory(self.cfg)
        self.train_set, self.unlabelled_info = open_unlabelled_for_run(self.cfg, self.data, self.log)
        return self.data

    def load_and_check_teacher(self, check: bool = True) -> None:
        """Read the teacher (once) and check its classes; with ``check`` (not in a dry run) also its file
        against a resumed run's, its validation score, and open its cache."""
        cfg = self.cfg
        assert self.data is not None and self.train_set is not None and cfg.teacher  # set by open_data
        self.teacher, self.teacher_checkpoint = load_teacher(cfg.teacher)
        names = self.teacher_checkpoint["class_names"]
        if list(names) != list(self.data.train.class_names):
            raise PairingError(f"{cfg.teacher}: the teacher's classes {names} differ from the dataset's "
                               f"{self.data.train.class_names}")
        self.teacher_sha256 = file_sha256(cfg.teacher)
        if not check:
            return
        previous = self.previous_metadata.get("teacher", {}).get("sha256")
        if previous and previous != self.teacher_sha256:
            raise CheckpointError(f"{cfg.teacher}: the teacher file changed since this run started (SHA-256 "
                                  f"{self.teacher_sha256[:12]}… ≠ {previous[:12]}…); resuming would mix two "
                                  "teachers. Start a new run folder")
        self.teacher_val_score = check_teacher(self.teacher, cfg, self.data.val, self.log)
        self.run_info = {"teacher_val_mAP50": self.teacher_val_score}
        folder = teacher_cache_folder(cfg)
        if folder:
            self.teacher_source = open_teacher_cache(cfg, self.teacher, self.train_set, augmentation(cfg).config,
                                                     self.teacher_sha256, self.previous_metadata, log=self.log,
                                                     dist=self.dist)
            self.run_info["teacher_cache"] = {"dir": str(folder), "manifest_sha256": self.teacher_source.sha256}
        elif self.previous_metadata.get("teacher_cache"):
            self.log("teacher cache: the run being resumed read a teacher cache; from here on its teacher runs live")

    def build_module(self) -> nn.Module:
        """The student, built to pair with the teacher, and the Distiller joining the two."""
        from ..distill.distiller import Distiller

        assert self.data is not None and self.teacher is not None  # set by open_data, load_and_check_teacher
        student = build_model(self.cfg, self.data.train.num_classes,
                              inherit=teacher_pairing_kwargs(self.teacher_checkpoint))
        self.distiller = Distiller(self.teacher, student, self.cfg.distill, teacher_source=self.teacher_source)
        if self.unlabelled_info is not None:
            plan = self.distiller.plan
            self.run_info["unlabeled"] = {**self.unlabelled_info, "terms": [
                n for n, on in plan.terms.items() if on and n not in plan.labelled_only]}
        return self.distiller

    def dry_run_report(self) -> str:
        """The pairing report, the term plan and the adaptation layers' size; nothing is written."""
        from ..models import describe_pairing

        self.open_data()
        self.load_and_check_teacher(check=False)
        distiller = self.build_module()
        size = (int(distiller.student.transform.min_size[-1]),) * 2
        report = f"{describe_pairing(self.teacher, distiller.student, size)}\n{distiller.plan}"
        if self.unlabelled_info is not None:
            report += "\n" + "\n".join(distiller.plan.unlabelled_lines(self.unlabelled_info["images"],
                                                                      self.unlabelled_info["pseudo_label_score"]))
        return report + f"\nadaptation parameters: {self.adapter_params} (trained with the student, not exported)"

    def exported(self, module: nn.Module) -> nn.Module:
        return module.student

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(),
                "teacher": {"path": str(self.cfg.teacher), "sha256": self.teacher_sha256,
                            "val_mAP50": self.teacher_val_score,
                            "model_spec": self.teacher_checkpoint["model_spec"]},
                "distill": dataclasses.asdict(self.cfg.distill)}

    def write_records(self) -> None:
        super().write_records()
        atomic_write_text(f"{self.distiller.plan}\nadaptation parameters: {self.adapter_params}\n", self.folder.plan)

    def test_models(self, module: nn.Module) -> dict[str, nn.Module]:
        assert self.teacher is not None
        return {"model": module.student, "teacher": self.teacher}


# ------------------------------------------------------------------------------------ one-call forms
def train_detector(cfg: ExperimentConfig, resume: bool = False, log: Log = print,
                   dist: DistContext | None = None, overwrite: bool = False,
                   datasets: DatasetFactory | None = None) -> RunSummary:
    """Train ``cfg.model`` on ``cfg.data``; checkpoints, metrics and the summary go to ``cfg.train.out_dir``.

    ``overwrite=False`` (the default, as in the CLI) refuses a run folder that already holds files unless
    ``resume``. ``datasets``: the run's :data:`DatasetFactory` (default: the config's splits). The same as
    ``TrainRun(cfg, ...).run()``.
    """
    return TrainRun(cfg, resume=resume, overwrite=overwrite, log=log, dist=dist, datasets=datasets).run()


def distill_student(cfg: ExperimentConfig, resume: bool = False, log: Log = print,
                    dist: DistContext | None = None, overwrite: bool = False,
                    datasets: DatasetFactory | None = None) -> RunSummary:
    """Distil ``cfg.teacher`` into ``cfg.model`` on ``cfg.data``; the same as ``DistillRun(cfg, ...).run()``.

    ``overwrite=False`` (the default, as in the CLI) refuses a run folder that already holds files unless
    ``resume``. ``datasets``: the run's :data:`DatasetFactory`. The pairing report without training:
    :func:`dry_run_report`.
    """
    return DistillRun(cfg, resume=resume, overwrite=overwrite, log=log, dist=dist, datasets=datasets).run()


def dry_run_report(cfg: ExperimentConfig, log: Log = print) -> str:
    """``detdistill distill --dry-run``: the pairing report and the term plan of ``cfg``; writes nothing."""
    return DistillRun(cfg, log=log).dry_run_report()


def cache_teacher(cfg: ExperimentConfig, out: str | Path | None = None, log: Log = print,
                  datasets: DatasetFactory | None = None) -> TeacherCache:
    """``detdistill cache-teacher``: build (or check) the cache of ``cfg.teacher`` on ``cfg.data``'s train split
    (or the training set of ``datasets``, the runs' :data:`DatasetFactory`).

    ``cfg`` is not changed (the cache covers the training split only, so a copy drops the others)."""
    from ..distill.teacher_cache import MANIFEST, TeacherCacheError, open_or_build

    if not cfg.teacher:
        raise TeacherCacheError("teacher: no teacher checkpoint given (--teacher PATH or teacher=PATH)")
    folder = out or teacher_cache_folder(cfg)
    if not folder:
        raise TeacherCacheError("--out: no cache folder given (--out DIR or distill.teacher_cache=DIR)")
    cfg = copy.deepcopy(cfg)
    cfg.data.val_split = cfg.data.test_split = None
    data = (datasets or open_datasets)(cfg)
    train_set, _ = open_unlabelled_for_run(cfg, data, log)  # the cache covers the unlabelled images too
    teacher, _ = load_teacher(cfg.teacher)
    existed = (Path(folder) / MANIFEST).is_file()
    cache = open_or_build(folder, teacher, cfg.teacher, train_set, augmentation(cfg).config,
                          cfg.distill.teacher_cache_dtype, batch_size=cfg.train.batch_size,
                          progress=cfg.train.progress, log=log)
    if existed:
        log(f"teacher cache: {folder} was already built and matches this teacher, transform and dataset")
    return cache
