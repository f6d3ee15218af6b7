"""One timing table per checkpoint: the eager model and its exports in each runtime and precision, timed side by
side in one process, interleaved image by image, warm-up excluded, with the thread count fixed.

Each row also says how far its output is from eager fp32 (the confident eager detections it reproduces), because a
faster runtime that silently changes the detections is not the same model.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torchvision.ops import box_iou

from ..models.checkpoint import load_detector
from ..models.timing import Latency, interleaved_times
from .artifact import FORMATS, PRECISIONS, ArtifactError
from .export import export_artifact
from .runtime import load_artifact

Log = Callable[[str], None]
EAGER = "torch fp32"
DEFAULT_VARIANTS = ("onnx:fp32", "openvino:fp32", "openvino:int8")


def parse_variant(text: str) -> tuple[str, str]:
    """``"openvino:int8"`` → ``("openvino", "int8")``, checked.

    >>> parse_variant("onnx:fp32")
    ('onnx', 'fp32')
    """
    fmt, _, precision = text.partition(":")
    if fmt not in FORMATS or precision not in PRECISIONS:
        raise ArtifactError(f"--variants {text!r}: expected FORMAT:PRECISION with FORMAT in {list(FORMATS)} and "
                            f"PRECISION in {list(PRECISIONS)} (e.g. openvino:int8)")
    return fmt, precision


@dataclass
class Agreement:
    """How many of the eager model's detections scoring ≥ ``min_score`` a variant reproduces (same label, IoU ≥
    ``iou``), summed over the timed images, and the largest score difference among the matched ones."""

    matched: int
    total: int
    max_score_diff: float

    @property
    def text(self) -> str:
        return f"{self.matched}/{self.total}" if self.total else "no confident detections"


def agreement(reference: Sequence[dict[str, torch.Tensor]], outputs: Sequence[dict[str, torch.Tensor]],
              min_score: float = 0.5, iou: float = 0.5) -> Agreement:
    """Compare per-image detections with eager fp32's (:class:`Agreement`).

    >>> a = [{"boxes": torch.tensor([[0., 0., 10., 10.]]), "labels": torch.tensor([1]), "scores": torch.tensor([.9])}]
    >>> b = [{"boxes": torch.tensor([[0., 0., 10., 9.]]), "labels": torch.tensor([1]), "scores": torch.tensor([.8])}]
    >>> agreement(a, b).text, round(agreement(a, b).max_score_diff, 3)
    ('1/1', 0.1)
    """
    matched = total = 0
    worst = 0.0
    for ref, out in zip(reference, outputs):
        keep = ref["scores"] >= min_score
        boxes, labels, scores = ref["boxes"][keep], ref["labels"][keep], ref["scores"][keep]
        total += len(boxes)
        if not len(boxes) or not len(out["boxes"]):
            continue
        overlaps = box_iou(boxes, out["boxes"].float())
        same = labels[:, None] == out["labels"][None, :]
        overlaps = torch.where(same, overlaps, torch.zeros_like(overlaps))
        best, index = overlaps.max(dim=1)
        hit = best >= iou
        matched += int(hit.sum())
        if hit.any():
            worst = max(worst, float((scores[hit] - out["scores"][index[hit]]).abs().max()))
    return Agreement(matched, total, worst)


@dataclass
class SpeedRow:
    variant: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float
    speedup_vs_eager: float
    agreement: str
    max_score_diff: float
    compiled_as: str


def runtime_table(checkpoint: str | Path, images: Sequence[torch.Tensor], *,
                  variants: Sequence[str] = DEFAULT_VARIANTS, artifacts: Sequence[str | Path] = (),
                  input_size: str | Sequence[int] | None = None, calibration: Any = None, calib_images: int = 50,
                  threads: int = 1, warmup: int = 2, workdir: str | Path | None = None, agree_score: float = 0.5,
                  log: Log = print) -> list[SpeedRow]:
    """Time ``checkpoint`` in torch eager fp32 beside each of ``variants`` (``FORMAT:PRECISION``, exported into
    ``workdir`` or a temporary folder; int8 calibrates on ``calibration`` without the accuracy check: this table
    measures speed, ``export --precision int8`` keeps the accuracy) and each folder in ``artifacts``. Agreement
    counts the eager detections scoring at least ``agree_score``."""
    from contextlib import nullcontext

    eager = load_detector(checkpoint).eval()
    models: dict[str, Any] = {EAGER: eager}
    compiled = {EAGER: "fp32"}
    scratch = tempfile.TemporaryDirectory(prefix="detdistill-speed-") if workdir is None else nullcontext(workdir)
    with scratch as folder:
        for text in variants:
            fmt, precision = parse_variant(text)
            out = Path(folder) / f"{fmt}-{precision}"
            result = export_artifact(checkpoint, out, fmt=fmt, precision=precision, input_size=input_size,
                                     calibration=calibration, calib_images=calib_images, max_drop=None,
                                     overwrite=True, threads=threads, log=log)
            name = f"{'onnxruntime' if fmt == 'onnx' else fmt} {precision}"
            models[name] = load_artifact(out, threads=threads)
            compiled[name] = result.manifest.compile_hint or precision
        for path in artifacts:
            model = load_artifact(path, threads=threads)
            name = f"{model.name} ({Path(path).name})"
            models[name] = model
            compiled[name] = model.manifest.compile_hint or model.manifest.precision
        log(f"timing {len(models)} variants on {len(images)} images, interleaved, {threads} thread(s)")
        times = interleaved_times(models, images, threads=threads, warmup=warmup)
        with torch.inference_mode():
            outputs = {name: [model([image])[0] for image in images] for name, model in models.items()}
    base = Latency.from_seconds(times[EAGER])
    rows = []
    for name, seconds in times.items():
        latency = Latency.from_seconds(seconds)
        agree = agreement(outputs[EAGER], outputs[name], min_score=agree_score)
        rows.append(SpeedRow(name, latency.median_ms, latency.p10_ms, latency.p90_ms, latency.images_per_s,
                             base.median_ms / latency.median_ms, agree.text, agree.max_score_diff, compiled[name]))
    return rows


def format_speed_table(rows: Sequence[SpeedRow], agree_score: float = 0.5) -> str:
    """A Markdown table of :func:`runtime_table`'s rows."""
    lines = ["| variant | compiled as | ms/image (median) | p10–p90 | images/s | × torch fp32 | eager detections kept "
             f"(score ≥ {agree_score:g}, IoU ≥ 0.5) | max Δscore |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.variant} | {r.compiled_as} | {r.median_ms:.1f} | {r.p10_ms:.1f}–{r.p90_ms:.1f} | "
                     f"{r.images_per_s:.1f} | {r.speedup_vs_eager:.2f}x | {r.agreement} | {r.max_score_diff:.1e} |")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[SpeedRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


class TimingImages:
    """Timing images as the minimal dataset calibration reads (``len``, ``load_image``, ``image_path``)."""

    def __init__(self, images: Sequence[torch.Tensor]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, i: int) -> torch.Tensor:
        return self.images[i]

    def image_path(self, i: int) -> str:
        return f"timing image {i}"


class RuntimeTimer:
    """Times detectors in a deployment runtime and precision: each model is exported (:func:`export_model`) into
    a temporary folder, loaded, and timed interleaved image by image like the eager timer. The interface of
    ``shrink``'s ``Timer``: ``timer(models, images, threads, warmup, progress) -> {name: seconds per image}``.

    int8 calibrates on the timing images themselves: this measures speed (a quantised model's latency does not
    depend on which images set its scales); accuracy is measured by :meth:`evaluate`, on the quantised model
    calibrated on training images.
    """

    calib_images = 50  # the export's default: what a user's `detdistill export --precision int8` calibrates on

    def __init__(self, fmt: str, precision: str, input_size: str | Sequence[int] | None = None) -> None:
        from .artifact import RUNTIME_OF
        from .export import check_export_choices, parse_input_size

        check_export_choices(fmt, precision, calibration=object(), validation=None, check_accuracy=False)
        self.fmt, self.precision = fmt, precision
        self.input_size = parse_input_size(input_size)
        size = "dynamic" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        self.name = f"{RUNTIME_OF[fmt]} {precision} {size}"

    def __call__(self, models: dict[str, Any], images: Sequence[torch.Tensor], threads: int, warmup: int,
                 progress: Callable[[int], None] | None = None, eager: Sequence[str] = ()) -> dict[str, list[float]]:
        """Seconds per image of each model as this timer ships it; the models named in ``eager`` run as they are
        (torch fp32), interleaved with the rest in the same run."""
        from tqdm.auto import tqdm

        from .export import Source

        calibration = TimingImages(images) if self.precision == "int8" else None
        with tempfile.TemporaryDirectory(prefix="detdistill-timer-") as folder:
            loaded = {}
            # Seconds per model (tracing, conversion, int8 calibration) before any timing starts: shown, not silent.
            bar = tqdm(models.items(), desc=f"export ({self.name})", unit="model", leave=False, disable=None)
            for k, (name, model) in enumerate(bar):
                if name in eager:
                    loaded[name] = model
                    continue
                classes = int(model.roi_heads.box_predictor.cls_score.out_features) - 1
                source = Source([f"class{i}" for i in range(1, classes + 1)], list(range(1, classes + 1)), name)
                loaded[name] = self._export(model, Path(folder) / f"m{k}", source, tuple(images[0].shape[-2:]),
                                            calibration, len(images), threads)
            return interleaved_times(loaded, images, threads, warmup, progress=progress)

    def _export(self, model: Any, out: Path, source: Any, example_size: Sequence[int], calibration: Any,
                calib_images: int, threads: int) -> Any:
        """``model`` exported this way into ``out`` (int8: calibrated on ``calib_images`` of ``calibration``, no
        accuracy check) and loaded."""
        from .export import export_model

        result = export_model(model, out, source, fmt=self.fmt, precision=self.precision, input_size=self.input_size,
                              example_size=example_size, calibration=calibration, calib_images=calib_images,
                              max_drop=None, threads=threads, log=lambda _: None)
        return load_artifact(result.folder, threads=threads)

    @property
    def scores_exported(self) -> bool:
        """Whether a model's score changes when exported this way (int8), so that a search must score the export."""
        return self.precision == "int8"

    def evaluate(self, model: Any, dataset: Any, calibration: Any, threads: int) -> dict[str, float]:
        """The metrics of ``model`` on ``dataset`` as it ships: exported, and for int8 quantised (NNCF's defaults,
        no accuracy check: this score is the check) on :attr:`calib_images` seeded images of ``calibration`` (a
        training split, never the one scored)."""
        from ..eval.inference import evaluate_model
        from .export import Source

        source = Source(list(dataset.class_names), list(dataset.category_ids), type(model).__name__)
        with tempfile.TemporaryDirectory(prefix="detdistill-score-") as folder:
            detector = self._export(model, Path(folder) / "m", source, tuple(dataset.load_image(0).shape[-2:]),
                                    calibration if self.precision == "int8" else None,
                                    min(self.calib_images, len(calibration)), threads)
            metrics = evaluate_model(detector, dataset, batch_size=1, progress=False).metrics
        return {k: float(v) for k, v in metrics.items()}
