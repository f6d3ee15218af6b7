"""DKD on RoI logits: target / non-target decoupled KL against a loop and hand values."""

import math

import pytest
import torch

from detdistill.distill.terms.rcn_dkd import dkd_loss


def ref_dkd(s, t, target, alpha, beta, temp):
    total = 0.0
    for si, ti, g in zip(s, t, target):
        p = [math.exp(v / temp) for v in ti]
        q = [math.exp(v / temp) for v in si]
        zp, zq = sum(p), sum(q)
        pg, qg = p[g] / zp, q[g] / zq
        tckd = pg * math.log(pg / qg) + (1 - pg) * math.log((1 - pg) / (1 - qg))
        po = [v for k, v in enumerate(p) if k != g]
        qo = [v for k, v in enumerate(q) if k != g]
        nckd = sum((a / sum(po)) * math.log((a / sum(po)) / (b / sum(qo))) for a, b in zip(po, qo))
        total += alpha * tckd + beta * nckd
    return total / len(s) * temp ** 2


def test_hand_values():
    # Two classes: teacher (1/2, 1/2), student (1/4, 3/4), target 1: TCKD = ½ ln(4/3); no non-target split.
    s = torch.tensor([[0.0, math.log(3.0)]])
    t = torch.zeros(1, 2)
    assert float(dkd_loss(s, t, torch.tensor([1]))) == pytest.approx(0.5 * math.log(4 / 3))
    # Three classes, target 0: TCKD = ⅓ln(5/3) + ⅔ln(5/6); NCKD = ½ln(4/3); α = 1, β = 0.25.
    s = torch.tensor([[0.0, 0.0, math.log(3.0)]])
    want = (1 / 3 * math.log(5 / 3) + 2 / 3 * math.log(5 / 6)) + 0.25 * 0.5 * math.log(4 / 3)
    assert float(dkd_loss(s, torch.zeros(1, 3), torch.tensor([0]), 1.0, 0.25, 1.0)) == pytest.approx(want)


def test_against_the_loop_and_finite_on_confident_logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    target = torch.tensor([0, 1, 4, 2, 0, 3])
    for temp in (1.0, 2.0):
        got = dkd_loss(s, t, target, 1.0, 0.25, temp)
        assert float(got.detach()) == pytest.approx(ref_dkd(s.tolist(), t.tolist(), target.tolist(), 1.0, 0.25, temp), rel=1e-10)
    got.backward()
    assert torch.isfinite(s.grad).all()
    big = torch.tensor([[60.0, -60.0, 0.0]], requires_grad=True)
    loss = dkd_loss(big, torch.tensor([[-60.0, 60.0, 0.0]]), torch.tensor([0]))
    loss.backward()
    assert math.isfinite(float(loss)) and torch.isfinite(big.grad).all()
    assert float(dkd_loss(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3), torch.zeros(0))) == 0.0
