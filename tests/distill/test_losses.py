"""Distillation losses against hand-worked numbers and independent plain-Python / numpy references."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from detdistill.distill import (
    bound_active_fraction,
    bounded_regression_loss,
    classification_distillation_loss,
    hint_loss,
    regression_distillation_loss,
    weighted_soft_binary_cross_entropy,
    weighted_soft_cross_entropy,
)

DT = torch.float64  # references are float64 loops, so compare in float64 to keep tolerances tight


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- plain-loop references (no torch math)


def ref_soft_ce(s: list[list[float]], t: list[list[float]], w: list[float], temp: float, norm: float) -> float:
    total = 0.0
    for si, ti in zip(s, t):
        zs = sum(math.exp(x / temp) for x in si)
        zt = sum(math.exp(x / temp) for x in ti)
        for c in range(len(w)):
            p = math.exp(ti[c] / temp) / zt
            q = math.exp(si[c] / temp) / zs
            total += w[c] * p * -math.log(q)
    return total / norm


def ref_soft_bce(s: list[float], t: list[float], w_bg: float, w_fg: float, temp: float, norm: float) -> float:
    total = 0.0
    for si, ti in zip(s, t):
        p = 1.0 / (1.0 + math.exp(-ti / temp))
        q = 1.0 / (1.0 + math.exp(-si / temp))
        total += -(w_fg * p * math.log(q) + w_bg * (1.0 - p) * math.log(1.0 - q))
    return total / norm


def ref_bounded(s: list[list[float]], t: list[list[float]], y: list[list[float]], m: float, norm: float) -> float:
    total = 0.0
    for si, ti, yi in zip(s, t, y):
        a = sum((u - v) ** 2 for u, v in zip(si, yi))
        b = sum((u - v) ** 2 for u, v in zip(ti, yi))
        if a + m > b:
            total += a
    return total / norm


def ref_active_count(s: list[list[float]], t: list[list[float]], y: list[list[float]], m: float) -> int:
    count = 0
    for si, ti, yi in zip(s, t, y):
        a = sum((u - v) ** 2 for u, v in zip(si, yi))
        b = sum((u - v) ** 2 for u, v in zip(ti, yi))
        count += a + m > b
    return count


def ref_cross_entropy(s: list[list[float]], labels: list[int]) -> float:
    return sum(-math.log(math.exp(si[k]) / sum(math.exp(x) for x in si)) for si, k in zip(s, labels)) / len(s)


def ref_smooth_l1(s: list[list[float]], y: list[list[float]], beta: float, norm: float) -> float:
    total = 0.0
    for si, yi in zip(s, y):
        for u, v in zip(si, yi):
            d = abs(u - v)
            total += 0.5 * d * d / beta if d < beta else d - 0.5 * beta
    return total / norm


# ---------------------------------------------------------------- weighted_soft_cross_entropy


def test_soft_ce_hand_case() -> None:
    # q = softmax([0, 0]) = [1/2, 1/2], p = softmax([0, ln 3]) = [1/4, 3/4], w = [1.5, 1]:
    # L = -(1.5 * 1/4 * ln(1/2) + 1 * 3/4 * ln(1/2)) = 1.125 ln 2
    s = torch.tensor([[0.0, 0.0]], dtype=DT)
    t = torch.tensor([[0.0, math.log(3.0)]], dtype=DT)
    loss = weighted_soft_cross_entropy(s, t, [1.5, 1.0])
    assert loss.item() == pytest.approx(1.125 * math.log(2.0), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("normalizer", [None, 7.0])
def test_soft_ce_matches_loop(temperature: float, normalizer: float | None) -> None:
    g = _gen(0)
    s = torch.randn(5, 4, generator=g, dtype=DT) * 3
    t = torch.randn(5, 4, generator=g, dtype=DT) * 3
    w = [1.5, 1.0, 1.0, 1.0]
    loss = weighted_soft_cross_entropy(s, t, w, temperature=temperature, normalizer=normalizer)
    expected = ref_soft_ce(s.tolist(), t.tolist(), w, temperature, normalizer or 5)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_soft_ce_identical_logits_unit_weights_is_teacher_entropy() -> None:
    z = torch.randn(6, 5, generator=_gen(1), dtype=DT)
    loss = weighted_soft_cross_entropy(z.clone(), z.clone(), torch.ones(5, dtype=DT))
    p = np.exp(z.numpy()) / np.exp(z.numpy()).sum(axis=1, keepdims=True)
    entropy = float(-(p * np.log(p)).sum(axis=1).mean())
    assert loss.item() == pytest.approx(entropy, rel=1e-10)


def test_soft_ce_gradient_matches_closed_form() -> None:
    # dL/ds_ik = (q_ik * sum_c w_c p_ic - w_k p_ik) / (T * normalizer), from d log q_c / dz_k = [c=k] - q_k.
    g = _gen(2)
    s = torch.randn(3, 4, generator=g, dtype=DT).requires_grad_(True)
    t = torch.randn(3, 4, generator=g, dtype=DT)
    w = torch.tensor([1.5, 1.0, 0.5, 2.0], dtype=DT)
    temp, norm = 2.0, 5.0
    weighted_soft_cross_entropy(s, t, w, temperature=temp, normalizer=norm).backward()
    q = np.exp(s.detach().numpy() / temp)
    q /= q.sum(axis=1, keepdims=True)
    p = np.exp(t.numpy() / temp)
    p /= p.sum(axis=1, keepdims=True)
    wn = w.numpy()
    expected = (q * (p * wn).sum(axis=1, keepdims=True) - wn * p) / (temp * norm)
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-10, atol=1e-14)


def test_soft_ce_teacher_gets_no_gradient() -> None:
    g = _gen(3)
    s = torch.randn(4, 3, generator=g).requires_grad_(True)
    t = torch.randn(4, 3, generator=g).requires_grad_(True)
    weighted_soft_cross_entropy(s, t, [1.5, 1.0, 1.0]).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_soft_ce_stable_at_logits_of_100() -> None:
    # float32 on purpose: softmax(±100) underflows there. Teacher p ~ [0, 1], student log q_1 = -200.
    s = torch.tensor([[100.0, -100.0]], requires_grad=True)
    t = torch.tensor([[-100.0, 100.0]])
    loss = weighted_soft_cross_entropy(s, t, [1.5, 1.0])
    assert loss.item() == pytest.approx(200.0, rel=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    # Gradient is q - p = [1, -1] (unit weight on the class the teacher picks).
    torch.testing.assert_close(s.grad, torch.tensor([[1.0, -1.0]]))


def test_soft_ce_validation() -> None:
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        weighted_soft_cross_entropy(s, torch.zeros(2, 4), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="C=3"):
        weighted_soft_cross_entropy(s, s, [1.5, 1.0])
    with pytest.raises(ValueError, match="temperature"):
        weighted_soft_cross_entropy(s, s, [1.0] * 3, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        weighted_soft_cross_entropy(s, s, [1.0] * 3, temperature=-1.0)
    with pytest.raises(ValueError, match="N×C"):
        weighted_soft_cross_entropy(torch.zeros(3), torch.zeros(3), [1.0] * 3)


# ---------------------------------------------------------------- weighted_soft_binary_cross_entropy


def test_soft_bce_hand_case() -> None:
    # p = σ(0) = 1/2, q = σ(ln 3) = 3/4, w_bg = 1.5, w_fg = 1:
    # L = -(1/2 ln 3/4 + 1.5 * 1/2 * ln 1/4) = 1/2 ln 4/3 + 3/4 ln 4
    loss = weighted_soft_binary_cross_entropy(
        torch.tensor([math.log(3.0)], dtype=DT), torch.tensor([0.0], dtype=DT), background_weight=1.5
    )
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3) + 0.75 * math.log(4.0), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
@pytest.mark.parametrize("normalizer", [None, 20])
def test_soft_bce_matches_loop(temperature: float, normalizer: int | None) -> None:
    g = _gen(4)
    s = torch.randn(9, generator=g, dtype=DT) * 4
    t = torch.randn(9, generator=g, dtype=DT) * 4
    loss = weighted_soft_binary_cross_entropy(s, t, 1.5, 0.8, temperature=temperature, normalizer=normalizer)
    expected = ref_soft_bce(s.tolist(), t.tolist(), 1.5, 0.8, temperature, normalizer or 9)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_bce_equals_two_column_softmax_on_zero_z(temperature: float) -> None:
    # softmax([0, z]) = [1 - σ(z), σ(z)]: the paper's 2-way RPN softmax with column 0 = background.
    g = _gen(5)
    z_s = (torch.randn(7, generator=g, dtype=DT) * 3).requires_grad_(True)
    z_t = torch.randn(7, generator=g, dtype=DT) * 3
    binary = weighted_soft_binary_cross_entropy(z_s, z_t, 1.5, 1.0, temperature=temperature)
    (grad_binary,) = torch.autograd.grad(binary, z_s)

    z_s2 = z_s.detach().clone().requires_grad_(True)
    two_col_s = torch.stack([torch.zeros_like(z_s2), z_s2], dim=1)
    two_col_t = torch.stack([torch.zeros_like(z_t), z_t], dim=1)
    softmax_form = weighted_soft_cross_entropy(two_col_s, two_col_t, [1.5, 1.0], temperature=temperature)
    (grad_softmax,) = torch.autograd.grad(softmax_form, z_s2)

    assert binary.item() == pytest.approx(softmax_form.item(), rel=1e-12)
    torch.testing.assert_close(grad_binary, grad_softmax, rtol=1e-10, atol=1e-14)


def test_soft_bce_stable_at_logits_of_100() -> None:
    # float32 on purpose: log(σ(-100)) via log of a sigmoid would be log(0) = -inf there.
    s = torch.tensor([-100.0, 100.0], requires_grad=True)
    t = torch.tensor([100.0, -100.0])
    loss = weighted_soft_binary_cross_entropy(s, t, background_weight=1.5, normalizer=1.0)
    # Anchor 0: p = 1, log q = -100 -> 1 * 100. Anchor 1: p = 0, log(1-q) = -100 -> 1.5 * 100.
    assert loss.item() == pytest.approx(250.0, rel=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    # dL/ds = -(w_fg p (1 - q) - w_bg (1 - p) q): anchor 0 -> -1, anchor 1 -> 1.5.
    torch.testing.assert_close(s.grad, torch.tensor([-1.0, 1.5]))


def test_soft_bce_shapes_and_teacher_gradient() -> None:
    g = _gen(6)
    s = torch.randn(5, 1, generator=g).requires_grad_(True)
    t = torch.randn(5, 1, generator=g).requires_grad_(True)
    loss = weighted_soft_binary_cross_entropy(s, t, 1.5)
    expected = ref_soft_bce(s.detach().flatten().tolist(), t.detach().flatten().tolist(), 1.5, 1.0, 1.0, 5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert t.grad is None
    assert s.grad is not None
    # (N,) against (N, 1) would silently broadcast to N×N; it must be refused.
    with pytest.raises(ValueError, match=r"\(5,\).*\(5, 1\)"):
        weighted_soft_binary_cross_entropy(torch.zeros(5), torch.zeros(5, 1), 1.5)
    with pytest.raises(ValueError, match="temperature"):
        weighted_soft_binary_cross_entropy(torch.zeros(5), torch.zeros(5), 1.5, temperature=0)


# ---------------------------------------------------------------- bounded_regression_loss


def _bounded_hand_inputs() -> tuple[Tensor, Tensor, Tensor]:
    # Row 0: a = 1, b = 0.25 (student worse: active). Row 1: a = 0.0625, b = 0.25 (student better).
    s = torch.tensor([[1.0, 0, 0, 0], [0.25, 0, 0, 0]], dtype=DT)
    t = torch.tensor([[0.5, 0, 0, 0], [0.5, 0, 0, 0]], dtype=DT)
    y = torch.zeros(2, 4, dtype=DT)
    return s, t, y


def test_bounded_hand_case() -> None:
    s, t, y = _bounded_hand_inputs()
    assert bounded_regression_loss(s, t, y).item() == pytest.approx(1.0 / 2)
    # Margin 0.25: row 1 has 0.0625 + 0.25 > 0.25, so it is active too.
    assert bounded_regression_loss(s, t, y, margin=0.25).item() == pytest.approx((1.0 + 0.0625) / 2)
    assert bound_active_fraction(s, t, y).item() == pytest.approx(0.5)
    assert bound_active_fraction(s, t, y, margin=0.25).item() == pytest.approx(1.0)


def test_bounded_is_strict_at_the_bound() -> None:
    # a + m == b exactly (binary fractions): the paper's '>' means no extra loss.
    y = torch.zeros(1, 4, dtype=DT)
    s = torch.tensor([[0.5, 0, 0, 0]], dtype=DT)  # a = 0.25
    assert bounded_regression_loss(s, s.clone(), y).item() == 0.0
    t = torch.tensor([[0.5, 0.5, 0, 0]], dtype=DT)  # b = 0.5
    assert bounded_regression_loss(s, t, y, margin=0.25).item() == 0.0
    assert bounded_regression_loss(s, t, y, margin=0.2500001).item() == pytest.approx(0.25)


@pytest.mark.parametrize("margin", [0.0, 0.5])
@pytest.mark.parametrize("normalizer", [None, 10])
def test_bounded_matches_loop(margin: float, normalizer: int | None) -> None:
    g = _gen(7)
    s = torch.randn(8, 4, generator=g, dtype=DT)
    t = torch.randn(8, 4, generator=g, dtype=DT)
    y = torch.randn(8, 4, generator=g, dtype=DT)
    count = ref_active_count(s.tolist(), t.tolist(), y.tolist(), margin)
    assert 0 < count < 8  # the seed must exercise both branches
    loss = bounded_regression_loss(s, t, y, margin=margin, normalizer=normalizer)
    expected = ref_bounded(s.tolist(), t.tolist(), y.tolist(), margin, normalizer or 8)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert bound_active_fraction(s, t, y, margin=margin).item() == pytest.approx(count / 8)


def test_bounded_gradient_zero_where_student_beats_teacher() -> None:
    s, t, y = _bounded_hand_inputs()
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    bounded_regression_loss(s, t, y, normalizer=4).backward()
    # Active row: d a / d s = 2 (s - y), over the normalizer. Inactive row: exactly zero.
    expected = torch.tensor([[2 * 1.0 / 4, 0, 0, 0], [0, 0, 0, 0]], dtype=DT)
    torch.testing.assert_close(s.grad, expected, rtol=0, atol=0)
    assert t.grad is None and y.grad is None


def test_bound_active_fraction_carries_no_gradient() -> None:
    s, t, y = _bounded_hand_inputs()
    frac = bound_active_fraction(s.requires_grad_(True), t, y)
    assert not frac.requires_grad
    assert frac.shape == ()
    assert bound_active_fraction(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0


def test_bounded_validation() -> None:
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        bounded_regression_loss(z, torch.zeros(2, 4), z)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        bounded_regression_loss(z, z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="N×4"):
        bounded_regression_loss(torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="N×4"):
        bound_active_fraction(torch.zeros(4), torch.zeros(4), torch.zeros(4))


# ---------------------------------------------------------------- hint_loss


def test_hint_hand_case() -> None:
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=DT)
    z = torch.zeros(2, 2, dtype=DT)
    assert hint_loss(v, z).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert hint_loss(v, z, kind="l1").item() == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_hint_matches_numpy_and_gradient() -> None:
    g = _gen(8)
    v = torch.randn(2, 3, 4, 5, generator=g, dtype=DT).requires_grad_(True)
    z = torch.randn(2, 3, 4, 5, generator=g, dtype=DT).requires_grad_(True)
    d = v.detach().numpy() - z.detach().numpy()
    assert hint_loss(v, z, kind="l1").item() == pytest.approx(float(np.abs(d).mean()), rel=1e-12)
    loss = hint_loss(v, z, kind="l2")
    assert loss.item() == pytest.approx(float((d**2).mean()), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(v.grad.numpy(), 2 * d / d.size, rtol=1e-12)
    assert z.grad is None


def test_hint_validation_and_empty() -> None:
    with pytest.raises(ValueError, match=r"\(1, 64, 8, 8\).*\(1, 128, 8, 8\)"):
        hint_loss(torch.zeros(1, 64, 8, 8), torch.zeros(1, 128, 8, 8))
    with pytest.raises(ValueError, match="kind"):
        hint_loss(torch.zeros(2), torch.zeros(2), kind="l3")
    v = torch.zeros(0, 4, 2, 2, requires_grad=True)
    loss = hint_loss(v, torch.zeros(0, 4, 2, 2))
    assert loss.item() == 0.0 and loss.requires_grad


# ---------------------------------------------------------------- normalizer semantics and N = 0, shared


def _soft_ce(n: int, normalizer: object = None) -> tuple[Tensor, Tensor]:
    s = torch.randn(n, 3, generator=_gen(9), dtype=DT).requires_grad_(True)
    t = torch.randn(n, 3, generator=_gen(10), dtype=DT)
    return weighted_soft_cross_entropy(s, t, [1.5, 1.0, 1.0], normalizer=normalizer), s


def _soft_bce(n: int, normalizer: object = None) -> tuple[Tensor, Tensor]:
    s = torch.randn(n, generator=_gen(9), dtype=DT).requires_grad_(True)
    t = torch.randn(n, generator=_gen(10), dtype=DT)
    return weighted_soft_binary_cross_entropy(s, t, 1.5, normalizer=normalizer), s


def _bounded(n: int, normalizer: object = None) -> tuple[Tensor, Tensor]:
    s = (torch.randn(n, 4, generator=_gen(9), dtype=DT) * 2).requires_grad_(True)
    t = torch.zeros(n, 4, dtype=DT)  # teacher on the target: every row with a > 0 is active
    return bounded_regression_loss(s, t, torch.zeros(n, 4, dtype=DT), normalizer=normalizer), s


NORMALIZED: list[Callable[..., tuple[Tensor, Tensor]]] = [_soft_ce, _soft_bce, _bounded]


@pytest.mark.parametrize("make", NORMALIZED)
def test_normalizer_divides_the_sum(make: Callable[..., tuple[Tensor, Tensor]]) -> None:
    mean, _ = make(6)
    assert mean.item() > 0
    total = mean.item() * 6  # default normalizer is N = 6
    assert make(6, 24)[0].item() == pytest.approx(total / 24, rel=1e-12)
    assert make(6, 2.5)[0].item() == pytest.approx(total / 2.5, rel=1e-12)
    assert make(6, torch.tensor(24))[0].item() == pytest.approx(total / 24, rel=1e-12)
    assert make(6, torch.tensor(24.0, dtype=torch.float32))[0].item() == pytest.approx(total / 24, rel=1e-12)


@pytest.mark.parametrize("make", NORMALIZED)
@pytest.mark.parametrize("bad", [0, -3.0, float("nan"), torch.tensor(0.0)])
def test_nonpositive_normalizer_with_samples_raises(make: Callable[..., tuple[Tensor, Tensor]], bad: object) -> None:
    with pytest.raises(ValueError, match="normalizer"):
        make(4, bad)


@pytest.mark.parametrize("make", NORMALIZED)
def test_normalizer_tensor_must_be_0dim(make: Callable[..., tuple[Tensor, Tensor]]) -> None:
    with pytest.raises(ValueError, match="0-dim"):
        make(4, torch.tensor([4.0]))


@pytest.mark.parametrize("make", NORMALIZED)
@pytest.mark.parametrize("normalizer", [None, 0, 16])
def test_empty_batch_is_zero_with_graph(make: Callable[..., tuple[Tensor, Tensor]], normalizer: object) -> None:
    loss, s = make(0, normalizer)
    assert loss.shape == ()
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert s.grad is not None and s.grad.shape == s.shape
    assert not torch.isnan(s.grad).any()


# ---------------------------------------------------------------- combinations


def test_classification_combination() -> None:
    hard, soft = torch.tensor(2.0), torch.tensor(4.0)
    assert classification_distillation_loss(hard, soft).item() == pytest.approx(0.5 * 2 + 0.5 * 4)
    assert classification_distillation_loss(hard, soft, mu=0.25).item() == pytest.approx(0.25 * 2 + 0.75 * 4)
    # Soft term off: the hard term keeps weight 1, not mu.
    assert classification_distillation_loss(hard, None, mu=0.25) is hard
    with pytest.raises(ValueError, match="mu"):
        classification_distillation_loss(hard, soft, mu=1.5)


def test_regression_combination() -> None:
    sl1, bounded = torch.tensor(1.0), torch.tensor(2.0)
    assert regression_distillation_loss(sl1, bounded).item() == pytest.approx(1 + 0.5 * 2)
    assert regression_distillation_loss(sl1, bounded, nu=2.0).item() == pytest.approx(1 + 2 * 2)
    assert regression_distillation_loss(sl1, None, nu=2.0) is sl1
    with pytest.raises(ValueError, match="nu"):
        regression_distillation_loss(sl1, bounded, nu=-0.1)


def _rcn_batch() -> tuple[Tensor, Tensor, list[int], Tensor, Tensor, Tensor]:
    g = _gen(11)
    s_logits = torch.randn(6, 4, generator=g, dtype=DT)
    t_logits = torch.randn(6, 4, generator=g, dtype=DT)
    labels = [0, 2, 0, 1, 3, 0]
    s_deltas = torch.randn(3, 4, generator=g, dtype=DT)  # the 3 positives
    t_deltas = torch.randn(3, 4, generator=g, dtype=DT)
    y_deltas = torch.randn(3, 4, generator=g, dtype=DT)
    return s_logits, t_logits, labels, s_deltas, t_deltas, y_deltas


def test_all_off_is_plain_cross_entropy_plus_smooth_l1() -> None:
    s_logits, _, labels, s_deltas, _, y_deltas = _rcn_batch()
    n = len(labels)
    # torchvision's RCN convention: CE averaged over sampled RoIs; smooth L1 (beta 1/9) summed over
    # positives and divided by the number of sampled RoIs.
    ce = F.cross_entropy(s_logits, torch.tensor(labels))
    sl1 = F.smooth_l1_loss(s_deltas, y_deltas, beta=1 / 9, reduction="sum") / n
    total = classification_distillation_loss(ce, None) + regression_distillation_loss(sl1, None)
    expected = ref_cross_entropy(s_logits.tolist(), labels) + ref_smooth_l1(
        s_deltas.tolist(), y_deltas.tolist(), 1 / 9, n
    )
    assert total.item() == pytest.approx(expected, rel=1e-12)


def test_all_on_at_paper_defaults_matches_loops() -> None:
    s_logits, t_logits, labels, s_deltas, t_deltas, y_deltas = _rcn_batch()
    n = len(labels)
    w = [1.5, 1.0, 1.0, 1.0]
    ce = F.cross_entropy(s_logits, torch.tensor(labels))
    soft = weighted_soft_cross_entropy(s_logits, t_logits, w)
    sl1 = F.smooth_l1_loss(s_deltas, y_deltas, beta=1 / 9, reduction="sum") / n
    lb = bounded_regression_loss(s_deltas, t_deltas, y_deltas, normalizer=n)
    total = classification_distillation_loss(ce, soft) + regression_distillation_loss(sl1, lb)
    expected = (
        0.5 * ref_cross_entropy(s_logits.tolist(), labels)
        + 0.5 * ref_soft_ce(s_logits.tolist(), t_logits.tolist(), w, 1.0, n)
        + ref_smooth_l1(s_deltas.tolist(), y_deltas.tolist(), 1 / 9, n)
        + 0.5 * ref_bounded(s_deltas.tolist(), t_deltas.tolist(), y_deltas.tolist(), 0.0, n)
    )
    assert total.item() == pytest.approx(expected, rel=1e-12)


def test_defaults_are_the_papers() -> None:
    def defaults(fn: Callable[..., object]) -> dict[str, object]:
        return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}

    assert defaults(weighted_soft_cross_entropy) == {"temperature": 1.0, "normalizer": None}
    assert defaults(weighted_soft_binary_cross_entropy) == {
        "foreground_weight": 1.0, "temperature": 1.0, "normalizer": None,
    }
    assert defaults(bounded_regression_loss) == {"margin": 0.0, "normalizer": None}
    assert defaults(bound_active_fraction) == {"margin": 0.0}
    assert defaults(hint_loss) == {"kind": "l2"}
    assert defaults(classification_distillation_loss) == {"mu": 0.5}
    assert defaults(regression_distillation_loss) == {"nu": 0.5}
