"""Factor layers and decompositions: Tucker-2 / SVD forms of ``Conv2d`` and ``Linear``, and their sizes.

A leaf of the package (torch only), so that anything may import it. :func:`apply_lowrank_spec` turns the
JSON-able plan ``model_spec["lowrank"]`` into structure; :func:`layer_shape` is the one reading of a layer's
shape behind both :func:`layer_params` and :func:`layer_flops`.
"""

from __future__ import annotations
from ...errors import ModelError

import contextlib
import difflib
import fnmatch
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import torch
from torch import nn

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
        raise ModelError(f"{where}: {kind} ranks must be {what}, got {ranks!r}")
    out = []
    for r, hi in zip(ranks, limits):
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= hi:
            raise ModelError(f"{where}: {kind} ranks {list(ranks)} out of range: each must be an integer in "
                             f"1..{list(limits)} for this layer")
        out.append(int(r))
    return out



class LayerShape(NamedTuple):
    """What sizes a ``Conv2d`` or ``Linear``: channels (features), kernel taps (kh·kw, 1 for Linear), groups."""

    in_channels: int
    out_channels: int
    taps: int
    groups: int
    bias: bool


def layer_shape(layer: nn.Module) -> LayerShape:
    """The :class:`LayerShape` of a ``Linear`` or ``Conv2d``.

    >>> layer_shape(nn.Conv2d(8, 16, 3, groups=2))
    LayerShape(in_channels=8, out_channels=16, taps=9, groups=2, bias=True)
    """
    bias = getattr(layer, "bias", None) is not None
    if isinstance(layer, nn.Linear):
        return LayerShape(layer.in_features, layer.out_features, 1, 1, bias)
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"expected an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    return LayerShape(layer.in_channels, layer.out_channels, layer.kernel_size[0] * layer.kernel_size[1],
                      layer.groups, bias)


def layer_params(layer: nn.Module, kind: str | None = None, ranks: Sequence[int] | None = None) -> int:
    """Parameters of ``layer`` whole (``ranks=None``) or in its low-rank form at ``ranks``.

    >>> layer_params(nn.Linear(64, 16)), layer_params(nn.Linear(64, 16), "svd", [4])
    (1040, 336)
    """
    i, o, taps, groups, bias = layer_shape(layer)
    if ranks is None:
        return o * (i // groups) * taps + bias * o
    if kind == "tucker2":
        r_in, r_out = ranks
        return r_in * i + r_out * r_in * taps + o * r_out + bias * o
    (r,) = ranks
    return r * i + o * r + bias * o


def layer_flops(layer: nn.Module, positions: tuple[int, int], kind: str | None = None,
                ranks: Sequence[int] | None = None) -> int:
    """FLOPs (2 per multiply-add) of ``layer`` whole or at ``ranks``, given its (input, output) positions.

    >>> layer_flops(nn.Linear(64, 16), (10, 10)), layer_flops(nn.Linear(64, 16), (10, 10), "svd", [4])
    (20480, 6400)
    """
    pin, pout = positions
    i, o, taps, groups, _ = layer_shape(layer)
    if ranks is None:
        return 2 * pout * o * (i // groups) * taps
    if kind == "tucker2":
        r_in, r_out = ranks
        # The first 1×1 runs at the input resolution (before the core's stride).
        return 2 * (pin * r_in * i + pout * r_out * r_in * taps + pout * o * r_out)
    (r,) = ranks
    return 2 * pout * (r * i + o * r)


# ------------------------------------------------------------------------------------------- plans → structure
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
            raise ModelError(f"{where}: layer '{name}' needs {{'kind', 'ranks'}}, got keys {sorted(entry)}")
        if entry.get("kind", kind) != kind:
            shape = "×".join(map(str, layer.weight.shape))
            raise ModelError(f"{where}: layer '{name}' is a {shape} {type(layer).__name__}: its kind is '{kind}', "
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
        raise ModelError(f"model_spec.lowrank must be an object {{layer: {{kind, ranks}}}}, got "
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

