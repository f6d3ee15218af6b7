"""Training checkpoints: a detector checkpoint (model spec + weights) plus the state needed to resume exactly.

Layout of ``last.pt`` / ``best.pt`` (tensors and plain data only, so ``torch.load(weights_only=True)`` reads it):
the model zoo's detector payload (``format_version``, ``model_spec``, ``state_dict``, ``class_names``,
``category_ids``, ``metadata``) and a ``training_state`` dict: step, data position, optimizer, scheduler,
grad scaler, every RNG state, and (for modules that are more than the exported detector, e.g. a Distiller with
adaptation layers) the whole module's state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import safe_torch_load
from ..errors import CheckpointError

LAST = "last.pt"
BEST = "best.pt"


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        # NumPy's and Python's states as plain lists/ints so that weights_only loading accepts them.
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The latest checkpoint of a run folder (``last.pt``), or None when the run has none yet."""
    path = Path(run_dir) / LAST
    return path if path.is_file() else None


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or "training_state" not in ckpt:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'training_state'); cannot resume from it")
    return ckpt
