"""The Distiller composed of named parts computes what the single-class Distiller computed, bit for bit.

``tests/fixtures/distiller_losses.pt`` was written by the code before the split (main at 0eb00ed) with
``tests/fixtures/make_distiller_losses.py``; each case runs here with the current code on the same seeds and
inputs. Exact equality, not a tolerance: the split moved code, it must not move a single rounding.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from make_distiller_losses import CASES, record  # noqa: E402

RECORDED = torch.load(Path(__file__).resolve().parents[1] / "fixtures" / "distiller_losses.pt", weights_only=True)


def test_every_case_was_recorded():
    assert sorted(RECORDED) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_stats_gradients_and_rng_use_equal_the_recorded_ones(name):
    threads = torch.get_num_threads()
    try:
        got = record(name)
    finally:
        torch.set_num_threads(threads)
    want = RECORDED[name]
    assert sorted(got["losses"]) == sorted(want["losses"])
    for key, value in want["losses"].items():
        assert torch.equal(got["losses"][key], value), key
    assert got["stats"] == want["stats"]
    assert sorted(got["grads"]) == sorted(want["grads"])
    for key, value in want["grads"].items():
        assert torch.equal(got["grads"][key], value), key
    assert torch.equal(got["next_random"], want["next_random"])
