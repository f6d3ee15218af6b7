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
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from .distill.terms import TermsConfig
from .errors import DetDistillError


class ConfigError(DetDistillError):
    """A config problem a user can fix; the message names the file, the key and the value."""


@dataclass
class DataConfig:
    source: str = "synthetic"
    """``synthetic``, ``synthetic:<preset>`` (easy/default/hard), or a path to COCO/VOC/YOLO/KITTI data."""
    format: Literal["coco", "voc", "yolo", "kitti", "synthetic"] | None = None
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
    on_bad_box: Literal["error", "skip"] = "error"
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
    optimizer: Literal["sgd", "adamw"] = "sgd"
    """``sgd`` (momentum, torchvision references' recipe) or ``adamw``."""
    lr: float = 0.02
    """Peak learning rate (after warm-up)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 1e-4
    """Weight decay."""
    scheduler: Literal["cosine", "multistep", "constant"] = "cosine"
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
    """Clip the global gradient norm to this value (> 0; None: no clipping)."""


@dataclass
class TrainConfig:
    max_steps: int = 600
    """Optimizer steps in the run (at least 1)."""
    batch_size: int = 4
    """Images per step (per process under DDP)."""
    seed: int = 0
    """Seeds every RNG (Python, NumPy, torch) and the data order."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms(True)`` (slower; some CUDA ops refuse)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
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
    """torch CPU threads (at least 1; None: torch's default)."""


@dataclass
class DistillConfig:
    """Which distillation terms are on (a recipe plus switches) and every term's knobs.

    ``DistillConfig()`` is the default recipe; ``DistillConfig(recipe="chen2017")`` the paper's objective
    (Chen et al. 2017) with the paper's defaults. The flat knobs below are the paper's terms' fields; the
    other terms' settings are sections of ``terms`` (``detdistill distill --list-terms`` lists them all).
    """

    recipe: str = "default"
    """Named set of terms: ``default`` (the recipe chosen on validation, BENCHMARKS.md), ``chen2017`` (the
    paper), ``objects``, ``none``; the switches below and ``terms.<name>.enabled`` add or remove terms."""
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
    rpn_soft: bool | None = None
    """Soft (teacher) cross-entropy on the RPN objectness (null: as the recipe says)."""
    rcn_soft: bool | None = None
    """Soft (teacher) cross-entropy on the RCN class scores (null: as the recipe says)."""
    rpn_bounded: bool | None = None
    """Teacher-bounded regression loss on RPN box deltas (null: as the recipe says)."""
    rcn_bounded: bool | None = None
    """Teacher-bounded regression loss on RCN box deltas (null: as the recipe says)."""
    hint: bool | None = None
    """Full-map hint loss with adaptation layer (null: as the recipe says)."""
    rpn_soft_anchors: str = "sampled"
    """RPN soft loss over the ``sampled`` anchors (the paper's normalisation) or ``all`` anchors."""
    terms: TermsConfig = field(default_factory=TermsConfig)
    """The other registered terms, one section each: ``distill.terms.<name>.enabled`` and their knobs."""
    init_from_teacher: bool = False
    """Copy every teacher weight whose name and shape the student shares before training (FGD's start for
    homogeneous pairs); the dry-run reports what was copied."""
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
        # YAML reads `null`/`~` as None; people also write Python's `None` (or `none`) and mean the same.
        if type(None) in args and (value is None or (isinstance(value, str) and value in ("None", "none"))):
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
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        choices = [str(a) for a in args]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{where}: unknown value {value!r}; {hint}choose one of {', '.join(choices)}")
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


# ---------------------------------------------------------------------------------------------- checks
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
# Builder keyword arguments that count pixels or boxes: a non-positive value crashes deep inside torchvision.
_POSITIVE_OVERRIDES = ("min_size", "max_size", "box_detections_per_img", "box_batch_size_per_image",
                       "rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                       "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test")
_UNIT_OVERRIDES = ("box_score_thresh", "box_nms_thresh", "rpn_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh",
                   "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "box_positive_fraction", "rpn_positive_fraction")


def _number_rules(cfg: ExperimentConfig) -> list[tuple[str, Any, str, Callable[[Any], bool]]]:
    """``(key, value, what is allowed, test)`` for every number of the data, optim and train sections."""
    d, o, t = cfg.data, cfg.optim, cfg.train

    def finite(v: Any) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    def positive(v: Any) -> bool:
        return finite(v) and v > 0

    def at_least(n: int) -> Callable[[Any], bool]:
        return lambda v: v is None or (isinstance(v, int) and v >= n)

    def unit(v: Any) -> bool:
        return finite(v) and 0.0 <= v <= 1.0

    return [
        ("data.num_train_images", d.num_train_images, "an integer >= 1 or null", at_least(1)),
        ("data.num_eval_images", d.num_eval_images, "an integer >= 1 or null", at_least(1)),
        ("data.dataset_seed", d.dataset_seed, "an integer >= 0", at_least(0)),
        ("data.num_workers", d.num_workers, "an integer >= 0", at_least(0)),
        ("data.hflip_prob", d.hflip_prob, "a probability in [0, 1]", unit),
        ("data.scale_jitter", d.scale_jitter, "null or [low, high] with 0 < low <= high",
         lambda v: v is None or (len(v) == 2 and all(positive(x) for x in v) and v[0] <= v[1])),
        ("optim.lr", o.lr, "a finite number > 0", positive),
        ("optim.momentum", o.momentum, "a number in [0, 1)", lambda v: finite(v) and 0.0 <= v < 1.0),
        ("optim.weight_decay", o.weight_decay, "a finite number >= 0", lambda v: finite(v) and v >= 0),
        ("optim.warmup_steps", o.warmup_steps, "an integer >= 0", at_least(0)),
        ("optim.warmup_factor", o.warmup_factor, "a number in [0, 1] (the starting fraction of optim.lr)", unit),
        ("optim.milestones", o.milestones, "increasing step numbers >= 1",
         lambda v: all(isinstance(m, int) and m >= 1 for m in v) and list(v) == sorted(set(v))),
        ("optim.lr_gamma", o.lr_gamma, "a finite number > 0", positive),
        ("optim.grad_clip_norm", o.grad_clip_norm, "a finite number > 0, or null for no clipping",
         lambda v: v is None or positive(v)),
        ("train.max_steps", t.max_steps, "an integer >= 1", at_least(1)),
        ("train.batch_size", t.batch_size, "an integer >= 1", at_least(1)),
        ("train.seed", t.seed, "an integer >= 0", at_least(0)),
        ("train.eval_every", t.eval_every, "an integer >= 0 (0: only at the end)", at_least(0)),
        ("train.checkpoint_every", t.checkpoint_every, "an integer >= 0", at_least(0)),
        ("train.log_every", t.log_every, "an integer >= 0", at_least(0)),
        ("train.threads", t.threads, "an integer >= 1, or null for torch's default", at_least(1)),
    ]


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Range-check every ``data.*``, ``optim.*``, ``train.*`` number and ``model.overrides`` size; returns ``cfg``.

    Called by :func:`load_config` and by the runs, so a wrong value stops before any data is read, naming the
    key. (``distill.*`` values are checked by the Distiller, which knows the models.)
    """
    for key, value, allowed, test in _number_rules(cfg):
        ok = False
        try:
            ok = bool(test(value))
        except TypeError:
            pass
        if not ok:
            raise ConfigError(f"'{key}': value {value!r} is out of range; expected {allowed}")
    device = cfg.train.device
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(f"'train.device': unknown value {device!r}; choose auto, cpu, cuda or cuda:N")
    for key in ("train.out_dir", "data.train_split", "data.source", "model.name", "train.best_metric"):
        section, name = key.split(".")
        if not str(getattr(getattr(cfg, section), name)).strip():
            raise ConfigError(f"'{key}': must not be empty")
    for name, value in cfg.model.overrides.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if name in _POSITIVE_OVERRIDES and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in values):
            raise ConfigError(f"'model.overrides.{name}': value {value!r} is out of range; expected a positive number")
        if name in _UNIT_OVERRIDES and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values):
            raise ConfigError(f"'model.overrides.{name}': value {value!r} is out of range; expected a number in [0, 1]")
    return cfg


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
        _apply(cfg, data, str(path))
    if overrides:
        _apply(cfg, parse_overrides(overrides), "command line")
    return validate_config(cfg)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    from .utils import atomic_write_text

    return atomic_write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), path)
