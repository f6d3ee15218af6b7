"""A briefly trained tiny detector (tests/fixtures/trained_cpu_tiny.pt) and its artifacts, exported once per session.

Exports cost seconds each (tracing, conversion, compilation), so the artifacts the tests share are made once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detdistill.data import SyntheticShapes

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "trained_cpu_tiny.pt"
SIZE = (160, 160)  # the synthetic images' size: a fixed-input artifact at it sees them untouched


@pytest.fixture(scope="session")
def trained_tiny() -> Path:
    return FIXTURE


@pytest.fixture(scope="session")
def val_set() -> SyntheticShapes:
    return SyntheticShapes("val", num_images=40, seed=0)


@pytest.fixture(scope="session")
def calibration_set() -> SyntheticShapes:
    return SyntheticShapes("train", num_images=40, seed=3)


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def _export(folder: Path, name: str, **kwargs) -> Path:
    from detdistill.deploy.export import export_artifact

    out = folder / name
    if not out.exists():
        export_artifact(FIXTURE, out, threads=1, log=lambda _line: None, **kwargs)
    return out


@pytest.fixture(scope="session")
def openvino_fixed(exports: Path) -> Path:
    pytest.importorskip("openvino", reason="openvino not installed (pip install detdistill[deploy])")
    return _export(exports, "ov-fp32", fmt="openvino", precision="fp32", input_size=SIZE)


@pytest.fixture(scope="session")
def onnx_dynamic(exports: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install detdistill[onnx])")
    return _export(exports, "onnx-fp32", fmt="onnx", precision="fp32", input_size=None)
