"""Typed configuration: dataclasses loaded from YAML plus ``section.key=value`` overrides.

Every field is documented where it is declared and has a default, so ``ExperimentConfig()`` is a complete,
runnable recipe (CPU-scale model on the synthetic data). Unknown keys are an error that suggests the
closest valid key; values are checked against the declared types.

Example:
    >>> cfg = load_config(None, ["train.max_steps=50", "distill.temperature=2"])
    >>> cfg.train.max_steps, cfg.distill.temperature
    (50, 2.0)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config problem a user can fix; the message names the file, the key and the value."""


@dataclass
class DataConfig:
    source: str = "synthetic"
    """``synthetic``, ``synthetic:<preset>`` (easy/default/hard), or a path to COCO/VOC/YOLO/KITTI data."""
    format: str | None = None
    """Source format (coco, voc, yolo, kitti); detected from the files when left out."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str | None = "val"
    """Split used for validation during training (None: no validation)."""
    test_split: str | None = "test"
    """Split used for the final evaluation (None: skip)."""
    num_train_images: int | None = None
    """Synthetic only: images in the train split (None: the generator's default, 1200)."""
    num_eval_images: int | None = None
    """Synthetic only: images in the val and test splits (None: 200)."""
    dataset_seed: int = 0
    """Synthetic only: the generator seed."""
    on_bad_box: str = "error"
    """What a reader does with an invalid box: ``error`` (stop, naming file/field/value) or ``skip`` (count)."""
    num_workers: int = 0
    """DataLoader worker processes (0: load in the main process)."""
    hflip_prob: float = 0.5
    """Probability of a horizontal flip during training."""
    photometric: bool = False
    """Colour jitter during training."""
    scale_jitter: list[float] | None = None
    """``[low, high]`` random rescale factors during training, or None."""


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
    optimizer: str = "sgd"
    """``sgd`` (momentum, torchvision references' recipe) or ``adamw``."""
    lr: float = 0.02
    """Peak learning rate (after warm-up)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 1e-4
    """Weight decay."""
    scheduler: str = "cosine"
    """``cosine`` decay to zero at max_steps, ``multistep`` (×lr_gamma at each milestone) or ``constant``."""
    warmup_steps: int = 50
    """Linear warm-up steps from ``warmup_factor × lr`` to ``lr``."""
    warmup_factor: float = 0.001
    """Starting fraction of the learning rate during warm-up."""
    milestones: list[int] = field(default_factory=list)
    """Steps at which ``multistep`` multiplies the learning rate by ``lr_gamma``."""
    lr_gamma: float = 0.1
    """Factor applied at each ``multistep`` milestone."""
    grad_clip_norm: float | None = 10.0
    """Clip the global gradient norm to this value (None: no clipping)."""


@dataclass
class TrainConfig:
    max_steps: int = 600
    """Optimizer steps in the run."""
    batch_size: int = 4
    """Images per step (per process under DDP)."""
    seed: int = 0
    """Seeds every RNG (Python, NumPy, torch) and the data order."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms(True)`` (slower; some CUDA ops refuse)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels_last memory format on CUDA (ignored on CPU)."""
    eval_every: int = 200
    """Validate every N steps and at the end (0: only at the end)."""
    checkpoint_every: int = 100
    """Write ``last.pt`` every N steps and at the end."""
    best_metric: str = "mAP50"
    """Validation metric that picks ``best.pt`` (higher is better; ``loss`` is lower-is-better)."""
    log_every: int = 10
    """Write a metrics line every N steps."""
    out_dir: str = "runs/train"
    """Run folder: checkpoints, metrics.jsonl, the resolved config, plots."""
    progress: bool = True
    """Show a progress bar."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""


@dataclass
class DistillConfig:
    """The paper's knobs (Chen et al. 2017), each with the paper's default."""

    mu: float = 0.5
    """μ: weight of the hard (ground-truth) loss in ``μ·L_hard + (1−μ)·L_soft`` (1 when soft is off)."""
    lambda_reg: float = 1.0
    """λ: weight of the regression loss against the classification loss in L_RPN and L_RCN."""
    nu: float = 0.5
    """ν: weight of the teacher-bounded regression loss L_b."""
    margin: float = 0.0
    """m: margin in the bound ``‖R_s−y‖² + m > ‖R_t−y‖²``."""
    gamma: float = 0.5
    """γ: weight of the hint loss."""
    background_weight: float = 1.5
    """w_0: class weight of background in the soft cross-entropy (other classes weigh 1)."""
    temperature: float = 1.0
    """T: softmax temperature of the soft targets (T = 1 works best for detection)."""
    hint_kind: str = "l2"
    """Hint distance: ``l2`` (mean squared) or ``l1`` (mean absolute)."""
    hint_levels: list[str] | None = None
    """Teacher hint layers: FPN level keys of the teacher, or None for every level paired by stride."""
    guided_levels: list[str] | None = None
    """Student guided layers, in the same order as ``hint_levels`` (None: paired by stride)."""
    adaptation: bool = True
    """Adaptation layer (1×1 conv) between guided and hint layers; off only when channels match."""
    adapter_init: str = "zero"
    """Adaptation layer initialisation (the paper does not say): ``zero`` (the student's features get no hint
    gradient until the adapter has learnt a projection) or ``kaiming`` (random; measured on the synthetic
    data, a random adapter made the hint cost the student mAP, see BENCHMARKS.md)."""
    rpn_soft: bool = True
    """Soft (teacher) cross-entropy on the RPN objectness."""
    rcn_soft: bool = True
    """Soft (teacher) cross-entropy on the RCN class scores."""
    rpn_bounded: bool = True
    """Teacher-bounded regression loss on RPN box deltas."""
    rcn_bounded: bool = True
    """Teacher-bounded regression loss on RCN box deltas."""
    hint: bool = True
    """Hint loss with adaptation layer."""
    rpn_soft_anchors: str = "sampled"
    """RPN soft loss over the ``sampled`` anchors (the paper's normalisation) or ``all`` anchors."""
    teacher_min_map: float = 0.3
    """Refuse a teacher whose validation mAP@0.5 is below this (see ``allow_weak_teacher``)."""
    allow_weak_teacher: bool = False
    """Go on with a teacher below ``teacher_min_map``."""
    teacher_eval_images: int = 64
    """Validation images scored to check the teacher before step 1."""
    teacher_cache: str | None = None
    """Folder of a teacher cache (the teacher's FPN levels and RPN outputs per training image and flip state,
    memory-mapped): built on first use, then read instead of running the teacher; refused on any mismatch of
    teacher file, transform, augmentation, dataset or dtype. None: run the teacher every step."""
    teacher_cache_dtype: str = "float16"
    """Storage dtype of the teacher cache: ``float16`` (half the disk; losses within ~1e-3) or ``float32``."""


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: str | None = None
    """Teacher checkpoint for ``detdistill distill``."""


# ---------------------------------------------------------------------------------------------- loading
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field), for ``--help`` and errors."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return docs
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def describe_fields(cls: type = ExperimentConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(dotted key, default, doc)`` for every leaf field, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    docs = _field_docs(cls)
    default = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe_fields(hints[f.name], key + "."))
        else:
            rows.append((key, getattr(default, f.name), docs.get(f.name, "")))
    return rows


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if annotation is Any:
        return value
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; people mean a number
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `hint_levels: [0, 1]` means FPN keys '0', '1'
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def _apply(obj: Any, data: dict[str, Any], where: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{dotted}'{_suggest(dotted, _all_keys(type(obj), prefix))}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{dotted}' must be a mapping, got {value!r}")
            _apply(getattr(obj, key), value, where, dotted + ".")
        else:
            setattr(obj, key, _coerce(value, annotation, f"{where}: '{dotted}'"))


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    return [k for k, _, _ in describe_fields(cls, prefix)] + [
        f"{prefix}{f.name}" for f in dataclasses.fields(cls) if dataclasses.is_dataclass(typing.get_type_hints(cls)[f.name])
    ]


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=0.1", "model.overrides={min_size: 448}"]`` → nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': cannot parse value ({exc})") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides."""
    cfg = ExperimentConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: malformed YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        _apply(cfg, data, str(path))
    if overrides:
        _apply(cfg, parse_overrides(overrides), "command line")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    from .utils import atomic_write_text

    return atomic_write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), path)
