"""The experiment schema: the sections of a run and their rules, loaded from YAML plus ``key=value`` overrides.

Every field is documented where it is declared and has a default, so ``ExperimentConfig()`` is a complete,
runnable recipe (CPU-scale model on the synthetic data). Unknown keys are an error that suggests the closest
valid key; values are checked against the declared types and ranges (one place: :func:`validate_config`).
The machinery (coercion, overrides, field docs, ranges) is :mod:`detdistill.typed_config`; the distillation
section is declared beside its code, :mod:`detdistill.distill.config`.

Example:
    >>> cfg = load_config(None, ["train.max_steps=50", "distill.temperature=2"])
    >>> cfg.train.max_steps, cfg.distill.temperature
    (50, 2.0)
    >>> load_config(None, ["distill.terms.pkd.weight=-1"])
    Traceback (most recent call last):
    ...
    detdistill.errors.ConfigError: 'distill.terms.pkd.weight': value -1.0 is out of range; expected a finite number >= 0.0
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from . import typed_config
from .distill.config import DistillConfig
from .errors import ConfigError
from .typed_config import Allowed, Annotated, apply_mapping, at_least, check_ranges, in_range, parse_overrides, positive

__all__ = ["ConfigError", "DataConfig", "DistillConfig", "ExperimentConfig", "ModelConfig", "OptimConfig",
           "TrainConfig", "config_to_dict", "describe_fields", "flatten_config", "load_config", "parse_overrides", "save_config",
           "validate_config"]

SEED = at_least(0, below=2**32, text="an integer in [0, 2**32) (NumPy's seed range)")
COUNT_OR_NULL = at_least(1, optional=True)
CLIP = Allowed(lambda v: v is None or (math.isfinite(v) and v > 0), "a finite number > 0, or null for no clipping")


def _jitter(v: Any) -> bool:
    return v is None or (len(v) == 2 and all(math.isfinite(x) and x > 0 for x in v) and v[0] <= v[1])


def _fractions(v: Any) -> bool:
    return v is None or (len(v) == 3 and all(math.isfinite(x) and x >= 0 for x in v) and v[0] > 0
                         and abs(sum(v) - 1.0) <= 1e-6)


def _milestones(v: Any) -> bool:
    return all(isinstance(m, int) and m >= 1 for m in v) and list(v) == sorted(set(v))


@dataclass
class DataConfig:
    source: str = "synthetic"
    """``synthetic``, ``synthetic:<preset>`` (easy/default/hard), or a path to COCO/VOC/YOLO/KITTI data."""
    format: Literal["coco", "voc", "yolo", "kitti", "csv", "synthetic"] | None = None
    """Source format (coco, voc, yolo, kitti, csv: TensorFlow's filename,width,height,class,xmin,ymin,xmax,ymax);
    detected from the files when left out."""
    annotations_dir: str | None = None
    """VOC: the folder of XML files, relative to ``source`` (None: found; any name, or beside the images)."""
    images_dir: str | None = None
    """VOC: the folder of images, relative to ``source`` (None: found from the XML files' ``<filename>``)."""
    auto_split: Annotated[list[float] | None, Allowed(_fractions, "null or [train, val, test] fractions >= 0 "
                                                                 "summing to 1 with train > 0, e.g. [0.8, 0.1, 0.1]")] = None
    """Split the data for you: ``[train, val, test]`` fractions of every image of ``source``; the parts are the
    splits ``train``, ``val``, ``test`` (seeded, stratified by class, stable for the same files; written to
    ``<run>/splits/``). None: use the source's own splits."""
    auto_split_seed: Annotated[int, SEED] = 0
    """Seed of ``auto_split`` (another seed, another split)."""
    on_bad_image: Literal["error", "skip", "repair"] = "repair"
    """Images checked before step 1 (cached): ``repair`` decodes truncated files as far as they go and leaves out
    undecodable ones, ``skip`` leaves out both, ``error`` stops naming every bad file. All are counted and logged."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str | None = "val"
    """Split used for validation during training (None: no validation)."""
    test_split: str | None = "test"
    """Split used for the final evaluation (None: skip)."""
    num_train_images: Annotated[int | None, COUNT_OR_NULL] = None
    """Synthetic only: images in the train split (None: the generator's default, 1200)."""
    num_eval_images: Annotated[int | None, COUNT_OR_NULL] = None
    """Synthetic only: images in the val and test splits (None: 200)."""
    dataset_seed: Annotated[int, SEED] = 0
    """Synthetic only: the generator seed."""
    on_bad_box: Literal["error", "skip"] = "error"
    """What a reader does with an invalid box: ``error`` (stop, naming file/field/value) or ``skip`` (count)."""
    num_workers: Annotated[int, at_least(0)] = 0
    """DataLoader worker processes (0: load in the main process)."""
    hflip_prob: Annotated[float, in_range(0.0, 1.0, text="a probability in [0, 1]")] = 0.5
    """Probability of a horizontal flip during training."""
    photometric: bool = False
    """Colour jitter during training."""
    scale_jitter: Annotated[list[float] | None, Allowed(_jitter, "null or [low, high] with 0 < low <= high")] = None
    """``[low, high]`` random rescale factors during training, or None."""
    unlabeled: str | None = None
    """Images without labels the teacher teaches on: a folder of images, or ``SOURCE:SPLIT`` of any supported
    dataset (its labels are ignored). Only the teacher-driven terms see them (``detdistill distill --list-terms``);
    refused when they overlap the validation or test split. None: labelled images only."""
    unlabeled_ratio: Annotated[float, in_range(0.0, 1.0, high_open=True)] = 0.5
    """Share of each training batch drawn from ``unlabeled`` (in [0, 1); ignored without ``unlabeled``)."""


@dataclass
class ModelConfig:
    name: str = "cpu_small"
    """Registry name of the detector (``detdistill models`` lists them), or a checkpoint path to start from."""
    weights: str | None = None
    """Whole-detector weights: None, ``DEFAULT``/an enum name (torchvision entries) or a local state dict."""
    backbone_weights: str | None = None
    """Backbone weights: None or a local state dict (``detdistill weights fetch`` gets ImageNet MobileNetV2)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the builder (min_size, max_size, anchor_sizes, box_batch_size_per_image...)."""


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    """``sgd`` (momentum, torchvision references' recipe) or ``adamw``."""
    lr: Annotated[float, positive()] = 0.02
    """Peak learning rate (after warm-up)."""
    momentum: Annotated[float, in_range(0.0, 1.0, high_open=True)] = 0.9
    """SGD momentum."""
    weight_decay: Annotated[float, at_least(0.0, integer=False)] = 1e-4
    """Weight decay."""
    scheduler: Literal["cosine", "multistep", "constant"] = "cosine"
    """``cosine`` decay to zero at max_steps, ``multistep`` (×lr_gamma at each milestone) or ``constant``."""
    warmup_steps: Annotated[int, at_least(0)] = 50
    """Linear warm-up steps from ``warmup_factor × lr`` to ``lr``."""
    warmup_factor: Annotated[float, in_range(0.0, 1.0, text="a number in [0, 1] (the starting fraction of optim.lr)")] = 0.001
    """Starting fraction of the learning rate during warm-up."""
    milestones: Annotated[list[int], Allowed(_milestones, "increasing step numbers >= 1")] = field(default_factory=list)
    """Steps at which ``multistep`` multiplies the learning rate by ``lr_gamma``."""
    lr_gamma: Annotated[float, positive()] = 0.1
    """Factor applied at each ``multistep`` milestone."""
    grad_clip_norm: Annotated[float | None, CLIP] = 10.0
    """Clip the global gradient norm to this value (> 0; None: no clipping)."""


@dataclass
class TrainConfig:
    max_steps: Annotated[int, at_least(1)] = 600
    """Optimizer steps in the run (at least 1)."""
    batch_size: Annotated[int, at_least(1)] = 4
    """Images per step (per process under DDP)."""
    seed: Annotated[int, SEED] = 0
    """Seeds every RNG (Python, NumPy, torch) and the data order."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms(True)`` (slower; some CUDA ops refuse)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels_last memory format on CUDA (ignored on CPU)."""
    eval_every: Annotated[int, at_least(0, text="an integer >= 0 (0: only at the end)")] = 200
    """Validate every N steps and at the end (0: only at the end)."""
    checkpoint_every: Annotated[int, at_least(0)] = 100
    """Write ``last.pt`` every N steps and at the end."""
    best_metric: str = "mAP50"
    """Validation metric that picks ``best.pt`` (higher is better; ``loss`` is lower-is-better)."""
    log_every: Annotated[int, at_least(0)] = 10
    """Write a metrics line every N steps."""
    out_dir: str = "runs/train"
    """Run folder: checkpoints, metrics.jsonl, the resolved config, plots."""
    progress: bool = True
    """Show a progress bar."""
    threads: Annotated[int | None, at_least(1, optional=True, text="an integer >= 1, or null for torch's default")] = None
    """torch CPU threads (at least 1; None: torch's default)."""


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: str | None = None
    """Teacher checkpoint for ``detdistill distill``."""


def describe_fields(cls: type | None = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(dotted key, default, doc)`` for every leaf field of ``cls`` (default: the whole experiment schema)."""
    return typed_config.describe_fields(ExperimentConfig if cls is None else cls, prefix)


# ---------------------------------------------------------------------------------------------- checks
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
# Builder keyword arguments that count pixels or boxes: a non-positive value crashes deep inside torchvision.
_POSITIVE_OVERRIDES = ("min_size", "max_size", "anchor_sizes", "aspect_ratios", "box_detections_per_img", "box_batch_size_per_image",
                       "rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                       "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test")
_UNIT_OVERRIDES = ("box_score_thresh", "box_nms_thresh", "rpn_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh",
                   "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "box_positive_fraction", "rpn_positive_fraction")


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check every declared range (``distill.*`` and the term sections included), the device, the non-empty
    names and the ``model.overrides`` sizes; returns ``cfg``.

    Called by :func:`load_config` and by the runs, so a wrong value stops before any data is read, naming the
    key and the allowed range.
    """
    check_ranges(cfg)
    device = cfg.train.device
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(f"'train.device': unknown value {device!r}; choose auto, cpu, cuda or cuda:N")
    for key in ("train.out_dir", "data.train_split", "data.source", "model.name", "train.best_metric"):
        section, name = key.split(".")
        if not str(getattr(getattr(cfg, section), name)).strip():
            raise ConfigError(f"'{key}': must not be empty")
    for name, value in cfg.model.overrides.items():
        values = list(_leaves(value))
        if name in _POSITIVE_OVERRIDES and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in values):
            raise ConfigError(f"'model.overrides.{name}': value {value!r} is out of range; expected a positive number")
        if name in _UNIT_OVERRIDES and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values):
            raise ConfigError(f"'model.overrides.{name}': value {value!r} is out of range; expected a number in [0, 1]")
    return cfg


def _leaves(value: Any) -> Any:
    """The numbers of a possibly nested override (``anchor_sizes: [[16, 32], [64, 128]]``)."""
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def read_config_text(path: Path) -> str:
    from .utils import read_utf8_text

    return read_utf8_text(path, "config file", ConfigError)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides; then :func:`validate_config`."""
    cfg = ExperimentConfig()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(read_config_text(path)) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: malformed YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        apply_mapping(cfg, data, str(path))
    if overrides:
        apply_mapping(cfg, parse_overrides(overrides), "command line")
    return validate_config(cfg)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config dict as ``{dotted key: value}`` (``model.overrides`` stays one value), for comparing two runs.

    >>> flatten_config({"train": {"seed": 1}, "model": {"overrides": {"min_size": 448}}})
    {'train.seed': 1, 'model.overrides': {'min_size': 448}}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "overrides":
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    from .utils import atomic_write_text

    return atomic_write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), path)
