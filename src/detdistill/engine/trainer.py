"""The Trainer: trains any ``nn.Module`` whose training forward returns ``dict[str, Tensor]`` of losses.

A plain torchvision detector and a :class:`~detdistill.distill.Distiller` are both such modules, so
distillation reuses this loop unchanged. The loop owns: optimizer and LR schedule, gradient clipping, AMP
and channels_last on CUDA, DDP, validation with a best checkpoint, atomic checkpoints that resume exactly
(weights, optimizer, scheduler, RNG, data position), NaN/Inf detection per loss term, progress, JSONL
metrics, TensorBoard when installed, and a loss-curve PNG.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..config import OptimConfig, TrainConfig
from ..data.base import DetectionDataset, Transform
from ..data.loader import build_loader
from ..utils import atomic_torch_save, atomic_write_text, seed_everything
from .checkpoint import BEST, LAST, capture_rng_state, load_training_checkpoint, restore_rng_state
from .distributed import DistContext, barrier, reduce_mean
from ..errors import CheckpointError, ConfigError, DetDistillError

EvaluateFn = Callable[[nn.Module], dict[str, float]]
ExportFn = Callable[[nn.Module], dict[str, Any]]


class NonFiniteLossError(DetDistillError, RuntimeError):
    """A loss term or the gradient norm became NaN or Inf; the message names the step, the term (for the
    gradient, the largest loss term) and the last good checkpoint. Also a ``RuntimeError``, as it was."""


@dataclass
class RunSummary:
    out_dir: str
    steps: int
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_metric: str | None
    best_value: float | None
    best_step: int | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"optim.optimizer: unknown value {cfg.optimizer!r}; choose 'sgd' or 'adamw'")


def lr_factor(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up, then cosine / multi-step / constant."""
    if step < cfg.warmup_steps:
        alpha = step / max(1, cfg.warmup_steps)
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.scheduler == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if cfg.scheduler == "multistep":
        return cfg.lr_gamma ** sum(step >= m for m in cfg.milestones)
    if cfg.scheduler == "constant":
        return 1.0
    raise ConfigError(f"optim.scheduler: unknown value {cfg.scheduler!r}; choose cosine, multistep or constant")


class Trainer:
    """Train ``module`` on ``dataset``.

    Args:
        module: training forward ``module(images, targets) -> dict[str, Tensor]`` (summed into the loss).
        dataset: the training :class:`DetectionDataset`.
        optim: optimizer and schedule settings.
        train: loop settings (steps, batch, seed, validation/checkpoint cadence, run folder).
        transforms: training augmentation.
        evaluate_fn: ``evaluate_fn(module) -> metrics`` for validation (called on every rank; it gathers).
        export_fn: ``export_fn(module) -> checkpoint payload`` (the model zoo's detector checkpoint dict).
            Default: ``{"state_dict": module.state_dict()}``.
        num_workers: DataLoader workers.
        dist: the distributed context (``init_distributed``); single process by default.
        run_info: JSON-able facts stored in every checkpoint's metadata and the summary.
        progress_label: the progress bar's label (``train``, ``distill``).
        write_summary: write ``summary.json`` at the end of :meth:`fit` (a run object that tests the model
            afterwards writes it itself, once, when the run is done).

    Example::

        trainer = Trainer(model, SyntheticShapes("train"), OptimConfig(), TrainConfig(max_steps=100))
        summary = trainer.fit()
    """

    def __init__(
        self,
        module: nn.Module,
        dataset: DetectionDataset,
        optim: OptimConfig,
        train: TrainConfig,
        *,
        transforms: Transform | None = None,
        evaluate_fn: EvaluateFn | None = None,
        export_fn: ExportFn | None = None,
        num_workers: int = 0,
        dist: DistContext | None = None,
        run_info: dict[str, Any] | None = None,
        progress_label: str = "train",
        write_summary: bool = True,
    ) -> None:
        self.optim_cfg, self.cfg = optim, train
        self.dist = dist or DistContext(device=_default_device(train.device))
        self.device = self.dist.device
        self.out_dir = Path(train.out_dir)
        self.evaluate_fn = evaluate_fn
        self.export_fn = export_fn or (lambda m: {"state_dict": m.state_dict()})
        self.run_info = dict(run_info or {})
        self.progress_label = progress_label
        self.write_summary = write_summary
        if train.threads:
            torch.set_num_threads(train.threads)
        if train.deterministic:
            torch.use_deterministic_algorithms(True)
        seed_everything(train.seed + self.dist.rank)

        self.use_amp = train.amp and self.device.type == "cuda"
        self.module = module.to(self.device)
        if train.channels_last and self.device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("Trainer: the module has no trainable parameters")
        self.params = params
        self.optimizer = build_optimizer(params, optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, optim, train.max_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.wrapped: nn.Module = self.module
        if self.dist.distributed:
            # Frozen parts (a teacher) hold no trainable parameters, so no find_unused_parameters is needed.
            self.wrapped = DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.loader = build_loader(
            dataset, train.batch_size, train=True, transforms=transforms, seed=train.seed,
            num_workers=num_workers, num_replicas=self.dist.world_size, rank=self.dist.rank)
        self.dataset_size = len(dataset)
        if self.loader.batch_sampler.batches_per_epoch() == 0:
            # Training drops the last partial batch (torchvision's references do too), so this epoch would be
            # empty and the loop would spin forever looking for a batch.
            per_rank = math.ceil(self.dataset_size / self.dist.world_size)
            where = f" ({per_rank} per process over {self.dist.world_size} processes)" if self.dist.distributed else ""
            raise ConfigError(f"train.batch_size: value {train.batch_size} is larger than the training set "
                              f"({self.dataset_size} images{where}); an epoch would have no full batch. Set "
                              f"train.batch_size <= {per_rank}")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.last_metrics: dict[str, float] = {}
        self._final_validated = False
        self._last_saved_step = 0
        self._tb = None

    # ----------------------------------------------------------------------------------- checkpoints
    def _payload(self) -> dict[str, Any]:
        payload = dict(self.export_fn(self.module))
        payload.setdefault("metadata", {})
        payload["metadata"] = {**payload["metadata"], **self.run_info, "step": self.step}
        module_state = self.module.state_dict()
        exported = payload.get("state_dict", {})
        same = set(module_state) == set(exported)
        payload["training_state"] = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "dataset_size": self.dataset_size,
            "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "module_state": None if same else module_state,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "final_validated": self._final_validated,
            "last_metrics": dict(self.last_metrics),
        }
        return payload

    def _non_finite_weights(self) -> list[str]:
        return [name for name, t in self.module.state_dict().items()
                if t.is_floating_point() and not bool(torch.isfinite(t).all())]

    def _last_good(self) -> str:
        last = self.out_dir / LAST
        return f"{last} (step {self._last_saved_step})" if last.is_file() else "none written yet"

    def save(self, name: str = LAST, payload: dict[str, Any] | None = None) -> Path | None:
        bad = self._non_finite_weights()
        if bad:
            # A checkpoint of NaN weights is no checkpoint: keep the previous good one untouched.
            raise NonFiniteLossError(
                f"{len(bad)} weight tensors hold NaN or Inf after step {self.step} (e.g. '{bad[0]}'); {name} was "
                f"not written. The last good checkpoint is {self._last_good()}. Lower optim.lr or set "
                "optim.grad_clip_norm")
        if not self.dist.is_main:
            return None
        return atomic_torch_save(payload or self._payload(), self.out_dir / name)

    def resume(self, path: str | Path) -> None:
        ckpt = load_training_checkpoint(path)
        state = ckpt["training_state"]
        if state["dataset_size"] != self.dataset_size:
            raise CheckpointError(f"{path}: checkpoint was trained on {state['dataset_size']} images, the dataset now "
                                  f"has {self.dataset_size}; cannot resume the data position")
        if state.get("world_size", 1) != self.dist.world_size:
            raise CheckpointError(f"{path}: checkpoint was written with world size {state.get('world_size')}, "
                                  f"this run has {self.dist.world_size}")
        self.module.load_state_dict(state["module_state"] if state["module_state"] is not None else ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self._final_validated = bool(state.get("final_validated", False)) and self.step >= self.cfg.max_steps
        self.last_metrics = dict(state.get("last_metrics") or {})
        if self.dist.world_size == 1:
            restore_rng_state(state["rng"])
        self._truncate_metrics()

    def _remove_stale_temp_files(self) -> None:
        """Delete ``.last.pt.*.tmp`` / ``.best.pt.*.tmp`` that a kill mid-write left (never a finished file)."""
        for name in (LAST, BEST):
            for tmp in self.out_dir.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------- logging
    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tb.add_scalar(key, value, record["step"])

    def _truncate_metrics(self) -> None:
        """On resume, forget lines logged after the checkpoint (they will be logged again)."""
        path = self.out_dir / "metrics.jsonl"
        if not self.dist.is_main or not path.is_file():
            return
        keep = []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                # A kill mid-write tears the last line; it is logged again after resuming.
                print(f"note: {path}: line {n} is not a complete metrics record (a write cut short); dropped it")
                continue
            if step <= self.step:
                keep.append(line)
        atomic_write_text("".join(line + "\n" for line in keep), path)

    def _open_tensorboard(self) -> None:
        if not self.dist.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    # ----------------------------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        if self.evaluate_fn is None:
            return {}
        was_training = self.module.training
        metrics = self.evaluate_fn(self.module)
        self.module.train(was_training)
        self.last_metrics = dict(metrics)
        self._log({"step": self.step, "kind": "val", **{f"val/{k}": v for k, v in metrics.items()}})
        key = self.cfg.best_metric
        if key in metrics and math.isfinite(metrics[key]):
            value = metrics[key]
            better = self.best_value is None or (value < self.best_value if key == "loss" else value > self.best_value)
            if better:
                self.best_value, self.best_step = value, self.step
                self.save(BEST)
        return metrics

    # -------------------------------------------------------------------------------------- the loop
    def _to_device(self, images: list[torch.Tensor], targets: list[dict]) -> tuple[list, list]:
        non_blocking = self.device.type == "cuda"
        # Images stay 3-D (C, H, W) here: channels_last needs rank 4, and the model's transform batches them.
        # The convolutions follow the channels_last weights set in __init__.
        images = [img.to(self.device, non_blocking=non_blocking) for img in images]
        targets = [{k: v.to(self.device, non_blocking=non_blocking) for k, v in t.items()} for t in targets]
        return images, targets

    def _train_step(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            losses = self.wrapped(images, targets)
        if not isinstance(losses, dict) or not losses:
            raise TypeError("Trainer: the module's training forward must return a non-empty dict of losses")
        values = {k: float(v.detach()) for k, v in losses.items()}
        for key, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss term '{key}' is {value} at step {self.step + 1}; the last good "
                                         f"checkpoint is {self._last_good()}")
        total = sum(losses.values())
        # Modules may expose per-term diagnostics (the Distiller's hard/soft parts, bound activity) to log.
        stats = getattr(self.module, "stats", None)
        if isinstance(stats, dict):
            values.update({f"kd/{k}": float(v) for k, v in stats.items()})
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        norm = None
        if self.optim_cfg.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.optim_cfg.grad_clip_norm)
            values["grad_norm"] = float(norm)
        elif not self.scaler.is_enabled():
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        # With AMP an Inf gradient is the scaler's signal to skip the step and lower its scale; without it,
        # clipping an Inf norm zeroes (or NaNs) every update, so the run would go on learning nothing.
        if norm is not None and not self.scaler.is_enabled() and not math.isfinite(float(norm)):
            largest = max((k for k in values if k.startswith("loss")), key=lambda k: abs(values[k]), default="?")
            raise NonFiniteLossError(
                f"gradient norm is {float(norm)} at step {self.step + 1} (largest loss term: '{largest}' = "
                f"{values.get(largest, float('nan')):.3g}); the weights were not updated. The last good checkpoint "
                f"is {self._last_good()}. Lower that term's weight or optim.lr")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values["loss"] = float(total.detach())
        return values

    def fit(self, resume: bool = False) -> RunSummary:
        """Run to ``max_steps`` (continuing from ``last.pt`` when ``resume``); returns the run summary."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"train.out_dir: {self.out_dir} is a file, not a folder; choose another run folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self._remove_stale_temp_files()
        self._final_validated = False
        if resume and (self.out_dir / LAST).is_file():
            self.resume(self.out_dir / LAST)
        elif self.dist.is_main and (self.out_dir / "metrics.jsonl").is_file():
            (self.out_dir / "metrics.jsonl").unlink()
        self._last_saved_step = self.step
        # Resuming a finished run must not validate (and log) the same final step again.
        resumed_finished = self.step >= self.cfg.max_steps and self._final_validated
        self._open_tensorboard()
        cfg = self.cfg
        show = cfg.progress and self.dist.is_main
        # A bar redraws with carriage returns; in a redirected log that is one endless line, so there the
        # loop prints plain progress lines at each metrics line instead.
        interactive = show and _is_terminal()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.progress_label, dynamic_ncols=True,
                   disable=not interactive)
        start = time.perf_counter()
        self.module.train()
        sampler = self.loader.batch_sampler
        while self.step < cfg.max_steps:
            sampler.set_position(self.epoch, self.batch_in_epoch)
            finished_epoch = True
            for images, targets in self.loader:
                ids = [int(t["image_id"]) for t in targets]
                images, targets = self._to_device(images, targets)
                values = self._train_step(images, targets)
                self.step += 1
                self.batch_in_epoch += 1
                if self.step % max(1, cfg.log_every) == 0 or self.step == cfg.max_steps or self.step == 1:
                    logged = reduce_mean(values, self.dist)
                    self._log({"step": self.step, "kind": "train", "epoch": self.epoch,
                               "lr": self.scheduler.get_last_lr()[0], "image_ids": ids, **logged})
                    losses = {k: f"{v:.3f}" for k, v in logged.items() if k.startswith("loss")}
                    bar.set_postfix(losses, refresh=False)
                    if show and not interactive:
                        print(f"{self.progress_label}: step {self.step}/{cfg.max_steps} "
                              + " ".join(f"{k} {v}" for k, v in losses.items()), flush=True)
                bar.update(1)
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                    self.validate()
                if self.step % max(1, cfg.checkpoint_every) == 0 or self.step == cfg.max_steps:
                    self.save(LAST)
                    self._last_saved_step = self.step
                barrier(self.dist)
                if self.step >= cfg.max_steps:
                    finished_epoch = False
                    break
            if finished_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        seconds = time.perf_counter() - start
        if self.evaluate_fn is not None and not resumed_finished:
            self.validate()
            self._final_validated = True
            self.save(LAST)  # carries the final best value
        if self._tb is not None:
            self._tb.close()
        summary = RunSummary(
            out_dir=str(self.out_dir), steps=self.step,
            last_checkpoint=str(self.out_dir / LAST) if (self.out_dir / LAST).is_file() else None,
            best_checkpoint=str(self.out_dir / BEST) if (self.out_dir / BEST).is_file() else None,
            best_metric=cfg.best_metric if self.best_value is not None else None,
            best_value=self.best_value, best_step=self.best_step, last_metrics=self.last_metrics,
            train_seconds=seconds, extra=self.run_info)
        if self.dist.is_main:
            if self.write_summary:
                atomic_write_text(json.dumps(summary.to_dict(), indent=2), self.out_dir / "summary.json")
            try:
                from ..reports.plots import plot_training_curves

                plot_training_curves(self.out_dir / "metrics.jsonl", self.out_dir / "loss_curves.png")
            except Exception as exc:  # a plot must never lose a finished run
                print(f"warning: could not draw the loss curves ({exc})")
        return summary


def _is_terminal() -> bool:
    import sys

    stream = sys.stderr  # where tqdm draws
    return bool(getattr(stream, "isatty", lambda: False)())


def _default_device(name: str) -> torch.device:
    from .distributed import resolve_device

    return resolve_device(name)
