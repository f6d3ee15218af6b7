"""Run an exported artifact with the detector's inference interface: ``model(list of C×H×W images in [0, 1])``
returns ``list[dict(boxes, labels, scores)]`` in each image's own pixels, so the evaluator, ``predict`` and the
timer take an artifact exactly as they take a torchvision ``FasterRCNN``.

An artifact with a fixed input size serves images of any size: each image is scaled (aspect ratio kept) and
padded into the fixed size, and the boxes are mapped back. An image already of that size goes in untouched.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .artifact import EXTRA_OF, RUNTIME_OF, ArtifactError, Manifest, read_manifest

OUTPUT_NAMES = ("boxes", "labels", "scores")
# OpenVINO's names for the inference precisions that detdistill's precisions compile with. int8 layers are
# int8 in the model file itself; the layers around them run at the hint, set explicitly because OpenVINO's
# default on a CPU with AMX-BF16 is bf16 (measured: not exact, silently).
OPENVINO_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def import_runtime(name: str) -> Any:
    """Import ``openvino``, ``onnxruntime`` or ``nncf``, or say in one line which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ArtifactError(f"{name} is not installed; pip install '{EXTRA_OF[name]}' (or `make install`)") from None


def letterbox(image: torch.Tensor, size: Sequence[int], pad_value: Sequence[float]) -> tuple[torch.Tensor, float]:
    """``image`` (C×h×w) scaled to fit ``size`` (H, W) with its aspect ratio kept, padded at the bottom and right
    with ``pad_value`` per channel; returns the padded image and the scale (boxes in it divide by the scale).

    >>> padded, scale = letterbox(torch.zeros(3, 10, 20), (10, 10), (0.5, 0.5, 0.5))
    >>> tuple(padded.shape), scale, float(padded[0, 9, 0]), float(padded[0, 0, 0])
    ((3, 10, 10), 0.5, 0.5, 0.0)
    """
    height, width = int(size[0]), int(size[1])
    h, w = image.shape[-2:]
    scale = min(height / h, width / w)
    if (h, w) == (height, width):
        return image, 1.0
    new_h, new_w = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    out = torch.tensor(list(pad_value), dtype=image.dtype).view(-1, 1, 1).expand(image.shape[0], height, width).clone()
    out[:, :new_h, :new_w] = resized
    return out, scale


class OpenVINOSession:
    """An ``openvino.Model`` (read from ``model.xml`` or in memory) compiled for the CPU at an explicit precision."""

    def __init__(self, model: Any, precision: str, threads: int) -> None:
        ov = import_runtime("openvino")
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_HINT[precision], "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self._attach(ov.Core().compile_model(model, "CPU", config))

    @classmethod
    def of_compiled(cls, compiled: Any) -> "OpenVINOSession":
        """A session around a model someone else compiled (NNCF's accuracy control compiles its own, in fp32)."""
        session = cls.__new__(cls)
        session._attach(compiled)
        return session

    def _attach(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]
        self.input_shape = [d.get_length() if d.is_static else None for d in self.compiled.input(0).get_partial_shape()]

    @classmethod
    def open(cls, folder: Path, manifest: Manifest, threads: int) -> "OpenVINOSession":
        ov = import_runtime("openvino")
        return cls(ov.Core().read_model(str(folder / "model.xml")), manifest.precision, threads)

    @property
    def inference_precision(self) -> str:
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: image})
        return [result[o] for o in self.outputs]


class OnnxRuntimeSession:
    """``model.onnx`` in an ONNX Runtime CPU session (fp32: the only precision detdistill exports for it)."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.input_shape = [d if isinstance(d, int) else None for d in shape]

    @classmethod
    def open(cls, folder: Path, manifest: Manifest, threads: int) -> "OnnxRuntimeSession":
        return cls(folder / "model.onnx", threads)

    @property
    def inference_precision(self) -> str:
        return "fp32"

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES), {self.input_name: image})


SESSIONS: dict[str, Callable[[Path, Manifest, int], Any]] = {"openvino": OpenVINOSession.open,
                                                             "onnx": OnnxRuntimeSession.open}


class ArtifactDetector:
    """An exported detector behind torchvision's inference interface (see the module docstring).

    ``class_names`` / ``category_ids`` come from the manifest. ``min_score`` keeps detections scoring at least
    that; it can only raise the threshold the artifact was exported with (``manifest.score_thresh``), because
    detections below it are not in the model's output at all.
    """

    def __init__(self, manifest: Manifest, session: Any, *, folder: str | Path | None = None,
                 min_score: float | None = None) -> None:
        self.manifest = m = manifest
        self.session = session
        self.folder = Path(folder) if folder is not None else None
        self.runtime = RUNTIME_OF[m.format]
        where = self.folder or "artifact"
        if min_score is not None and min_score < m.score_thresh:
            raise ArtifactError(f"{where}: min score {min_score} is below the {m.score_thresh} the artifact was "
                                f"exported with; re-export with --min-score {min_score}")
        self.min_score = min_score
        self.class_names = list(m.class_names)
        self.category_ids = list(m.category_ids)
        self.training = False

    def __repr__(self) -> str:
        m = self.manifest
        return f"ArtifactDetector({str(self.folder)!r}, {m.format} {m.precision}, input {m.size_text})"

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.manifest.precision}"

    # torchvision's interface around inference: an artifact has no modes, parameters or device to move.
    def eval(self) -> "ArtifactDetector":
        return self

    def train(self, mode: bool = True) -> "ArtifactDetector":
        if mode:
            raise ArtifactError(f"{self.folder or 'artifact'}: an exported artifact cannot be trained; train the checkpoint")
        return self

    def to(self, *args: Any, **kwargs: Any) -> "ArtifactDetector":
        return self

    def detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detections of one C×H×W float image in [0, 1], boxes in its own pixels."""
        image = image.detach().to("cpu", torch.float32)
        h, w = image.shape[-2:]
        scale = 1.0
        if self.manifest.input_size is not None:
            image, scale = letterbox(image, self.manifest.input_size, self.manifest.pad_value)
        boxes, labels, scores = self.session(np.ascontiguousarray(image.numpy()))
        boxes = torch.from_numpy(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        if scale != 1.0:
            boxes = boxes / scale
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        out = {"boxes": boxes, "labels": torch.from_numpy(np.asarray(labels, dtype=np.int64)).reshape(-1),
               "scores": torch.from_numpy(np.asarray(scores, dtype=np.float32)).reshape(-1)}
        if self.min_score is not None:
            keep = out["scores"] >= self.min_score
            out = {k: v[keep] for k, v in out.items()}
        return out

    def __call__(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.detect(image) for image in images]


def load_artifact(folder: str | Path, *, threads: int | None = None, min_score: float | None = None) -> ArtifactDetector:
    """An exported artifact folder as a detector callable, checked against its manifest first::

        model = load_artifact("runs/bccd/student.openvino-int8")
        model([image])[0]["boxes"]

    ``threads`` (default: torch's thread count) fixes the runtime's inference threads.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    session = SESSIONS[manifest.format](folder, manifest, int(threads or torch.get_num_threads()))
    expected = [3, *manifest.input_size] if manifest.input_size is not None else [3, None, None]
    if session.input_shape != expected:
        raise ArtifactError(f"{folder}: the model file's input shape {session.input_shape} differs from the "
                            f"manifest's input_size {manifest.size_text}; re-export the artifact")
    return ArtifactDetector(manifest, session, folder=folder, min_score=min_score)
