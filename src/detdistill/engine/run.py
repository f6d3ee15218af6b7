"""Runs described by an :class:`~detdistill.config.ExperimentConfig`: ``train`` a detector, ``distill`` a student.

These wire the library together (datasets → models → Trainer → evaluation) so that the CLI stays a thin
layer and Python users get the same runs with one call.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from ..config import ConfigError, ExperimentConfig, config_to_dict, save_config, validate_config
from ..data.base import DatasetError, DetectionDataset
from ..data.transforms import AugmentConfig, DetectionAugment
from ..utils import atomic_write_text, file_sha256, seed_everything
from .distributed import DistContext, init_distributed
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


def open_datasets(cfg: ExperimentConfig) -> Datasets:
    from ..data.open import open_dataset

    d = cfg.data

    def one(split: str | None, num: int | None) -> DetectionDataset | None:
        if split is None:
            return None
        kwargs: dict[str, Any] = {}
        if d.source.startswith("synthetic"):
            kwargs = {"seed": d.dataset_seed}
            if num is not None:
                kwargs["num_images"] = num
        return open_dataset(d.source, split=split, format=d.format, on_bad_box=d.on_bad_box, **kwargs)

    def opened(key: str, split: str | None, num: int | None) -> DetectionDataset | None:
        try:
            return one(split, num)
        except DatasetError as exc:
            # The reader names the file; the run must also name the config key that chose the split.
            if split is None or key == "data.train_split" or f"data.{key}" in str(exc):
                raise
            raise DatasetError(f"{exc} [set by {key}={split}; choose another split, or {key}=null to skip it]") \
                from exc

    train = opened("data.train_split", d.train_split, d.num_train_images)
    assert train is not None
    return Datasets(train, opened("data.val_split", d.val_split, d.num_eval_images),
                    opened("data.test_split", d.test_split, d.num_eval_images))


def _is_checkpoint(name: str) -> bool:
    from ..models.weights import is_file_path

    return is_file_path(name)


def build_model(cfg: ExperimentConfig, num_classes: int, inherit: dict[str, Any] | None = None) -> nn.Module:
    """The configured detector: a registry name built fresh, or a checkpoint path loaded to continue from."""
    from ..models import build_detector, load_detector

    m = cfg.model
    if _is_checkpoint(m.name):
        model = load_detector(m.name)
        got = model.roi_heads.box_predictor.cls_score.out_features
        if got != num_classes:
            raise ValueError(f"model.name: checkpoint {m.name} scores {got} classes (background included), the "
                             f"dataset has {num_classes}")
        return model
    overrides = {**(inherit or {}), **m.overrides}
    # Initial weights follow train.seed alone, not whatever consumed the RNG before (datasets, a teacher
    # check, earlier cells of an ablation): a baseline and a distilled student with one seed start equal.
    seed_everything(cfg.train.seed)
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
    # the cache only replaces the live teacher; its manifest hash is checked on resume (distill/teacher_cache.py)
    "distill.teacher_cache", "distill.teacher_cache_dtype"})


# What a run writes at the top of its folder (``--overwrite`` removes them before a fresh start).
RUN_OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "summary.json", "loss_curves.png", "config.yaml")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "overrides":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def prepare_run_folder(cfg: ExperimentConfig, resume: bool, overwrite: bool = False, log: Log = print) -> None:
    """Check ``train.out_dir`` before anything is read or written.

    A new run refuses a folder that already holds files (a second run would silently replace the first)
    unless ``overwrite``. ``resume`` continues from ``last.pt`` and refuses config values that differ from
    the checkpoint's except :data:`RESUMABLE_KEYS`; without ``last.pt`` it says that it starts fresh.
    """
    out = Path(cfg.train.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.out_dir: {out} is a file, not a folder; choose another run folder (--out DIR)")
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            log(f"note: --resume: {out} has no last.pt yet; starting the run from step 0")
            return
        from ..models import read_checkpoint

        before = read_checkpoint(last)["metadata"].get("config")
        if not isinstance(before, dict):
            return
        old, new = _flatten(before), _flatten(config_to_dict(cfg))
        changed = [k for k in new if k in old and old[k] != new[k] and k not in RESUMABLE_KEYS]
        if changed:
            diffs = ", ".join(f"{k}: {old[k]!r} in the run, {new[k]!r} now" for k in changed)
            raise ConfigError(f"--resume: {last} was trained with other settings ({diffs}); a resumed run keeps "
                              f"what its checkpoint was built with. Drop those overrides, or start a new run "
                              f"folder (--out DIR). Resuming may change: {', '.join(sorted(RESUMABLE_KEYS))}")
        return
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
            raise ConfigError(f"train.out_dir: {out} already holds a run ({held}); continue it with --resume, "
                              f"replace it with --overwrite, or choose another folder with --out DIR")
        # A fresh run must not leave the old run's best.pt or summary beside its own, as if they were its.
        for name in RUN_OUTPUTS:
            (out / name).unlink(missing_ok=True)


def train_detector(cfg: ExperimentConfig, resume: bool = False, log: Log = print,
                   dist: DistContext | None = None, overwrite: bool = True, data: Datasets | None = None) -> RunSummary:
    """Train ``cfg.model`` on ``cfg.data``; checkpoints, metrics and the summary go to ``cfg.train.out_dir``.

    ``overwrite=False`` (the CLI's default) refuses a run folder that already holds files unless ``resume``.
    ``data`` replaces the datasets ``cfg.data`` opens (e.g. ``shrink``'s hold-out split of the training set).
    """
    from ..models import checkpoint_payload

    validate_config(cfg)
    dist = dist or init_distributed(cfg.train.device)
    prepare_run_folder(cfg, resume, overwrite, log if dist.is_main else (lambda m: None))
    data = data or open_datasets(cfg)
    model = build_model(cfg, data.train.num_classes)
    out = Path(cfg.train.out_dir)
    meta = {"kind": "train", "config": config_to_dict(cfg), "dataset": _dataset_info(data.train)}
    trainer = Trainer(
        model, data.train, cfg.optim, cfg.train, transforms=augmentation(cfg),
        evaluate_fn=make_evaluate_fn(data.val), num_workers=cfg.data.num_workers, dist=dist,
        export_fn=lambda m: checkpoint_payload(m, data.train.class_names, data.train.category_ids, meta))
    if dist.is_main:  # only once every check before step 1 has passed: config.yaml is a config that ran
        save_config(cfg, out / "config.yaml")
    summary = trainer.fit(resume=resume)
    return _finish(summary, trainer.module, data.test, log, dist)


def _finish(summary: RunSummary, model: nn.Module, test: DetectionDataset | None, log: Log, dist: DistContext,
            extra_models: dict[str, nn.Module] | None = None) -> RunSummary:
    """Score the final model (and any extra ones, e.g. the teacher) on the test split; rewrite the summary.

    Only the main process scores: the other data-parallel ranks hold the same weights (DDP), so they would
    repeat the work and print the same line again."""
    if test is not None and dist.is_main:
        from ..eval.inference import evaluate_model

        models = {"model": model, **(extra_models or {})}
        scores = {name: dict(evaluate_model(m, test, batch_size=8).metrics) for name, m in models.items()}
        summary.extra["test"] = scores
        for name, metrics in scores.items():
            log(f"test ({test.name}, {len(test)} images) {name}: {_headline(metrics)}")
    if dist.is_main:
        atomic_write_text(json.dumps(summary.to_dict(), indent=2), Path(summary.out_dir) / "summary.json")
    return summary


# ------------------------------------------------------------------------------------------ distillation
def load_teacher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    from ..models import load_detector, read_checkpoint

    ckpt = read_checkpoint(path)
    return load_detector(path), ckpt


def teacher_pairing_kwargs(teacher_ckpt: dict[str, Any]) -> dict[str, Any]:
    kwargs = teacher_ckpt["model_spec"].get("kwargs", {})
    return {k: copy.deepcopy(v) for k, v in kwargs.items() if k in PAIRING_KWARGS}


def prepare_distillation(cfg: ExperimentConfig, data: Datasets | None = None, log: Log = print):  # noqa: ANN201
    """Teacher, student and Distiller for ``cfg`` with every check that must pass before step 1."""
    from ..distill.distiller import Distiller, PairingError

    if not cfg.teacher:
        raise ValueError("teacher: no teacher checkpoint given (--teacher PATH or teacher=PATH)")
    data = data or open_datasets(cfg)
    teacher, ckpt = load_teacher(cfg.teacher)
    if list(ckpt["class_names"]) != list(data.train.class_names):
        raise PairingError(f"{cfg.teacher}: the teacher's classes {ckpt['class_names']} differ from the dataset's "
                           f"{data.train.class_names}")
    student = build_model(cfg, data.train.num_classes, inherit=teacher_pairing_kwargs(ckpt))
    distiller = Distiller(teacher, student, cfg.distill)
    return data, teacher, ckpt, student, distiller


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
        raise ValueError(f"{cfg.teacher}: teacher mAP@0.5 {score:.3f} on {n} validation images is below "
                         f"distill.teacher_min_map={floor}; a weak teacher teaches its mistakes. Train it longer, "
                         "or go on with --allow-weak-teacher")
    return score


def distill_student(cfg: ExperimentConfig, resume: bool = False, dry_run: bool = False, log: Log = print,
                    dist: DistContext | None = None, overwrite: bool = True,
                    data: Datasets | None = None) -> RunSummary | str:
    """Distil ``cfg.teacher`` into ``cfg.model`` on ``cfg.data``. ``dry_run`` returns the pairing report.

    ``overwrite=False`` (the CLI's default) refuses a run folder that already holds files unless ``resume``.
    ``data`` replaces the datasets ``cfg.data`` opens (e.g. ``shrink``'s hold-out split of the training set).
    """
    from ..models import checkpoint_payload, describe_pairing

    validate_config(cfg)
    dist = dist or init_distributed(cfg.train.device)
    if not dry_run:
        prepare_run_folder(cfg, resume, overwrite, log if dist.is_main else (lambda m: None))
    data, teacher, ckpt, student, distiller = prepare_distillation(cfg, data, log=log)
    size = (int(student.transform.min_size[-1]),) * 2
    if dry_run:
        report = f"{describe_pairing(teacher, student, size)}\n{distiller.plan}"
        adapters = sum(p.numel() for p in distiller.adapters.parameters())
        return report + f"\nadaptation parameters: {adapters} (trained with the student, not exported)"
    out = Path(cfg.train.out_dir)
    sha = file_sha256(cfg.teacher)
    previous_meta: dict[str, Any] = {}
    if resume and (out / "last.pt").is_file():
        from ..models import read_checkpoint

        previous_meta = read_checkpoint(out / "last.pt")["metadata"]
        previous = previous_meta.get("teacher", {}).get("sha256")
        if previous and previous != sha:
            raise ValueError(f"{cfg.teacher}: the teacher file changed since this run started (SHA-256 {sha[:12]}… "
                             f"≠ {previous[:12]}…); resuming would mix two teachers. Start a new run folder")
    teacher_score = check_teacher(teacher, cfg, data.val, log)
    run_info: dict[str, Any] = {"teacher_val_mAP50": teacher_score}
    if cfg.distill.teacher_cache:
        from ..distill.teacher_cache import open_for_run

        distiller.teacher_cache = open_for_run(cfg, teacher, data.train, augmentation(cfg).config, sha,
                                               previous_meta, log=log, dist=dist)
        run_info["teacher_cache"] = {"dir": str(cfg.distill.teacher_cache),
                                     "manifest_sha256": distiller.teacher_cache.sha256}
    elif previous_meta.get("teacher_cache"):
        log("teacher cache: the run being resumed read a teacher cache; from here on its teacher runs live")
    meta = {"kind": "distill", "config": config_to_dict(cfg), "dataset": _dataset_info(data.train),
            "teacher": {"path": str(cfg.teacher), "sha256": sha, "val_mAP50": teacher_score,
                        "model_spec": ckpt["model_spec"]},
            "distill": dataclasses.asdict(cfg.distill)}
    trainer = Trainer(
        distiller, data.train, cfg.optim, cfg.train, transforms=augmentation(cfg),
        evaluate_fn=make_evaluate_fn(data.val), num_workers=cfg.data.num_workers, dist=dist,
        export_fn=lambda d: checkpoint_payload(d.student, data.train.class_names, data.train.category_ids, meta),
        run_info=run_info, progress_label="distill")
    if dist.is_main:  # only once every check before step 1 has passed: config.yaml is a config that ran
        save_config(cfg, out / "config.yaml")
    summary = trainer.fit(resume=resume)
    return _finish(summary, distiller.student, data.test, log, dist, extra_models={"teacher": teacher})


def cache_teacher(cfg: ExperimentConfig, out: str | Path | None = None, log: Log = print) -> TeacherCache:
    """``detdistill cache-teacher``: build (or check) the cache of ``cfg.teacher`` on ``cfg.data``'s train split."""
    from ..distill.teacher_cache import MANIFEST, TeacherCacheError, open_or_build

    if not cfg.teacher:
        raise TeacherCacheError("teacher: no teacher checkpoint given (--teacher PATH or teacher=PATH)")
    folder = out or cfg.distill.teacher_cache
    if not folder:
        raise TeacherCacheError("--out: no cache folder given (--out DIR or distill.teacher_cache=DIR)")
    cfg.data.val_split = cfg.data.test_split = None  # the cache covers the training split only
    data = open_datasets(cfg)
    teacher, _ = load_teacher(cfg.teacher)
    existed = (Path(folder) / MANIFEST).is_file()
    cache = open_or_build(folder, teacher, cfg.teacher, data.train, augmentation(cfg).config,
                          cfg.distill.teacher_cache_dtype, batch_size=cfg.train.batch_size,
                          progress=cfg.train.progress, log=log)
    if existed:
        log(f"teacher cache: {folder} was already built and matches this teacher, transform and dataset")
    return cache
