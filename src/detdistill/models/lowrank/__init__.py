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

The package: :mod:`.layers` (factor layers, decompositions, parameter and FLOP counts; a leaf),
:mod:`.ranks` (spectra, EVBMF, energy ranks, the plan), :mod:`.report` (:class:`CompressionReport`) and
:mod:`.compress` (the workflows on checkpoints). Importing it registers :func:`apply_lowrank_spec` as the
factory's hook for ``model_spec["lowrank"]``.
"""

from ..registry import register_spec_hook
from .compress import compress_checkpoint, compress_detector, load_ranks_file
from .layers import (
    DEFAULT_EXCLUDE,
    KINDS,
    LayerShape,
    LowRankLayer,
    SVDConv,
    SVDLinear,
    Tucker2Conv,
    apply_lowrank_spec,
    candidate_layers,
    decompose,
    decompose_conv,
    decompose_svd,
    layer_flops,
    layer_kind,
    layer_params,
    layer_shape,
    mode_factors,
    truncated_svd,
)
from .ranks import achieved_ratio, energy_rank, plan_at, plan_ranks, spectra, unfolding_shapes, vbmf_rank
from .report import CompressionReport, LayerReport, layer_io

register_spec_hook("lowrank", apply_lowrank_spec)

__all__ = [
    "DEFAULT_EXCLUDE", "KINDS", "CompressionReport", "LayerReport", "LayerShape", "LowRankLayer", "SVDConv",
    "SVDLinear", "Tucker2Conv", "achieved_ratio", "apply_lowrank_spec", "candidate_layers", "compress_checkpoint",
    "compress_detector", "decompose", "decompose_conv", "decompose_svd", "energy_rank", "layer_flops", "layer_io",
    "layer_kind", "layer_params", "layer_shape", "load_ranks_file", "mode_factors", "plan_at", "plan_ranks",
    "spectra", "truncated_svd", "unfolding_shapes", "vbmf_rank",
]
