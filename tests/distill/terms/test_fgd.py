"""FGD's focal (attention-weighted fg/bg) imitation and attention transfer."""

import math

import pytest
import torch

from detdistill.distill.terms.fgd import fgd_attention, fgd_loss
from detdistill.distill.terms.masks import fgd_masks


def ref_attention(f, tau):
    n, c, h, w = len(f), len(f[0]), len(f[0][0]), len(f[0][0][0])
    spatial, channel = [], []
    for i in range(n):
        sm = [sum(abs(f[i][k][y][x]) for k in range(c)) / c / tau for y in range(h) for x in range(w)]
        z = sum(math.exp(v) for v in sm)
        spatial.append([h * w * math.exp(v) / z for v in sm])
        cm = [sum(abs(f[i][k][y][x]) for y in range(h) for x in range(w)) / (h * w) / tau for k in range(c)]
        z = sum(math.exp(v) for v in cm)
        channel.append([c * math.exp(v) / z for v in cm])
    return spatial, channel


def ref_fgd(s, t, fg, bg, alpha, beta, gamma, tau):
    n, c, h, w = len(s), len(s[0]), len(s[0][0]), len(s[0][0][0])
    ts, tc = ref_attention(t, tau)
    ss, sc = ref_attention(s, tau)
    total = 0.0
    for i in range(n):
        for k in range(c):
            for y in range(h):
                for x in range(w):
                    d = (s[i][k][y][x] - t[i][k][y][x]) ** 2 * ts[i][y * w + x] * tc[i][k]
                    total += alpha * d * fg[i][y][x] + beta * d * bg[i][y][x]
        total += gamma * (sum(abs(a - b) for a, b in zip(ts[i], ss[i])) + sum(abs(a - b) for a, b in zip(tc[i], sc[i])))
    return total / n


def test_hand_value():
    # Uniform teacher: A_S = A_C = 1. Student [2, 1]: A_S^s = 2·softmax([4, 2]) = [2σ(2), 2σ(−2)], so the
    # attention term is 2·tanh(1); the imitation sees d = 1 on the foreground cell only.
    t = torch.ones(1, 1, 1, 2)
    s = torch.tensor([2.0, 1.0]).view(1, 1, 1, 2)
    fg, bg = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    got = fgd_loss(s, t, fg, bg, alpha=2.0, beta=5.0, gamma=0.1, tau=0.5)
    assert float(got) == pytest.approx(2.0 + 0.1 * 2 * math.tanh(1.0), rel=1e-6)


def test_masks_by_hand():
    # Box A covers 2x1 cells (1/2 each); box B, one of them, sets 1 where they overlap (the larger value).
    fg, bg = fgd_masks([torch.tensor([[0.0, 0.0, 16.0, 8.0], [8.0, 0.0, 16.0, 8.0]])], 8, 2, 3)
    assert fg[0].tolist() == [[0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert bg[0].flatten().tolist() == pytest.approx([0.0, 0.0, 0.25, 0.25, 0.25, 0.25])


def test_against_the_loop():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    fg, bg = fgd_masks([torch.tensor([[3.0, 5.0, 20.0, 17.0]]), torch.tensor([[0.0, 0.0, 9.0, 30.0]])], 8, 4, 5)
    got = fgd_loss(s, t, fg.double(), bg.double(), 5e-5, 2.5e-5, 5e-5, 0.5)
    want = ref_fgd(s.tolist(), t.tolist(), fg.tolist(), bg.tolist(), 5e-5, 2.5e-5, 5e-5, 0.5)
    assert float(got.detach()) == pytest.approx(want, rel=1e-10)
    got.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    spatial, channel = fgd_attention(t, 0.5)
    assert spatial.sum(dim=(1, 2)).tolist() == pytest.approx([20.0, 20.0]) and channel.sum(1).tolist() == pytest.approx([3.0, 3.0])
