"""Low-rank students: Tucker-2 / SVD compression of a trained detector and the rank report.

The paper (Chen et al. 2017) builds one student by Tucker decomposition of a trained network (a Tucker-
decomposed AlexNet, the scheme of Kim et al., ICLR 2016) and distils into it. Here:

- a k×k ``Conv2d`` (``groups == 1``) becomes :class:`Tucker2Conv`: 1×1 (C_in→R_in), k×k (R_in→R_out, same
  stride, padding, dilation), 1×1 (R_out→C_out, with the bias), initialised by a partial Tucker (HOSVD) of
  the kernel along its two channel modes;
- a 1×1 ``Conv2d`` or a ``Linear`` (the box head's ``TwoMLPHead``) becomes :class:`SVDLinear` /
  :class:`SVDConv`: two layers from the truncated SVD ``W ≈ (U√S)(√S Vᵀ)`` (the best rank-r approximation).

Ranks come from a whole-model compression ratio, an energy threshold (kept share of squared singular
values) or explicit per-layer ranks (:func:`plan_ranks`); a layer whose low-rank form would not be smaller
is left whole. The plan is the JSON-able ``model_spec["lowrank"]``::

    {"roi_heads.box_head.fc6": {"kind": "svd", "ranks": [32]},
     "backbone.body.s8.0.0": {"kind": "tucker2", "ranks": [24, 40]}}      # tucker2 ranks: [R_in, R_out]

which :func:`apply_lowrank_spec` turns into structure (``load_detector`` calls it before loading the
state dict strictly).

By default the box predictor (``roi_heads.box_predictor``) and the RPN head's 1×1 output layers
(``rpn.head.cls_logits``, ``rpn.head.bbox_pred``) stay whole: they hold a few thousand parameters and
decide every output, so compressing them saves nothing and costs accuracy.

Example::

    from detdistill.models import load_detector
    from detdistill.models.lowrank import compress_detector
    student, report = compress_detector(load_detector("teacher.pt"), ratio=3)
    print(report.format_table())
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import fnmatch
import json
import logging
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..utils import atomic_write_text

log = logging.getLogger("detdistill.models.lowrank")

DEFAULT_EXCLUDE: tuple[str, ...] = ("roi_heads.box_predictor*", "rpn.head.cls_logits", "rpn.head.bbox_pred")
KINDS = ("tucker2", "svd")


# ------------------------------------------------------------------------------------------- factor layers
class Tucker2Conv(nn.Sequential):
    """``first`` 1×1 (C_in→R_in) → ``core`` k×k (R_in→R_out) → ``last`` 1×1 (R_out→C_out, bias)."""

    def __init__(self, conv: nn.Conv2d, r_in: int, r_out: int) -> None:
        kw = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        super().__init__(OrderedDict(
            first=nn.Conv2d(conv.in_channels, r_in, 1, bias=False, **kw),
            core=nn.Conv2d(r_in, r_out, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                           dilation=conv.dilation, bias=False, **kw),
            last=nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None, **kw),
        ))

    @property
    def ranks(self) -> list[int]:
        return [self.first.out_channels, self.core.out_channels]


class SVDConv(nn.Sequential):
    """A 1×1 conv as ``first`` 1×1 (C_in→r, the stride and padding) → ``last`` 1×1 (r→C_out, bias)."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        kw = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        # The stride lives in the first layer so both run at the output resolution; zero padding commutes
        # with a bias-free linear map, so padding there is exact too.
        super().__init__(OrderedDict(
            first=nn.Conv2d(conv.in_channels, rank, 1, stride=conv.stride, padding=conv.padding,
                            dilation=conv.dilation, bias=False, **kw),
            last=nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, **kw),
        ))

    @property
    def ranks(self) -> list[int]:
        return [self.first.out_channels]


class SVDLinear(nn.Sequential):
    """A ``Linear`` as ``first`` (in→r, no bias) → ``last`` (r→out, bias)."""

    def __init__(self, linear: nn.Linear, rank: int) -> None:
        kw = {"device": linear.weight.device, "dtype": linear.weight.dtype}
        super().__init__(OrderedDict(
            first=nn.Linear(linear.in_features, rank, bias=False, **kw),
            last=nn.Linear(rank, linear.out_features, bias=linear.bias is not None, **kw),
        ))

    @property
    def ranks(self) -> list[int]:
        return [self.first.out_features]


LowRankLayer = Tucker2Conv | SVDConv | SVDLinear


# ------------------------------------------------------------------------------------------- the maths
def _work(t: torch.Tensor) -> torch.Tensor:
    # float32 at least (half types have no SVD); not float64: torch's CPU float64 SVD of a 256×6272 box-head
    # weight takes seconds, float32 a tenth of that, and float32 already reconstructs to ~1e-6.
    return t.detach().to(torch.float64 if t.dtype == torch.float64 else torch.float32)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # These SVDs are small (at most a few hundred rows): on a busy 2-core machine OpenMP's 2-thread LAPACK
    # ran them 30× slower than 1 thread (0.4 s vs 0.012 s for 128×1152), so they run single-threaded.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A @ B`` the best rank-``rank`` approximation of ``matrix`` (Eckart–Young).

    ``A = U_r √S_r`` (m×r), ``B = √S_r V_rᵀ`` (r×n): the singular values are split evenly so neither factor
    dwarfs the other when both are trained on.

    >>> a, b = truncated_svd(torch.eye(3), 2)
    >>> tuple(a.shape), tuple(b.shape)
    ((3, 2), (2, 3))
    """
    u, s, vh = torch.linalg.svd(_work(matrix), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(matrix.dtype), (root[:, None] * vh[:rank]).to(matrix.dtype)


def mode_factors(weight: torch.Tensor, r_in: int, r_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Partial Tucker (HOSVD) of a C_out×C_in×kh×kw kernel along its two channel modes.

    Returns ``(u_out, core, u_in)``: ``u_out`` C_out×R_out and ``u_in`` C_in×R_in have orthonormal columns
    (leading left singular vectors of the mode unfoldings) and ``core = W ×₀ u_outᵀ ×₁ u_inᵀ``, so that
    ``W ≈ core ×₀ u_out ×₁ u_in`` and equality holds at full ranks.
    """
    w = _work(weight)
    c_out, c_in = w.shape[:2]
    u_out = torch.linalg.svd(w.reshape(c_out, -1), full_matrices=False)[0][:, :r_out]
    u_in = torch.linalg.svd(w.transpose(0, 1).reshape(c_in, -1), full_matrices=False)[0][:, :r_in]
    core = torch.einsum("oihw,or,is->rshw", w, u_out, u_in)
    return u_out.to(weight.dtype), core.to(weight.dtype), u_in.to(weight.dtype)


@torch.no_grad()
def decompose_conv(conv: nn.Conv2d, r_in: int, r_out: int) -> Tucker2Conv:
    """Tucker-2 of a trained ``conv``, exact at ``r_in = C_in, r_out = C_out`` (when ``C_out <= C_in·k·k``).

    Example:
        >>> conv = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2)
        >>> x = torch.randn(1, 8, 9, 9)
        >>> bool((decompose_conv(conv, 8, 16)(x) - conv(x)).abs().max() < 1e-5)
        True
    """
    _check_conv(conv)
    _check_ranks("tucker2", [r_in, r_out], _max_ranks(conv), "decompose_conv")
    u_out, core, u_in = mode_factors(conv.weight, r_in, r_out)
    layer = Tucker2Conv(conv, r_in, r_out)
    layer.first.weight.copy_(u_in.t()[:, :, None, None])
    layer.core.weight.copy_(core)
    layer.last.weight.copy_(u_out[:, :, None, None])
    if conv.bias is not None:
        layer.last.bias.copy_(conv.bias)
    return layer


@torch.no_grad()
def decompose_svd(layer: nn.Linear | nn.Conv2d, rank: int) -> SVDLinear | SVDConv:
    """Truncated SVD of a ``Linear`` or 1×1 ``Conv2d`` into two layers (the best rank-``rank`` approximation).

    Example:
        >>> fc = nn.Linear(64, 16)
        >>> x = torch.randn(5, 64)
        >>> bool((decompose_svd(fc, 16)(x) - fc(x)).abs().max() < 1e-5)
        True
    """
    if isinstance(layer, nn.Linear):
        _check_ranks("svd", [rank], _max_ranks(layer), "decompose_svd")
        a, b = truncated_svd(layer.weight, rank)
        out: SVDLinear | SVDConv = SVDLinear(layer, rank)
        out.first.weight.copy_(b)
        out.last.weight.copy_(a)
    else:
        _check_conv(layer)
        if layer.kernel_size != (1, 1):
            raise ValueError(f"decompose_svd: a {layer.kernel_size} conv needs Tucker-2 (decompose_conv), "
                             "SVD is for 1×1 convs and Linear layers")
        _check_ranks("svd", [rank], _max_ranks(layer), "decompose_svd")
        a, b = truncated_svd(layer.weight.flatten(1), rank)
        out = SVDConv(layer, rank)
        out.first.weight.copy_(b[:, :, None, None])
        out.last.weight.copy_(a[:, :, None, None])
    if layer.bias is not None:
        out.last.bias.copy_(layer.bias)
    return out


def decompose(layer: nn.Module, kind: str, ranks: Sequence[int]) -> LowRankLayer:
    """:func:`decompose_conv` (``kind="tucker2"``, ranks ``[R_in, R_out]``) or :func:`decompose_svd`."""
    if kind == "tucker2":
        return decompose_conv(layer, int(ranks[0]), int(ranks[1]))  # type: ignore[arg-type]
    return decompose_svd(layer, int(ranks[0]))  # type: ignore[arg-type]


def _check_conv(conv: nn.Module) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"only groups=1 convs with zero padding decompose (got groups={conv.groups}, "
                         f"padding_mode={conv.padding_mode!r})")


def layer_kind(layer: nn.Module) -> str | None:
    """``"tucker2"``, ``"svd"`` or None (not decomposable: depthwise/grouped, non-zero padding, other types)."""
    if isinstance(layer, nn.Linear):
        return "svd"
    if isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros":
        return "svd" if layer.kernel_size == (1, 1) else "tucker2"
    return None


def _max_ranks(layer: nn.Module) -> list[int]:
    if isinstance(layer, nn.Linear):
        return [min(layer.in_features, layer.out_features)]
    assert isinstance(layer, nn.Conv2d)
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    if taps == 1:
        return [min(layer.in_channels, layer.out_channels)]
    return [min(layer.in_channels, layer.out_channels * taps), min(layer.out_channels, layer.in_channels * taps)]


def _check_ranks(kind: str, ranks: Sequence[Any], limits: Sequence[int], where: str) -> list[int]:
    want = 2 if kind == "tucker2" else 1
    what = "[R_in, R_out]" if kind == "tucker2" else "[rank]"
    if not isinstance(ranks, (list, tuple)) or len(ranks) != want:
        raise ValueError(f"{where}: {kind} ranks must be {what}, got {ranks!r}")
    out = []
    for r, hi in zip(ranks, limits):
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= hi:
            raise ValueError(f"{where}: {kind} ranks {list(ranks)} out of range: each must be an integer in "
                             f"1..{list(limits)} for this layer")
        out.append(int(r))
    return out


def layer_params(layer: nn.Module, kind: str | None = None, ranks: Sequence[int] | None = None) -> int:
    """Parameters of ``layer`` whole (``ranks=None``) or in its low-rank form at ``ranks``."""
    bias = int(getattr(layer, "bias", None) is not None)
    if isinstance(layer, nn.Linear):
        i, o, taps = layer.in_features, layer.out_features, 1
    else:
        assert isinstance(layer, nn.Conv2d)
        i, o, taps = layer.in_channels // layer.groups, layer.out_channels, layer.kernel_size[0] * layer.kernel_size[1]
        if ranks is not None:
            i = layer.in_channels
    if ranks is None:
        return o * i * taps + bias * o
    if kind == "tucker2":
        r_in, r_out = ranks
        return r_in * i + r_out * r_in * taps + o * r_out + bias * o
    (r,) = ranks
    return r * i + o * r + bias * o


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

    def objective(sigma2: float) -> float:
        x = s2 / (M * sigma2)
        z1, z2 = x[x > x_ub], np.maximum(x[x <= x_ub], 1e-300)
        tau = 0.5 * (z1 - (1 + alpha) + np.sqrt((z1 - (1 + alpha)) ** 2 - 4 * alpha))
        return float(np.sum(z2 - np.log(z2)) + np.sum(z1 - tau) + np.sum(np.log((tau + 1) / z1))
                     + alpha * np.sum(np.log(tau / alpha + 1)))

    if upper <= lower:
        sigma2 = upper
    else:
        # The objective is one-dimensional but not convex: a log grid finds the basin, golden section refines.
        grid = np.geomspace(lower, upper, 200)
        i = int(np.argmin([objective(g) for g in grid]))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        phi = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            c, d = b - phi * (b - a), a + phi * (b - a)
            a, b = (a, d) if objective(c) < objective(d) else (c, b)
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


# ------------------------------------------------------------------------------------------- rank plans
def candidate_layers(model: nn.Module, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, nn.Module]:
    """The layers a plan may compress: ``Conv2d`` (groups 1, zero padding) and ``Linear``, minus ``exclude``
    (fnmatch patterns on module names) and minus layers that are already factors of a low-rank layer."""
    out: dict[str, nn.Module] = {}
    factors: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, (Tucker2Conv, SVDConv, SVDLinear)):
            factors.update(f"{name}.{child}" for child, _ in module.named_children())
            continue
        if name in factors or layer_kind(module) is None:
            continue
        if any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            continue
        out[name] = module
    return out


def _normalise_entry(name: str, entry: Any, layer: nn.Module, where: str) -> dict[str, Any]:
    kind = layer_kind(layer)
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - {"kind", "ranks"})
        if unknown or "ranks" not in entry:
            raise ValueError(f"{where}: layer '{name}' needs {{'kind', 'ranks'}}, got keys {sorted(entry)}")
        if entry.get("kind", kind) != kind:
            shape = "×".join(map(str, layer.weight.shape))
            raise ValueError(f"{where}: layer '{name}' is a {shape} {type(layer).__name__}: its kind is '{kind}', "
                             f"not {entry.get('kind')!r}")
        ranks = entry["ranks"]
    else:
        ranks = entry
    ranks = _check_ranks(kind, ranks, _max_ranks(layer), f"{where}: layer '{name}'")  # type: ignore[arg-type]
    return {"kind": kind, "ranks": ranks}


def _unknown_layer(name: str, known: Iterable[str], where: str) -> ValueError:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"{where}: layer '{name}' is not a decomposable layer of the model{hint}")


def plan_ranks(model: nn.Module, *, ratio: float | None = None, energy: float | None = None,
               ranks: Mapping[str, Any] | None = None, vbmf: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE,
               source: str = "ranks") -> dict[str, dict[str, Any]]:
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
        raise ValueError("choose ranks by exactly one of ratio, energy, ranks or vbmf")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1] (the kept share of squared singular values), got {energy}")
    if ratio is not None and (not ratio > 1.0 or not math.isfinite(ratio)):
        raise ValueError(f"ratio must be a number > 1 (parameters before / after), got {ratio}")
    layers = candidate_layers(model, exclude)
    if ranks is not None:
        if not isinstance(ranks, Mapping):
            raise ValueError(f"{source}: expected an object {{layer name: ranks}}, got {type(ranks).__name__}")
        plan = {}
        for name, entry in ranks.items():
            if name not in layers:
                if name in candidate_layers(model, exclude=()):
                    raise ValueError(f"{source}: layer '{name}' is kept whole by the exclude patterns "
                                     f"{list(exclude)}")
                raise _unknown_layer(name, layers, source)
            plan[name] = _normalise_entry(name, entry, layers[name], source)
        return plan
    with _one_thread():
        spec = {name: spectra(layer) for name, layer in layers.items()}

    def at(e: float | None) -> dict[str, dict[str, Any]]:
        out = {}
        for name, layer in layers.items():
            kind = layer_kind(layer)
            if e is None:
                rs = [min(vbmf_rank(s, shape), hi) for s, shape, hi in
                      zip(spec[name], unfolding_shapes(layer), _max_ranks(layer))]
            else:
                rs = [energy_rank(s, e) for s in spec[name]]
            if layer_params(layer, kind, rs) < layer_params(layer):
                out[name] = {"kind": kind, "ranks": rs}
        return out

    if vbmf:
        return at(None)

    if energy is not None:
        return at(float(energy))
    assert ratio is not None
    total = sum(p.numel() for p in model.parameters())

    def achieved(plan: Mapping[str, Mapping[str, Any]]) -> float:
        saved = sum(layer_params(layers[n]) - layer_params(layers[n], p["kind"], p["ranks"]) for n, p in plan.items())
        return total / (total - saved)

    lo, hi = 0.0, 1.0
    if achieved(at(lo)) < ratio:
        raise ValueError(f"ratio {ratio} is out of reach: rank 1 in every compressible layer gives "
                         f"{achieved(at(lo)):.2f}× (the rest of the model is whole); lower --ratio or "
                         "compress more layers")
    for _ in range(40):
        mid = (lo + hi) / 2
        if achieved(at(mid)) >= ratio:
            lo = mid
        else:
            hi = mid
    return at(lo)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def apply_lowrank_spec(model: nn.Module, lowrank: Mapping[str, Any]) -> nn.Module:
    """Replace each layer the spec names by its low-rank form, factorising the layer's current weights.

    ``load_detector`` calls this on a freshly built model, then loads the checkpoint's state dict strictly
    into the new structure; on a trained model the factors are the compression itself. Modifies ``model``
    in place and returns it.

    Example:
        >>> from detdistill.models import build_detector
        >>> spec = {"roi_heads.box_head.fc6": {"kind": "svd", "ranks": [8]}}
        >>> m = apply_lowrank_spec(build_detector("cpu_tiny", 7), spec)
        >>> m.roi_heads.box_head.fc6.ranks
        [8]
    """
    if not isinstance(lowrank, Mapping):
        raise ValueError(f"model_spec.lowrank must be an object {{layer: {{kind, ranks}}}}, got "
                         f"{type(lowrank).__name__}")
    modules = dict(model.named_modules())
    for name, entry in lowrank.items():
        layer = modules.get(name)
        if layer is None or layer_kind(layer) is None:
            raise _unknown_layer(name, [n for n, m in modules.items() if layer_kind(m)], "model_spec.lowrank")
        e = _normalise_entry(name, entry, layer, "model_spec.lowrank")
        with _one_thread():
            _set_module(model, name, decompose(layer, e["kind"], e["ranks"]))
    return model


# ------------------------------------------------------------------------------------------- the report
@dataclass
class LayerReport:
    """One compressed layer: ``shape`` is (C_out, C_in, kh, kw) or (out, in); FLOPs at the report's input."""

    name: str
    kind: str
    shape: list[int]
    ranks: list[int]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    @property
    def ratio(self) -> float:
        return self.params_before / self.params_after


@dataclass
class CompressionReport:
    """Per-layer and total parameters and FLOPs before and after; ratios are before / after.

    ``layers_*`` totals cover the compressed layers; ``model_*`` the whole detector (``sum(p.numel())`` and
    ``count_flops`` of one eval forward at ``image_size``, a multiply-add counted as 2 FLOPs). Layer FLOPs
    count each layer at the spatial size (convs) or the number of RoIs (box head) it saw in one eval forward
    of the original model on a random ``image_size`` image.
    """

    layers: list[LayerReport]
    model_params_before: int
    model_params_after: int
    model_flops_before: int
    model_flops_after: int
    image_size: list[int]
    left_whole: list[str] = field(default_factory=list)

    @property
    def layer_params_before(self) -> int:
        return sum(r.params_before for r in self.layers)

    @property
    def layer_params_after(self) -> int:
        return sum(r.params_after for r in self.layers)

    @property
    def layers_ratio(self) -> float:
        return self.layer_params_before / max(self.layer_params_after, 1)

    @property
    def model_ratio(self) -> float:
        return self.model_params_before / self.model_params_after

    def lowrank_spec(self) -> dict[str, dict[str, Any]]:
        return {r.name: {"kind": r.kind, "ranks": list(r.ranks)} for r in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(r) | {"ratio": r.ratio} for r in self.layers],
                "left_whole": list(self.left_whole), "image_size": list(self.image_size),
                "totals": {"layer_params_before": self.layer_params_before,
                           "layer_params_after": self.layer_params_after, "layers_ratio": self.layers_ratio,
                           "model_params_before": self.model_params_before,
                           "model_params_after": self.model_params_after, "model_ratio": self.model_ratio,
                           "model_flops_before": self.model_flops_before,
                           "model_flops_after": self.model_flops_after}}

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    def format_table(self) -> str:
        lines = ["| layer | kind | shape | ranks | params before → after | MFLOPs before → after | ratio |",
                 "| --- | --- | --- | --- | ---: | ---: | ---: |"]
        for r in self.layers:
            lines.append(f"| {r.name} | {r.kind} | {'×'.join(map(str, r.shape))} | {r.ranks} | "
                         f"{r.params_before:,} → {r.params_after:,} | {r.flops_before / 1e6:.2f} → "
                         f"{r.flops_after / 1e6:.2f} | {r.ratio:.2f}× |")
        lines.append(f"| **compressed layers** | | | | {self.layer_params_before:,} → {self.layer_params_after:,} "
                     f"| {sum(r.flops_before for r in self.layers) / 1e6:.2f} → "
                     f"{sum(r.flops_after for r in self.layers) / 1e6:.2f} | {self.layers_ratio:.2f}× |")
        lines.append(f"| **whole model** | | | | {self.model_params_before:,} → {self.model_params_after:,} | "
                     f"{self.model_flops_before / 1e6:.2f} → {self.model_flops_after / 1e6:.2f} | "
                     f"{self.model_ratio:.2f}× |")
        h, w = self.image_size
        lines.append(f"\n{len(self.layers)} layers compressed, {len(self.left_whole)} candidate layers left whole "
                     f"(low-rank form not smaller, or excluded by ranks); FLOPs at a {h}×{w} input")
        return "\n".join(lines)


def _layer_io(model: nn.Module, names: Iterable[str], image: torch.Tensor) -> dict[str, tuple[int, int]]:
    """``name -> (input positions, output positions)``: H×W for convs, rows (RoIs) for Linear layers."""
    seen: dict[str, tuple[int, int]] = {}
    handles = []
    modules = dict(model.named_modules())

    def hook(name: str):  # noqa: ANN202
        def fn(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            if isinstance(module, nn.Conv2d):
                seen[name] = (x.shape[0] * x.shape[-2] * x.shape[-1],
                              output.shape[0] * output.shape[-2] * output.shape[-1])
            else:
                rows = x.shape[:-1].numel()
                seen[name] = (rows, rows)
        return fn

    for name in names:
        handles.append(modules[name].register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model([image])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def layer_flops(layer: nn.Module, positions: tuple[int, int], kind: str | None = None,
                ranks: Sequence[int] | None = None) -> int:
    """FLOPs (2 per multiply-add) of ``layer`` whole or at ``ranks``, given its (input, output) positions."""
    pin, pout = positions
    if isinstance(layer, nn.Linear):
        i, o, taps = layer.in_features, layer.out_features, 1
    else:
        i, o, taps = layer.in_channels, layer.out_channels, layer.kernel_size[0] * layer.kernel_size[1]
    if ranks is None:
        return 2 * pout * o * (i // getattr(layer, "groups", 1)) * taps
    if kind == "tucker2":
        r_in, r_out = ranks
        # The first 1×1 runs at the input resolution (before the core's stride).
        return 2 * (pin * r_in * i + pout * r_out * r_in * taps + pout * o * r_out)
    (r,) = ranks
    return 2 * pout * (r * i + o * r)


def _input_size(model: nn.Module, image_size: Sequence[int] | None) -> tuple[int, int]:
    if image_size is not None:
        return int(image_size[0]), int(image_size[-1])
    transform = getattr(model, "transform", None)
    if transform is None:
        raise ValueError("image_size is needed for a model without a GeneralizedRCNNTransform")
    side = int(transform.min_size[-1])
    return side, side


def compress_detector(model: nn.Module, *, ratio: float | None = None, energy: float | None = None,
                      ranks: Mapping[str, Any] | None = None, vbmf: bool = False,
                      exclude: Sequence[str] = DEFAULT_EXCLUDE, image_size: Sequence[int] | None = None,
                      source: str = "ranks") -> tuple[nn.Module, CompressionReport]:
    """A low-rank copy of a trained detector and its :class:`CompressionReport` (``model`` is untouched).

    The copy's ``detdistill_spec["lowrank"]`` holds the plan, so :func:`~detdistill.models.save_detector`
    writes a checkpoint that ``load_detector`` (and so ``train``, ``evaluate``, ``distill``, ``predict``)
    rebuilds. ``image_size`` (default: the model's ``min_size`` square) is where FLOPs are counted.

    Example:
        >>> from detdistill.models import build_detector
        >>> teacher = build_detector("cpu_tiny", 7)
        >>> student, report = compress_detector(teacher, ratio=2)
        >>> report.model_ratio >= 2, report.model_params_after == sum(p.numel() for p in student.parameters())
        (True, True)
    """
    from .describe import count_flops

    if getattr(model, "detdistill_spec", {}).get("lowrank"):
        raise ValueError("the model is already low-rank (model_spec.lowrank is set); compress the original")
    plan = plan_ranks(model, ratio=ratio, energy=energy, ranks=ranks, vbmf=vbmf, exclude=exclude, source=source)
    h, w = _input_size(model, image_size)
    device = next(model.parameters()).device
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    candidates = candidate_layers(model, exclude)
    io = _layer_io(model, plan, image)
    student = apply_lowrank_spec(copy.deepcopy(model), plan)
    if hasattr(model, "detdistill_spec"):
        student.detdistill_spec = {**copy.deepcopy(model.detdistill_spec), "lowrank": copy.deepcopy(plan)}
    rows = []
    for name, p in plan.items():
        layer = candidates[name]
        pos = io.get(name, (0, 0))  # a layer the eval forward never reaches costs nothing there
        rows.append(LayerReport(
            name=name, kind=p["kind"], shape=list(layer.weight.shape), ranks=list(p["ranks"]),
            params_before=layer_params(layer),
            params_after=sum(q.numel() for q in student.get_submodule(name).parameters()),
            flops_before=layer_flops(layer, pos), flops_after=layer_flops(layer, pos, p["kind"], p["ranks"])))
    report = CompressionReport(
        layers=rows, model_params_before=sum(q.numel() for q in model.parameters()),
        model_params_after=sum(q.numel() for q in student.parameters()),
        model_flops_before=count_flops(model, image), model_flops_after=count_flops(student, image),
        image_size=[h, w], left_whole=[n for n in candidates if n not in plan])
    return student, report


def load_ranks_file(path: str | Path) -> dict[str, Any]:
    """Read a ``{layer: [ranks]}`` (or ``{layer: {kind, ranks}}``) JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ranks file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty object {{layer name: ranks}}, got {type(data).__name__}")
    return data


def compress_checkpoint(checkpoint: str | Path, out: str | Path, *, ratio: float | None = None,
                        energy: float | None = None, ranks: str | Path | Mapping[str, Any] | None = None,
                        vbmf: bool = False, exclude: Sequence[str] = (),
                        report_json: str | Path | None = None) -> CompressionReport:
    """Compress a trained checkpoint into a low-rank student checkpoint (+ the report as JSON).

    ``exclude`` patterns are added to :data:`DEFAULT_EXCLUDE`. ``report_json`` defaults to
    ``<out stem>.compression.json`` beside ``out``.

    Example::

        report = compress_checkpoint("teacher.pt", "tucker3x.pt", ratio=3)
        student = load_detector("tucker3x.pt")       # train / distill / evaluate it like any checkpoint
    """
    from .checkpoint import read_checkpoint, save_detector
    from .registry import build_from_spec
    from .weights import check_and_load

    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = read_checkpoint(checkpoint)
    if ckpt["model_spec"].get("lowrank"):
        raise ValueError(f"{checkpoint}: model_spec.lowrank is already set; compress the original model")
    model = build_from_spec(ckpt["model_spec"], source=checkpoint)
    check_and_load(model, ckpt["state_dict"], checkpoint, what=f"'{ckpt['model_spec']['name']}' detector")
    source = "ranks"
    if isinstance(ranks, (str, Path)):
        source, ranks = str(ranks), load_ranks_file(ranks)
    student, report = compress_detector(model.eval(), ratio=ratio, energy=energy, ranks=ranks, vbmf=vbmf,
                                        exclude=(*DEFAULT_EXCLUDE, *exclude), source=source)
    rule = ({"ratio": ratio} if ratio is not None else {"energy": energy} if energy is not None
            else {"vbmf": True} if vbmf else {"ranks": source})
    meta = {"kind": "compress", "compressed_from": str(checkpoint), "rule": rule,
            "compression": {"model_ratio": report.model_ratio, "layers_ratio": report.layers_ratio,
                            "model_params_before": report.model_params_before,
                            "model_params_after": report.model_params_after},
            "source_metadata": {k: v for k, v in ckpt["metadata"].items() if k in ("kind", "dataset", "step")}}
    save_detector(out, student, ckpt["class_names"], ckpt["category_ids"], meta)
    report.save_json(report_json or out.with_name(out.stem + ".compression.json"))
    return report
