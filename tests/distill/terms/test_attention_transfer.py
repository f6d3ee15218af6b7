"""Attention transfer: hand values, an independent loop, shape errors, and the term in the registry."""

import math

import pytest
import torch

from detdistill.distill.terms import get_term
from detdistill.distill.terms.attention_transfer import attention_transfer_loss


def ref_at(s, t, p):
    """Plain-Python loop: per image, the channel mean of |F|^p, unit-normalised, squared differences."""
    n, h, w = len(s), len(s[0][0]), len(s[0][0][0])
    total = 0.0
    for i in range(n):
        maps = []
        for f in (s[i], t[i]):
            q = [sum(abs(f[c][y][x]) ** p for c in range(len(f))) / len(f) for y in range(h) for x in range(w)]
            norm = math.sqrt(sum(v * v for v in q))
            maps.append([v / norm for v in q])
        total += sum((a - b) ** 2 for a, b in zip(*maps))
    return total / (n * h * w)


def test_hand_values():
    # One image, one channel, two locations. Student [1, 0]: Q = [1, 0]. Teacher [0, 2]: Q = [0, 4] -> [0, 1].
    s = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    t = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    assert float(attention_transfer_loss(s, t)) == pytest.approx((1 + 1) / 2)
    # Scale- and sign-invariant, and indifferent to the channel count: 3 channels of ±5x the same map match.
    t3 = torch.cat([5 * t, -5 * t, 5 * t], dim=1)
    assert float(attention_transfer_loss(t3, t)) == pytest.approx(0.0, abs=1e-12)


def test_against_the_loop():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    t = torch.randn(2, 6, 4, 5, generator=g, dtype=torch.float64) * 3.0
    for p in (1.0, 2.0):
        assert float(attention_transfer_loss(s, t, p)) == pytest.approx(ref_at(s.tolist(), t.tolist(), p), rel=1e-10)


def test_gradient_reaches_the_student_only():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, generator=g, requires_grad=True)
    attention_transfer_loss(s, t).backward()
    assert torch.isfinite(s.grad).all() and float(s.grad.abs().sum()) > 0 and t.grad is None


def test_unequal_spatial_sizes_are_refused_with_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\).*\(1, 2, 8, 8\)"):
        attention_transfer_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 8, 8))


def test_registered_with_the_authors_weight_and_off_in_every_recipe():
    from detdistill.config import DistillConfig
    from detdistill.distill.terms import active_terms

    spec = get_term("attention_transfer")
    assert spec.reads == ("features",) and spec.default_weight == 500.0
    cfg = DistillConfig()
    names = lambda c: [t.name for t in active_terms(c)]  # noqa: E731
    assert cfg.terms.attention_transfer.weight == 500.0 and "attention_transfer" not in names(cfg)
    cfg.terms.attention_transfer.enabled = True
    assert "attention_transfer" in names(cfg)
