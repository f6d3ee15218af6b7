"""Rank planning: spectra, EVBMF and energy ranks, and the whole-model plan (:func:`plan_ranks`).

A plan is ``{layer name: {"kind", "ranks"}}``, the JSON-able ``model_spec["lowrank"]``. A compression ratio
is reached with one energy threshold for every layer, found by bisection on the achieved ratio.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .layers import (DEFAULT_EXCLUDE, _max_ranks, _normalise_entry, _one_thread, _unknown_layer, _work,
                     candidate_layers, layer_kind, layer_params)
from ...errors import ModelError

Plan = dict[str, dict[str, Any]]


def spectra(layer: nn.Module) -> list[torch.Tensor]:
    """Squared singular values of the matrices whose ranks are chosen: ``[W]`` for SVD, the input and output
    channel unfoldings for Tucker-2 (same order as the ranks, ``[R_in, R_out]``)."""
    w = _work(layer.weight)
    if layer_kind(layer) == "svd":
        return [torch.linalg.svdvals(w.flatten(1)) ** 2]
    c_out, c_in = w.shape[:2]
    return [torch.linalg.svdvals(w.transpose(0, 1).reshape(c_in, -1)) ** 2,
            torch.linalg.svdvals(w.reshape(c_out, -1)) ** 2]


def unfolding_shapes(layer: nn.Module) -> list[tuple[int, int]]:
    """Shapes of the matrices :func:`spectra` decomposes, in the same order."""
    w = layer.weight
    if layer_kind(layer) == "svd":
        return [(w.shape[0], w[0].numel())]
    c_out, c_in = w.shape[:2]
    return [(c_in, w.numel() // c_in), (c_out, w.numel() // c_out)]


def _evbmf_objective(sigma2: float, s2: np.ndarray, M: int, alpha: float, x_ub: float) -> float:
    # EVBMF's free energy as a function of the noise variance (Nakajima et al. 2013); vbmf_rank minimises it.
    x = s2 / (M * sigma2)
    z1, z2 = x[x > x_ub], np.maximum(x[x <= x_ub], 1e-300)
    tau = 0.5 * (z1 - (1 + alpha) + np.sqrt((z1 - (1 + alpha)) ** 2 - 4 * alpha))
    return float(np.sum(z2 - np.log(z2)) + np.sum(z1 - tau) + np.sum(np.log((tau + 1) / z1))
                 + alpha * np.sum(np.log(tau / alpha + 1)))


def vbmf_rank(squared: torch.Tensor, shape: tuple[int, int]) -> int:
    """Rank chosen by empirical variational Bayesian matrix factorisation (EVBMF; Nakajima et al., JMLR 2013,
    the analytic global solution with the noise variance estimated), from the squared singular values of an
    L×M matrix. Kim et al. (ICLR 2016) pick Tucker ranks this way, one channel unfolding at a time.

    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randn(30, 4, generator=g) @ torch.randn(4, 80, generator=g) + 0.1 * torch.randn(30, 80, generator=g)
    >>> vbmf_rank(torch.linalg.svdvals(y) ** 2, (30, 80))
    4
    """
    s2 = squared.detach().double().cpu().numpy()
    L, M = sorted(int(d) for d in shape)
    s2 = np.sort(s2)[::-1][:L]
    if len(s2) < L:  # zero singular values beyond the numerical rank
        s2 = np.concatenate([s2, np.zeros(L - len(s2))])
    if s2.sum() <= 0:
        return 1
    alpha = L / M
    tau_ub = 2.5129 * math.sqrt(alpha)
    x_ub = (1 + tau_ub) * (1 + alpha / tau_ub)
    h_ub = min(math.ceil(L / (1 + alpha)) - 1, L) - 1
    upper = float(s2.sum() / (L * M))
    lower = max(float(s2[h_ub + 1]) / (M * x_ub), float(np.mean(s2[h_ub + 1:])) / M, upper * 1e-12)

    if upper <= lower:
        sigma2 = upper
    else:
        # The objective is one-dimensional but not convex: a log grid finds the basin, golden section refines.
        grid = np.geomspace(lower, upper, 200)
        i = int(np.argmin([_evbmf_objective(g, s2, M, alpha, x_ub) for g in grid]))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        phi = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            c, d = b - phi * (b - a), a + phi * (b - a)
            left, right = _evbmf_objective(c, s2, M, alpha, x_ub), _evbmf_objective(d, s2, M, alpha, x_ub)
            a, b = (a, d) if left < right else (c, b)
        sigma2 = (a + b) / 2
    threshold = M * sigma2 * (1 + tau_ub) * (1 + alpha / tau_ub)
    return max(1, int((s2 > threshold).sum()))


def energy_rank(squared: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading squared singular values hold at least ``energy`` of their sum.

    >>> energy_rank(torch.tensor([9.0, 4.0, 1.0]), 0.9)
    2
    """
    total = float(squared.sum())
    if total <= 0:
        return 1
    share = torch.cumsum(squared, 0) / total
    # 1e-12: cumulative sums of doubles can fall a hair short of 1.0 at full rank.
    return min(int((share < energy - 1e-12).sum()) + 1, len(squared))



def plan_ranks(model: nn.Module, *, ratio: float | None = None, energy: float | None = None,
               ranks: Mapping[str, Any] | None = None, vbmf: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE,
               source: str = "ranks") -> Plan:
    """Choose per-layer ranks; exactly one of ``ratio``, ``energy``, ``ranks``, ``vbmf``.

    - ``energy`` in (0, 1]: per layer (and per Tucker mode) the smallest rank keeping that share of the
      squared singular values.
    - ``ratio`` > 1: whole-model parameters before / after at least ``ratio``, reached with one energy
      threshold for every layer (bisection on it), so each layer keeps ranks in proportion to how much of
      its spectrum matters.
    - ``ranks``: ``{layer: [ranks]}`` or ``{layer: {"kind", "ranks"}}``, applied as given.
    - ``vbmf``: automatic ranks per matrix by :func:`vbmf_rank` (no target; the noise level is estimated).

    With ``ratio``, ``energy`` and ``vbmf``, a layer whose low-rank form would not have fewer parameters stays
    whole.

    Example:
        >>> from detdistill.models import build_detector
        >>> plan = plan_ranks(build_detector("cpu_tiny", 7), ranks={"roi_heads.box_head.fc6": [8]})
        >>> plan
        {'roi_heads.box_head.fc6': {'kind': 'svd', 'ranks': [8]}}
    """
    if sum(x is not None for x in (ratio, energy, ranks)) + bool(vbmf) != 1:
        raise ModelError("choose ranks by exactly one of ratio, energy, ranks or vbmf")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ModelError(f"energy must be in (0, 1] (the kept share of squared singular values), got {energy}")
    if ratio is not None and (not ratio > 1.0 or not math.isfinite(ratio)):
        raise ModelError(f"ratio must be a number > 1 (parameters before / after), got {ratio}")
    layers = candidate_layers(model, exclude)
    if ranks is not None:
        if not isinstance(ranks, Mapping):
            raise ModelError(f"{source}: expected an object {{layer name: ranks}}, got {type(ranks).__name__}")
        plan = {}
        for name, entry in ranks.items():
            if name not in layers:
                if name in candidate_layers(model, exclude=()):
                    raise ModelError(f"{source}: layer '{name}' is kept whole by the exclude patterns "
                                     f"{list(exclude)}")
                raise _unknown_layer(name, layers, source)
            plan[name] = _normalise_entry(name, entry, layers[name], source)
        return plan
    with _one_thread():
        spec = {name: spectra(layer) for name, layer in layers.items()}
    if vbmf:
        return plan_at(layers, spec, None)
    if energy is not None:
        return plan_at(layers, spec, float(energy))
    assert ratio is not None
    total = sum(p.numel() for p in model.parameters())
    lo, hi = 0.0, 1.0
    reach = achieved_ratio(layers, plan_at(layers, spec, lo), total)
    if reach < ratio:
        raise ModelError(f"ratio {ratio} is out of reach: rank 1 in every compressible layer gives "
                         f"{reach:.2f}× (the rest of the model is whole); lower --ratio or "
                         "compress more layers")
    for _ in range(40):
        mid = (lo + hi) / 2
        if achieved_ratio(layers, plan_at(layers, spec, mid), total) >= ratio:
            lo = mid
        else:
            hi = mid
    return plan_at(layers, spec, lo)


def plan_at(layers: Mapping[str, nn.Module], spectra_by_layer: Mapping[str, Sequence[torch.Tensor]],
            energy: float | None) -> Plan:
    """The plan keeping ``energy`` of every spectrum (EVBMF ranks when None); layers not made smaller stay whole.

    >>> fc = nn.Linear(64, 64)
    >>> plan_at({"fc": fc}, {"fc": spectra(fc)}, 1e-9)
    {'fc': {'kind': 'svd', 'ranks': [1]}}
    """
    out = {}
    for name, layer in layers.items():
        kind = layer_kind(layer)
        if energy is None:
            rs = [min(vbmf_rank(s, shape), hi) for s, shape, hi in
                  zip(spectra_by_layer[name], unfolding_shapes(layer), _max_ranks(layer))]
        else:
            rs = [energy_rank(s, energy) for s in spectra_by_layer[name]]
        if layer_params(layer, kind, rs) < layer_params(layer):
            out[name] = {"kind": kind, "ranks": rs}
    return out


def achieved_ratio(layers: Mapping[str, nn.Module], plan: Mapping[str, Mapping[str, Any]], total: int) -> float:
    """Whole-model parameters before / after ``plan``, for a model of ``total`` parameters.

    >>> achieved_ratio({"fc": nn.Linear(64, 16)}, {"fc": {"kind": "svd", "ranks": [4]}}, 2000)
    1.5432098765432098
    """
    saved = sum(layer_params(layers[n]) - layer_params(layers[n], p["kind"], p["ranks"]) for n, p in plan.items())
    return total / (total - saved)
