"""The artifact folder and its manifest: every bad folder is refused in one line naming the file and the fix;
a failed export writes nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from detdistill.deploy import ArtifactError, load_artifact, read_manifest
from detdistill.deploy import export as export_module
from detdistill.deploy.artifact import MANIFEST
from detdistill.utils import file_sha256


def _copy(src, tmp_path):
    dst = tmp_path / "artifact"
    shutil.copytree(src, dst)
    return dst


def test_manifest_records_what_was_built(openvino_fixed, trained_tiny):
    import openvino

    m = read_manifest(openvino_fixed)
    assert (m.format, m.precision, m.runtime, m.compile_hint) == ("openvino", "fp32", "openvino", "f32")
    assert m.runtime_version == openvino.__version__
    assert m.input_size == [160, 160]
    assert m.checkpoint_sha256 == file_sha256(trained_tiny)
    assert m.class_names and len(m.class_names) == len(m.category_ids)
    assert set(m.files) == {"model.xml", "model.bin"}
    assert m.files["model.bin"] == file_sha256(openvino_fixed / "model.bin")
    assert m.calibration_images == [] and m.quantization is None


def test_missing_file_is_named(openvino_fixed, tmp_path):
    folder = _copy(openvino_fixed, tmp_path)
    (folder / "model.bin").unlink()
    with pytest.raises(ArtifactError, match=r"model\.bin: missing \(listed in manifest\.json\); re-export"):
        load_artifact(folder)


def test_altered_file_is_named(onnx_dynamic, tmp_path):
    folder = _copy(onnx_dynamic, tmp_path)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model\.onnx: altered since export"):
        load_artifact(folder)


def test_missing_manifest_and_unknown_fields_are_refused(onnx_dynamic, tmp_path):
    folder = _copy(onnx_dynamic, tmp_path)
    raw = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**raw, "precison": "int8"}))
    with pytest.raises(ArtifactError, match=r"unknown field\(s\) \['precison'\]"):
        read_manifest(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="manifest.json: missing; this folder is not an exported artifact"):
        read_manifest(folder)


def test_input_size_the_model_file_was_not_built_for(openvino_fixed, tmp_path):
    folder = _copy(openvino_fixed, tmp_path)
    raw = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**raw, "input_size": [320, 320]}))
    with pytest.raises(ArtifactError, match=r"input shape \[3, 160, 160\] differs from the manifest's input_size "
                                            r"320x320"):
        load_artifact(folder)


def test_classes_that_differ_from_the_dataset_are_refused(onnx_dynamic, tmp_path):
    from detdistill.data import SyntheticShapes
    from detdistill.eval.commands import evaluate_checkpoint
    from detdistill.eval.coco import EvalInputError

    folder = _copy(onnx_dynamic, tmp_path)
    raw = json.loads((folder / MANIFEST).read_text())
    raw["class_names"] = list(reversed(raw["class_names"]))
    (folder / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(EvalInputError, match="artifact classes .* differ from the dataset's"):
        evaluate_checkpoint(folder, SyntheticShapes("val", num_images=2), progress=False)


def test_a_runtime_that_is_not_installed_names_the_extra(onnx_dynamic, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnxruntime)
    with pytest.raises(ArtifactError, match=r"onnxruntime is not installed; pip install 'detdistill\[onnx\]'"):
        load_artifact(onnx_dynamic)


def test_a_failed_export_writes_nothing_and_keeps_the_old_folder(trained_tiny, onnx_dynamic, tmp_path, monkeypatch):
    out = _copy(onnx_dynamic, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_export_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_module.export_artifact(trained_tiny, out, fmt="onnx", overwrite=True, log=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # no partial folder left beside it


def test_an_existing_folder_needs_overwrite_and_a_file_is_refused(trained_tiny, onnx_dynamic, tmp_path):
    out = _copy(onnx_dynamic, tmp_path)
    with pytest.raises(ArtifactError, match="folder exists and is not empty; pass --overwrite"):
        export_module.export_artifact(trained_tiny, out, fmt="onnx", log=lambda _: None)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ArtifactError, match="is a file; an artifact is a folder"):
        export_module.export_artifact(trained_tiny, file, fmt="onnx", log=lambda _: None)


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "onnx", "precision": "int8"}, "ONNX artifacts are fp32"),
    ({"fmt": "tflite"}, "--format 'tflite' is not one of"),
    ({"precision": "fp16"}, "--precision 'fp16' is not one of"),
    ({"precision": "int8"}, "int8 needs calibration images: pass --data"),
    ({"precision": "int8", "calibration": object()}, "checks the validation mAP@0.5 against fp32"),
    ({"input_size": "480by640"}, "--input-size '480by640': expected HxW"),
])
def test_impossible_exports_are_refused_before_any_work(trained_tiny, tmp_path, kwargs, message):
    with pytest.raises(ArtifactError, match=message):
        export_module.export_artifact(trained_tiny, tmp_path / "out", log=lambda _: None, **kwargs)
    assert not (tmp_path / "out").exists()
