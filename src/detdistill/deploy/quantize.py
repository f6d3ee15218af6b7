"""int8 post-training quantisation with the accuracy kept (NNCF on an OpenVINO model).

Calibration images come from a training split, never test. The quantised model is scored on validation against
the fp32 model; when mAP@0.5 falls by more than ``max_drop``, the next attempt tries again with less at stake:
first the whole model is quantised (NNCF's defaults), then with asymmetric activation ranges, then with the heads
(RPN head, box head, box predictor: the layers whose outputs are scores and box deltas) also kept in fp32, and last
NNCF's accuracy control, which ranks every quantised operation by what it costs on validation and returns the most
costly to fp32, one at a time, until the drop is within ``max_drop``. Each attempt, its score and what stayed in
fp32 are recorded in the manifest. If no attempt keeps the drop within ``max_drop`` the export stops with nothing
written.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .artifact import ArtifactError
from .runtime import import_runtime

Log = Callable[[str], None]


@dataclass(frozen=True)
class Attempt:
    """One way to quantise: a name for the report and the layer-name patterns kept in fp32 (regular expressions
    over the node names of the model converted from ONNX, ``/detector/roi_heads/box_head/fc6/Gemm``: the
    PyTorch module path with ``/`` for ``.``)."""

    name: str
    fp32_patterns: tuple[str, ...] = ()
    asymmetric: bool = False  # NNCF's MIXED preset: asymmetric activation ranges (signed, skewed activations)


HEADS = (r".*/rpn/head/.*", r".*/roi_heads/box_head/.*", r".*/roi_heads/box_predictor/.*")
# Box arithmetic, never quantised: proposal decoding (centre +- size / 2), the RoI heads' decoding and the boxes'
# rescaling to the input image. int8 there rounds coordinates to 1/256 of their range (2.5 px on a 640-px image)
# and saves nothing (elementwise work on a few thousand boxes). Found by NNCF's accuracy control on a BCCD
# student (validation mAP@0.5 drop 0.031 in int8): after one backbone convolution (0.022) it reverted
# /detector/Mul and /detector/Mul_2, the output boxes' rescaling (0.017, then 0.011).
# NNCF matches a pattern at the start of a name (re.match), so a pattern for a scope's own operations ends in $.
BOX_ARITHMETIC = (r"/detector/[^/]+$", r".*/rpn/(?!head/).*", r".*/roi_heads/(?!box_head/|box_predictor/).*",
                  r".*/transform/.*")
# Measured on the BCCD teacher (ImageNet MobileNetV2-FPN, validation mAP@0.5 0.770 in fp32): NNCF's default
# (symmetric activations) 0.410, asymmetric activations 0.651, the backbone alone in int8 0.450: the activation
# ranges, not the heads or the post-processing, cost the accuracy there; hence the second rung.
ATTEMPTS = (
    Attempt("whole model in int8"),
    Attempt("whole model in int8, asymmetric activations", asymmetric=True),
    Attempt("heads kept in fp32 (rpn.head, roi_heads.box_head, roi_heads.box_predictor), asymmetric activations",
            HEADS, asymmetric=True),
)


def calibration_indices(num_images: int, wanted: int, seed: int = 0) -> list[int]:
    """A seeded sample of ``wanted`` image indices (all of them when there are fewer), in dataset order.

    >>> calibration_indices(10, 3, seed=0) == calibration_indices(10, 3, seed=0)
    True
    >>> calibration_indices(2, 5)
    [0, 1]
    """
    if wanted >= num_images:
        return list(range(num_images))
    return sorted(random.Random(seed).sample(range(num_images), wanted))


def quantize_openvino(model: Any, samples: Sequence[np.ndarray], attempt: Attempt) -> Any:
    """``model`` (an ``openvino.Model``) quantised by NNCF on ``samples`` (network inputs as arrays)."""
    nncf = import_runtime("nncf")
    kwargs: dict[str, Any] = {"subset_size": len(samples), "ignored_scope": _ignored(attempt.fp32_patterns)}
    if attempt.asymmetric:
        kwargs["preset"] = nncf.QuantizationPreset.MIXED
    return nncf.quantize(model, nncf.Dataset(list(samples)), **kwargs)


def _ignored(patterns: Sequence[str]) -> Any:
    """NNCF's ignored scope: ``patterns`` and the box arithmetic (``validate=False``: a pattern may match nothing,
    e.g. a model without a transform scope)."""
    nncf = import_runtime("nncf")
    return nncf.IgnoredScope(patterns=[*BOX_ARITHMETIC, *patterns], validate=False)


def module_path(node_name: str) -> str:
    """The PyTorch module path in an ONNX/OpenVINO node name: the exporter writes one scope per module, each
    holding the path below its parent, and numbers repeated calls of one module (``_1``).

    >>> module_path("/detector/rpn/head/conv/conv.0/conv.0.0_1/Conv")
    'rpn.head.conv.0.0'
    >>> module_path("/detector/roi_heads/box_head/fc7/Gemm/WithoutBiases")
    'roi_heads.box_head.fc7'
    """
    modules: list[str] = []
    for part in [p for p in node_name.split("/") if p][1:]:  # [0] is the export wrapper's "detector"
        if not (part[:1].islower() or part[:1].isdigit()):
            break  # an operator (Conv, Gemm, ...): the module path ended
        part = re.sub(r"_\d+$", "", part)
        if modules and part.startswith(modules[-1] + "."):  # "conv" then "conv.0": a child, written whole
            modules[-1] = part
        else:
            modules.append(part)
    return ".".join(modules)


ACCURACY_CONTROL = "accuracy control (NNCF): the costliest quantised operations returned to fp32 until within --max-drop"
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")


@dataclass(frozen=True)
class Validation:
    """How a quantised candidate is scored: ``score(model)`` is the validation mAP@0.5 of an ``openvino.Model``;
    ``score_compiled(compiled, indices)`` that of an already compiled model on the validation images at
    ``indices`` (what NNCF's accuracy control calls, on subsets and single images, to rank operations)."""

    score: Callable[[Any], float]
    score_compiled: Callable[[Any, list[int]], float] | None = None
    num_images: int = 0


def _weights_quantized(op: Any, hops: int = 4) -> bool:
    """Whether ``op``'s weights are int8: a ``FakeQuantize`` on them (in memory) or an 8-bit constant behind the
    ``Convert -> Subtract -> Multiply`` that decompresses it (saved). Activation quantisers are not read: NNCF
    places them upstream of value-preserving ops (pooling, reshapes, padding), so they prove nothing per layer."""
    node = op.input_value(1).get_node()
    for _ in range(hops):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_output_element_type(0).get_type_name() in ("i8", "u8", "i4", "u4")
        if node.get_input_size() == 0:
            return False
        node = node.input_value(0).get_node()
    return False


def unquantized_layers(quantized: Any) -> list[str]:
    """The weighted layers (convolutions, matmuls) of a quantised ``openvino.Model`` whose weights are not int8 in
    at least one of their calls, as PyTorch module paths: read from the model, not from the patterns that asked."""
    names: list[str] = []
    for op in quantized.get_ordered_ops():
        if op.get_type_name() in WEIGHTED_OPS and not _weights_quantized(op):
            module = module_path(op.get_friendly_name())
            if module and module not in names:
                names.append(module)
    return names


def quantize_accuracy_control(model: Any, samples: Sequence[np.ndarray], validation: Validation, max_drop: float,
                              asymmetric: bool) -> Any:
    """NNCF's ``quantize_with_accuracy_control`` on ``model``: quantise, rank the quantised operations by their cost
    on validation, and return the costliest to fp32 until the absolute mAP@0.5 drop is within ``max_drop`` (NNCF
    returns its best model when it cannot reach it; the caller scores it again)."""
    nncf = import_runtime("nncf")
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    def validate(compiled: Any, items: Any) -> tuple[float, None]:
        return validation.score_compiled(compiled, [int(i) for i in items]), None  # type: ignore[misc]

    kwargs: dict[str, Any] = {"subset_size": len(samples), "max_drop": max_drop,
                              "drop_type": nncf.DropType.ABSOLUTE, "ignored_scope": _ignored(())}
    if asymmetric:
        kwargs["preset"] = nncf.QuantizationPreset.MIXED
    # One ranking worker: the timings of everything else on the machine stay those of one export.
    restorer = AdvancedAccuracyRestorerParameters(ranking_subset_size=min(300, validation.num_images),
                                                  num_ranking_workers=1)
    return nncf.quantize_with_accuracy_control(model, nncf.Dataset(list(samples)),
                                               nncf.Dataset(list(range(validation.num_images))), validate,
                                               advanced_accuracy_restorer_parameters=restorer, **kwargs)


def quantize_with_accuracy(model: Any, samples: Sequence[np.ndarray], validation: Validation, max_drop: float,
                           log: Log = print) -> tuple[Any, dict[str, Any]]:
    """Quantise ``model`` by the first attempt whose validation mAP@0.5 is within ``max_drop`` of the fp32 model's
    (accuracy control only when ``validation`` can score a compiled model on a subset); returns the quantised model
    and the record the manifest keeps."""
    score = validation.score
    reference = score(model)
    log(f"int8: fp32 validation mAP@0.5 {reference:.4f}; allowed drop {max_drop:.4f}")
    record: dict[str, Any] = {"val_mAP50_fp32": reference, "max_drop": max_drop, "attempts": [],
                              "calibration_count": len(samples)}
    for attempt in ATTEMPTS:
        quantized = quantize_openvino(model, samples, attempt)
        value = score(quantized)
        drop = reference - value
        kept = unquantized_layers(quantized)  # measured: a pattern that matched too much shows here
        record["attempts"].append({"name": attempt.name, "val_mAP50": value, "drop": drop, "fp32_layers": kept})
        log(f"int8 ({attempt.name}): validation mAP@0.5 {value:.4f}, drop {drop:+.4f}")
        if drop <= max_drop:
            record.update(chosen=attempt.name, val_mAP50_int8=value, fp32_layers=kept)
            return quantized, record
    if validation.score_compiled is not None and validation.num_images:
        whole = record["attempts"][:2]
        asymmetric = whole[-1]["val_mAP50"] > whole[0]["val_mAP50"]  # start from the better whole-model preset
        log(f"int8 ({ACCURACY_CONTROL}), from {whole[int(asymmetric)]['name']}: ranking the quantised operations "
            f"on {validation.num_images} validation images")
        quantized = quantize_accuracy_control(model, samples, validation, max_drop, asymmetric)
        value = score(quantized)
        drop = reference - value
        kept = unquantized_layers(quantized)
        name = f"{ACCURACY_CONTROL}, from {'asymmetric' if asymmetric else 'symmetric'} activations"
        record["attempts"].append({"name": name, "val_mAP50": value, "drop": drop, "fp32_layers": kept})
        log(f"int8 ({name}): validation mAP@0.5 {value:.4f}, drop {drop:+.4f}, {len(kept)} layer(s) in fp32")
        if drop <= max_drop:
            record.update(chosen=name, val_mAP50_int8=value, fp32_layers=kept)
            return quantized, record
    tried = "; ".join(f"{a['name']}: drop {a['drop']:.4f}" for a in record["attempts"])
    raise ArtifactError(f"int8 quantisation loses more than --max-drop {max_drop} validation mAP@0.5 ({tried}); "
                        f"export --precision fp32, raise --max-drop, or calibrate on more images (--calib-images)")
