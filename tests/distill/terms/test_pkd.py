"""PKD: per-channel standardisation then MSE/2, and a bounded gradient on a constant (collapsed) feature."""

import math

import pytest
import torch

from detdistill.distill.terms.pkd import pkd_loss


def ref_pkd(s, t, eps, ratio):
    n, c, h, w = len(s), len(s[0]), len(s[0][0]), len(s[0][0][0])
    total = 0.0
    for ch in range(c):
        sv = [s[i][ch][y][x] for i in range(n) for y in range(h) for x in range(w)]
        tv = [t[i][ch][y][x] for i in range(n) for y in range(h) for x in range(w)]
        sm, tm = sum(sv) / len(sv), sum(tv) / len(tv)
        sd = math.sqrt(sum((v - sm) ** 2 for v in sv) / len(sv) + eps)
        td = math.sqrt(sum((v - tm) ** 2 for v in tv) / len(tv) + eps)
        sd = max(sd, ratio * td)
        total += sum(((a - sm) / sd - (b - tm) / td) ** 2 for a, b in zip(sv, tv))
    return 0.5 * total / (n * c * h * w)


def test_hand_values():
    t = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    # Pearson-invariant: any positive affine map of the teacher costs nothing.
    assert float(pkd_loss(3 * t + 7, t, eps=0.0)) == pytest.approx(0.0, abs=1e-12)
    # Anti-correlated: standardised [1, -1] against [-1, 1], squared differences 4 and 4, halved mean 2.
    assert float(pkd_loss(torch.tensor([1.0, 0.0]).view(1, 1, 1, 2), t, eps=0.0)) == pytest.approx(2.0)


def test_against_the_loop():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64) * 0.3 + 1.0
    t = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64) * 4.0
    s[:, 1] *= 0.01  # one nearly constant channel: the floor acts there only
    for ratio in (0.0, 0.1):
        got = float(pkd_loss(s, t, 1e-6, ratio))
        assert got == pytest.approx(ref_pkd(s.tolist(), t.tolist(), 1e-6, ratio), rel=1e-10)


def test_constant_feature_gets_a_finite_bounded_gradient():
    # A zero-initialised adapter outputs a constant map. The authors' form divides by sqrt(eps) there
    # (gradient ~1e3 x the standardised target); the floor at r·σ_T gives exactly −T̂ / (n · r · σ_T).
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) * 2.0
    n = t.numel()
    t_hat = (t - t.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(t.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-6)
    t_std = torch.sqrt(t.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-6)
    s = torch.zeros_like(t, requires_grad=True)
    loss = pkd_loss(s, t, 1e-6, 0.1)
    loss.backward()
    assert math.isfinite(float(loss)) and torch.isfinite(s.grad).all()
    assert float(loss) == pytest.approx(0.5, rel=1e-6)  # Ŝ = 0: half the mean of T̂² = 1/2
    assert torch.allclose(s.grad, -t_hat / (n * 0.1 * t_std), rtol=1e-6)
    assert float(s.grad.abs().max()) <= float((t_hat.abs() / (0.1 * t_std)).max()) / n + 1e-12
    raw = torch.zeros_like(t, requires_grad=True)
    pkd_loss(raw, t, 1e-6, 0.0).backward()
    assert float(raw.grad.abs().max()) > 100 * float(s.grad.abs().max())  # what the floor prevents
