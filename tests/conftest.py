"""Shared fixtures. Tests run on CPU with few threads so that results do not depend on the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` relative to the repo root; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (the ../shared/data folder beside the repo)")
    return SHARED_DATA


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `--doctest-modules` (pyproject) is for src/; here it would import every .py file, and the helper
    # scripts that tests launch (engine/run_ddp.py reads sys.argv at import) must not be imported.
    if collection_path.suffix == ".py" and not collection_path.name.startswith(("test_", "conftest")):
        return True
    return None
