"""The artifact folder: the exported model files plus ``manifest.json``, which says everything needed to run and
trust them (classes, input size, precision as compiled, runtime and version, the checkpoint's SHA-256, the
calibration images, each file's SHA-256).

A folder is read only through :func:`read_manifest`, which refuses a missing or altered file in one line naming
it, so an artifact is never run on a model file that is not the one its manifest describes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError
from ..utils import file_sha256

MANIFEST = "manifest.json"
ARTIFACT_VERSION = 1

Format = Literal["openvino", "onnx"]
Precision = Literal["fp32", "bf16", "int8"]
FORMATS: tuple[str, ...] = ("openvino", "onnx")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
# The runtime's own name for each format, and what ``pip install`` gives it.
RUNTIME_OF = {"openvino": "openvino", "onnx": "onnxruntime"}
EXTRA_OF = {"openvino": "detdistill[deploy]", "onnxruntime": "detdistill[onnx]", "nncf": "detdistill[deploy]"}


class ArtifactError(ModelError):
    """An artifact folder that cannot be used as it is: missing or altered file, other classes, no runtime."""


@dataclass
class Manifest:
    """What ``manifest.json`` holds. ``input_size`` is ``[H, W]`` (fixed: every image is resized and padded into
    it, boxes mapped back) or ``None`` (dynamic: the image goes in as it is). ``precision`` is what was compiled,
    never a runtime's default: OpenVINO is always given ``INFERENCE_PRECISION_HINT`` (``compile_hint``).
    ``quantization`` records the int8 accuracy check: the validation scores, the drop allowed, each attempt and
    which layers stayed in fp32. ``pad_value`` fills the padding of a fixed input: the model's normalisation
    mean, so the padding is zero after normalisation, as in torchvision's own batching."""

    format: str
    precision: str
    runtime: str
    runtime_version: str
    input_size: list[int] | None
    class_names: list[str]
    category_ids: list[int]
    model_name: str
    checkpoint_sha256: str
    checkpoint_path: str
    score_thresh: float
    nms_thresh: float
    detections_per_img: int
    files: dict[str, str]
    compile_hint: str | None = None
    pad_value: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    calibration_images: list[str] = field(default_factory=list)
    quantization: dict[str, Any] | None = None
    artifact_version: int = ARTIFACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @property
    def size_text(self) -> str:
        return "dynamic" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"


def is_artifact(path: str | Path) -> bool:
    """True for a folder holding ``manifest.json`` (an exported model), False for anything else (a checkpoint).

    >>> is_artifact("no/such/folder")
    False
    """
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | Path, verify_files: bool = True) -> Manifest:
    """The folder's manifest, with every listed file present and byte-identical to what was exported."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not an artifact folder (no such directory); make one with detdistill export")
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; this folder is not an exported artifact (make one with "
                            f"detdistill export --format openvino|onnx)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not readable JSON ({exc}); re-export the artifact") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path}: expected a JSON object, found {type(raw).__name__}; re-export the artifact")
    version = raw.get("artifact_version")
    if version != ARTIFACT_VERSION:
        raise ArtifactError(f"{path}: artifact_version {version!r} is not supported (this detdistill reads "
                            f"{ARTIFACT_VERSION}); re-export with this version")
    known = set(Manifest.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ArtifactError(f"{path}: unknown field(s) {unknown}; re-export the artifact")
    try:
        manifest = Manifest(**raw)
    except TypeError as exc:
        raise ArtifactError(f"{path}: {exc}; re-export the artifact") from None
    _check_fields(manifest, path)
    if verify_files:
        for name, digest in manifest.files.items():
            file = folder / name
            if not file.is_file():
                raise ArtifactError(f"{file}: missing (listed in {MANIFEST}); re-export the artifact")
            actual = file_sha256(file)
            if actual != digest:
                raise ArtifactError(f"{file}: altered since export (SHA-256 {actual[:12]}… ≠ {digest[:12]}… in "
                                    f"{MANIFEST}); re-export the artifact")
    return manifest


def _check_fields(m: Manifest, path: Path) -> None:
    if m.format not in FORMATS:
        raise ArtifactError(f"{path}: format {m.format!r} is not one of {list(FORMATS)}")
    if m.precision not in PRECISIONS:
        raise ArtifactError(f"{path}: precision {m.precision!r} is not one of {list(PRECISIONS)}")
    if len(m.class_names) != len(m.category_ids):
        raise ArtifactError(f"{path}: {len(m.class_names)} class_names but {len(m.category_ids)} category_ids")
    if m.input_size is not None and (len(m.input_size) != 2 or min(m.input_size) <= 0):
        raise ArtifactError(f"{path}: input_size {m.input_size!r} is not [H, W] with positive sides or null")
    if not m.files:
        raise ArtifactError(f"{path}: lists no model files; re-export the artifact")


def check_classes(manifest: Manifest, where: str, class_names: list[str], dataset: str) -> None:
    """Refuse to score an artifact on a dataset with other classes (its labels would be scored as the wrong ones)."""
    if list(manifest.class_names) != list(class_names):
        raise ArtifactError(f"{where}: the artifact's classes {manifest.class_names} differ from the dataset's "
                            f"{class_names} ({dataset}); export it from a checkpoint trained on these classes")
