"""``detdistill export --format openvino|onnx``: a checkpoint as the artifact folder a deployment runs.

The folder is built beside its destination and renamed into place only when the model files, the manifest and a
load through :func:`~detdistill.deploy.runtime.load_artifact` all succeeded: a failed export leaves nothing, and an
``--overwrite`` replaces the old folder whole.

A torchvision detector takes a list of images and returns a list of dicts, which neither tracer can express;
:class:`TensorDetector` is the traceable form (one C×H×W image in, ``boxes, labels, scores`` out).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DetDistillError
from ..models.checkpoint import load_detector, read_checkpoint
from ..utils import file_sha256
from .artifact import FORMATS, MANIFEST, PRECISIONS, RUNTIME_OF, ArtifactError, Manifest
from .quantize import (ATTEMPTS, Validation, calibration_indices, quantize_openvino, quantize_with_accuracy,
                       unquantized_layers)
from .runtime import OUTPUT_NAMES, ArtifactDetector, OpenVINOSession, import_runtime, letterbox, load_artifact

Log = Callable[[str], None]


class TensorDetector(nn.Module):
    """A torchvision detector as one image tensor in, ``(boxes, labels, scores)`` out (what the tracers need)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.detector([image])[0]
        return out["boxes"], out["labels"], out["scores"]


def parse_input_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"480x640"`` → ``(480, 640)``; ``"640"`` → ``(640, 640)``; ``None`` or ``"dynamic"`` → ``None``.

    >>> parse_input_size("480x640"), parse_input_size("dynamic")
    ((480, 640), None)
    """
    if text is None or (isinstance(text, str) and text.strip().lower() == "dynamic"):
        return None
    if isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            raise ArtifactError(f"--input-size {text!r}: expected HxW (e.g. 480x640), H, or dynamic") from None
    else:
        size = tuple(int(v) for v in text)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) <= 0:
        raise ArtifactError(f"--input-size {text!r}: expected two positive sides HxW (e.g. 480x640), or dynamic")
    return size  # type: ignore[return-value]


@dataclass
class ExportResult:
    folder: Path
    manifest: Manifest


def check_export_choices(fmt: str, precision: str, calibration: Any, validation: Any, check_accuracy: bool) -> None:
    """Refuse a combination that cannot be exported, before any work, in one line naming the flag."""
    if fmt not in FORMATS:
        raise ArtifactError(f"--format {fmt!r} is not one of {list(FORMATS)} (torchvision: the state-dict export)")
    if precision not in PRECISIONS:
        raise ArtifactError(f"--precision {precision!r} is not one of {list(PRECISIONS)}")
    if fmt == "onnx" and precision != "fp32":
        raise ArtifactError(f"--format onnx --precision {precision}: ONNX artifacts are fp32 (ONNX Runtime's dynamic "
                            f"int8 ran at 0.37x eager fp32 on this CPU and has no bf16 CPU kernels); use --format "
                            f"openvino --precision {precision}")
    if precision == "int8" and calibration is None:
        raise ArtifactError("--precision int8 needs calibration images: pass --data SRC (its --calib-split, a "
                            "training split, never test)")
    if precision == "int8" and check_accuracy and validation is None:
        raise ArtifactError("--precision int8 checks the validation mAP@0.5 against fp32: pass --data SRC with a "
                            "--val-split, or --max-drop none to skip the check")


def _load_calibration(dataset: Any, count: int, size: tuple[int, int] | None, pad: Sequence[float],
                      seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """The network inputs of ``count`` seeded images of ``dataset``; every image that fails to decode is named."""
    if count <= 0:
        raise ArtifactError(f"--calib-images {count}: expected a positive number of images")
    indices = calibration_indices(len(dataset), count, seed)
    samples, names, bad = [], [], []
    for i in indices:
        path = str(dataset.image_path(i))
        try:
            image = dataset.load_image(i)
        except DetDistillError as exc:
            bad.append(f"{path} ({exc})")
            continue
        if size is not None:
            image, _ = letterbox(image, size, pad)
        samples.append(np.ascontiguousarray(image.numpy().astype(np.float32)))
        names.append(path)
    if bad:
        raise ArtifactError(f"{len(bad)} calibration image(s) cannot be decoded: " + "; ".join(bad)
                            + "; fix or remove them, nothing was written")
    return samples, names


def _convert_openvino(wrapper: nn.Module, example: torch.Tensor, size: tuple[int, int] | None, scratch: Path,
                      opset: int) -> Any:
    """Through ONNX: NNCF cannot quantise what ``convert_model`` makes of the traced torch module directly (its
    graph has duplicate node names: "Could not find a node aten::unsqueeze/Unsqueeze_1"), and the ONNX graph's
    node names carry the module paths that the fp32 fallback of :mod:`.quantize` selects by."""
    ov = import_runtime("openvino")
    _export_onnx(wrapper, example, size, scratch, opset)
    model = ov.convert_model(str(scratch))
    scratch.unlink()
    return model


def _batched_nms_without_branch(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                                iou_threshold: float) -> torch.Tensor:
    """torchvision's per-class NMS by coordinate offsets, without its ``if boxes.numel() == 0`` (scripted when
    traced, it exports as an ONNX ``If``). The maximum taken over the boxes and a zero is the same for boxes
    clipped to the image and defined when there are none. Measured: OpenVINO's CPU plugin crashed (segfault) in
    NNCF's calibration of the If bodies of the demo's lean ``cpu_small`` student; without them there is nothing
    to crash.

    >>> boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [0., 0., 10., 10.]])
    >>> _batched_nms_without_branch(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), 0.5).tolist()
    [0, 2]
    >>> _batched_nms_without_branch(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).numel()
    0
    """
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, iou_threshold)


@contextlib.contextmanager
def _traceable_nms() -> Iterator[None]:
    """torchvision's detection heads call ``torchvision.ops.boxes.batched_nms`` by attribute: replaced while
    tracing, restored after."""
    import torchvision.ops.boxes as box_ops

    original = box_ops.batched_nms
    box_ops.batched_nms = _batched_nms_without_branch
    try:
        yield
    finally:
        box_ops.batched_nms = original


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, size: tuple[int, int] | None, path: Path,
                 opset: int) -> None:
    import_runtime("onnxruntime")
    dynamic = {"image": {1: "height", 2: "width"}} if size is None else {}
    with warnings.catch_warnings(), _traceable_nms():
        warnings.simplefilter("ignore")
        # torchvision's Faster R-CNN (NMS, data-dependent shapes) exports with the TorchScript-based exporter.
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=list(OUTPUT_NAMES),
                          dynamic_axes={**dynamic, **{o: {0: "detections"} for o in OUTPUT_NAMES}})


@dataclass(frozen=True)
class Source:
    """What a manifest says of the model's origin: its classes and, for a checkpoint, the file and its SHA-256."""

    class_names: list[str]
    category_ids: list[int]
    model_name: str
    checkpoint_path: str = ""
    checkpoint_sha256: str = ""

    @classmethod
    def of_checkpoint(cls, checkpoint: Path, ckpt: dict[str, Any]) -> "Source":
        return cls(list(ckpt["class_names"]), [int(c) for c in ckpt["category_ids"]], str(ckpt["model_spec"]["name"]),
                   str(checkpoint), file_sha256(checkpoint))


def _draft_manifest(fmt: str, precision: str, size: tuple[int, int] | None, source: Source, model: nn.Module) -> Manifest:
    runtime = RUNTIME_OF[fmt]
    version = import_runtime(runtime).__version__
    return Manifest(
        format=fmt, precision=precision, runtime=runtime, runtime_version=str(version),
        input_size=list(size) if size is not None else None, class_names=list(source.class_names),
        category_ids=list(source.category_ids), model_name=source.model_name,
        checkpoint_sha256=source.checkpoint_sha256, checkpoint_path=source.checkpoint_path,
        score_thresh=float(model.roi_heads.score_thresh), nms_thresh=float(model.roi_heads.nms_thresh),
        detections_per_img=int(model.roi_heads.detections_per_img), files={},
        pad_value=[float(v) for v in model.transform.image_mean])


def _prepare_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {out}: is a file; an artifact is a folder (give a folder path)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"--out {out}: folder exists and is not empty; pass --overwrite to replace it")


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an old one is moved aside first and removed only after."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export_artifact(checkpoint: str | Path, out: str | Path, *, fmt: str = "openvino", precision: str = "fp32",
                    input_size: str | Sequence[int] | None = None, calibration: Any = None, calib_images: int = 50,
                    validation: Any = None, max_drop: float | None = 0.01, min_score: float | None = None,
                    overwrite: bool = False, threads: int | None = None, opset: int = 17,
                    log: Log = print) -> ExportResult:
    """Export ``checkpoint`` as an artifact folder ``out`` (see the module docstring).

    ``input_size``: ``(H, W)``/``"HxW"`` fixes the network input (the fast case; images of other sizes are scaled
    and padded into it), ``None`` keeps it dynamic. ``precision="int8"`` quantises on ``calib_images`` images of
    ``calibration`` (a training split) and keeps the validation mAP@0.5 on ``validation`` within ``max_drop`` of
    fp32 (``max_drop=None``: no check, recorded as such). ``min_score`` replaces the checkpoint's box score
    threshold (scoring AP wants a low one; the artifact cannot return detections below it).

    Example::

        export_artifact("runs/bccd/distilled/last.pt", "runs/bccd/student-ov", input_size="480x640")
        load_artifact("runs/bccd/student-ov")([image])
    """
    checkpoint = Path(checkpoint)
    check_export_choices(fmt, precision, calibration, validation, max_drop is not None)
    size = parse_input_size(input_size)
    _prepare_destination(Path(out), overwrite)
    ckpt = read_checkpoint(checkpoint)
    model = load_detector(checkpoint).eval()
    if min_score is not None:
        if not 0.0 <= min_score <= 1.0:
            raise ArtifactError(f"--min-score {min_score}: expected a number in [0, 1]")
        model.roi_heads.score_thresh = float(min_score)
    return export_model(model, out, Source.of_checkpoint(checkpoint, ckpt), fmt=fmt, precision=precision,
                        input_size=size, example_size=size or _training_side(ckpt), calibration=calibration,
                        calib_images=calib_images, validation=validation, max_drop=max_drop, overwrite=overwrite,
                        threads=threads, opset=opset, log=log)


def export_model(model: nn.Module, out: str | Path, source: Source, *, fmt: str = "openvino", precision: str = "fp32",
                 input_size: str | Sequence[int] | None = None, example_size: Sequence[int] = (160, 160),
                 calibration: Any = None, calib_images: int = 50, validation: Any = None,
                 max_drop: float | None = 0.01, overwrite: bool = False, threads: int | None = None, opset: int = 17,
                 log: Log = print) -> ExportResult:
    """:func:`export_artifact` for a detector in memory (an untrained ``shrink`` candidate, a model in a notebook);
    ``source`` gives the manifest its classes and origin, ``example_size`` the trace input of a dynamic export."""
    out = Path(out)
    check_export_choices(fmt, precision, calibration, validation, max_drop is not None)
    size = parse_input_size(input_size)
    _prepare_destination(out, overwrite)
    model = model.eval()
    manifest = _draft_manifest(fmt, precision, size, source, model)
    threads = int(threads or torch.get_num_threads())
    samples: list[np.ndarray] = []
    if precision == "int8":
        samples, manifest.calibration_images = _load_calibration(calibration, calib_images, size, manifest.pad_value)
    example = torch.rand(3, *(size or example_size), generator=torch.Generator().manual_seed(0))
    wrapper = TensorDetector(model).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        log(f"export: {source.checkpoint_path or source.model_name} → {fmt} {precision}, input {manifest.size_text}")
        if fmt == "onnx":
            _export_onnx(wrapper, example, size, tmp / "model.onnx", opset)
            names = ["model.onnx"]
        else:
            ov_model = _convert_openvino(wrapper, example, size, tmp / "trace.onnx", opset)
            if precision == "int8":
                ov_model, manifest.quantization = _quantize(ov_model, samples, manifest, validation, max_drop,
                                                            threads, log)
            import_runtime("openvino").save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
            names = ["model.xml", "model.bin"]
        manifest.files = {name: file_sha256(tmp / name) for name in names}
        if fmt == "openvino":
            manifest.compile_hint = load_artifact_precision(tmp, manifest, threads)
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        load_artifact(tmp, threads=threads)  # the folder as a user will open it, before it is published
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}/ ({', '.join(names)}, {MANIFEST})")
    return ExportResult(out, manifest)


def load_artifact_precision(folder: Path, manifest: Manifest, threads: int) -> str:
    """The inference precision OpenVINO actually compiled (read back, not assumed)."""
    ov = import_runtime("openvino")
    session = OpenVINOSession(ov.Core().read_model(str(folder / "model.xml")), manifest.precision, threads)
    return session.inference_precision


def _training_side(ckpt: dict[str, Any]) -> tuple[int, int]:
    size = ckpt.get("metadata", {}).get("input", {})
    side = int(size["min_size"][0]) if size.get("min_size") else 160
    return side, side


def _quantize(model: Any, samples: list[np.ndarray], manifest: Manifest, validation: Any, max_drop: float | None,
              threads: int, log: Log) -> tuple[Any, dict[str, Any]]:
    if max_drop is None:
        log("int8: whole model quantised; accuracy NOT checked (--max-drop none)")
        quantized = quantize_openvino(model, samples, ATTEMPTS[0])
        return quantized, {"checked": False, "chosen": ATTEMPTS[0].name, "fp32_layers": unquantized_layers(quantized),
                           "calibration_count": len(samples)}
    from ..data.convert import to_coco_dict
    from ..eval.inference import evaluate_model, score_images

    coco_gt = to_coco_dict(validation)

    def score(candidate: Any) -> float:
        precision = "fp32" if candidate is model else "int8"
        detector = ArtifactDetector(manifest, OpenVINOSession(candidate, precision, threads))
        return float(evaluate_model(detector, validation, "coco", batch_size=1).metrics["mAP50"])

    def score_compiled(compiled: Any, indices: list[int]) -> float:
        return score_images(ArtifactDetector(manifest, OpenVINOSession.of_compiled(compiled)), validation, indices,
                            coco_gt)

    quantized, record = quantize_with_accuracy(model, samples, Validation(score, score_compiled, len(validation)),
                                               max_drop, log)
    return quantized, {"checked": True, **record}
