"""Run a detector over a dataset and score it: the validation step the trainer and the distiller call.

A *model* here is anything torchvision-like: called in eval mode on ``list[Tensor]`` images (float, C×H×W,
[0, 1]) it returns ``list[dict(boxes (x1, y1, x2, y2 in the input image's pixels), scores, labels)]``
with contiguous labels ``1..K``. A *dataset* is a :class:`~detdistill.data.base.DetectionDataset`.

Under ``torch.distributed`` every rank predicts an interleaved shard of the images
(``rank, rank + world, ...``); :func:`gather_detections` collects the shards with
``all_gather_object``, rank 0 scores the whole set and broadcasts the metrics, so every rank returns the
same :class:`EvalResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..data.base import DetectionDataset
from ..data.convert import to_coco_dict
from .coco import coco_evaluate
from .voc import voc_evaluate
from .coco import EvalInputError

Detections = list[dict[str, Any]]
METRICS = ("coco", "voc")


@dataclass
class EvalResult:
    """What :func:`evaluate_model` returns.

    ``metrics``: COCO's 12 numbers (``AP``, ``AP50``, … ``ARl``; ``-1.0`` where undefined) plus ``mAP50``
    (COCO's AP50 for ``metric="coco"``, VOC mAP@0.5 for ``metric="voc"``). ``AP`` is always COCO
    AP@[.50:.95]. ``per_class``: one row per class (``name``, ``category_id``, ``num_gt``, ``AP``, ``AP50``,
    ``AP75``; with ``metric="voc"`` ``AP50`` is the class's VOC AP). ``detections``: the COCO-format
    detections that were scored. ``coco`` / ``voc``: the full results (precision arrays, PR curves) for
    :mod:`detdistill.eval.analysis`. ``seconds``: prediction and scoring time.
    """

    metrics: dict[str, float]
    per_class: list[dict[str, Any]]
    detections: Detections
    metric: str = "coco"
    coco: Any = field(default=None, repr=False)
    voc: Any = field(default=None, repr=False)
    coco_gt: dict[str, Any] | None = field(default=None, repr=False)
    seconds: dict[str, float] = field(default_factory=dict)


def outputs_to_coco(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
) -> Detections:
    """torchvision outputs → COCO results entries, contiguous labels mapped through ``category_ids``.

    Example:
        >>> out = [{"boxes": torch.tensor([[10., 20., 30., 60.]]), "scores": torch.tensor([0.5]),
        ...         "labels": torch.tensor([2])}]
        >>> outputs_to_coco(out, [7], category_ids=[11, 22])
        [{'image_id': 7, 'category_id': 22, 'bbox': [10.0, 20.0, 20.0, 40.0], 'score': 0.5}]
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"model returned {len(outputs)} outputs for {len(image_ids)} images")
    detections: Detections = []
    num = len(category_ids)
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().to("cpu", torch.float64)
        scores = out["scores"].detach().to("cpu", torch.float64).tolist()
        labels = out["labels"].detach().to("cpu").tolist()
        wh = (boxes[:, 2:] - boxes[:, :2]).tolist()
        xy = boxes[:, :2].tolist()
        for (x, y), (w, h), score, label in zip(xy, wh, scores, labels):
            if not 1 <= label <= num:
                raise ValueError(f"model output label {label} for image {image_id} is outside 1..{num} "
                                 f"(the dataset has {num} classes; 0 is background)")
            detections.append({"image_id": int(image_id), "category_id": int(category_ids[label - 1]),
                               "bbox": [x, y, w, h], "score": score})
    return detections


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_detections(local: Sequence[tuple[int, Detections]]) -> Detections:
    """All ranks' ``(image index, detections)`` pairs, concatenated in image-index order.

    With ``torch.distributed`` initialised this is one ``all_gather_object``; otherwise it just orders and
    flattens ``local``. Every rank gets the whole list.
    """
    _, world = _dist_info()
    parts: list[Any] = [list(local)]
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, list(local))
    pairs = sorted((pair for part in parts for pair in part), key=lambda p: p[0])
    return [det for _, dets in pairs for det in dets]


class _ModeGuard:
    """Puts a module in eval mode and restores every submodule's own train/eval flag afterwards.

    Restoring per submodule (not ``model.train(was_training)``) keeps deliberately frozen parts, such as
    BatchNorm layers a trainer holds in eval mode, exactly as they were.
    """

    def __init__(self, model: Any) -> None:
        self.model = model if isinstance(model, nn.Module) else None
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        if self.model is not None:
            self.modes = [(m, m.training) for m in self.model.modules()]
            self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        for module, training in self.modes:
            module.training = training


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def predict_dataset(
    model: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    dataset: DetectionDataset,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
    gather: bool = True,
    indices: Sequence[int] | None = None,
) -> Detections:
    """COCO-format detections of ``model`` on every image of ``dataset`` (source category ids), or on the images
    at ``indices`` only.

    Images go through the model in batches of ``batch_size`` on ``device`` (default: the model's).
    Images come from ``dataset.load_image`` (never augmented). Under ``torch.distributed`` each rank runs its shard and, with
    ``gather=True``, every rank returns the whole set. The model's train/eval modes are restored.

    Example:
        >>> from detdistill.data import SyntheticShapes
        >>> ds = SyntheticShapes("val", num_images=2, seed=0)
        >>> def one_box(images):
        ...     return [{"boxes": torch.tensor([[0., 0., 8., 8.]]), "scores": torch.tensor([0.9]),
        ...              "labels": torch.tensor([1])} for _ in images]
        >>> [d["image_id"] for d in predict_dataset(one_box, ds, batch_size=2, progress=False)]
        [0, 1]
    """
    if batch_size <= 0:
        raise EvalInputError(f"predict_dataset: batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else _model_device(model)
    rank, world = _dist_info()
    indices = list(range(len(dataset)) if indices is None else indices)[rank::world]
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    local: list[tuple[int, Detections]] = []
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=len(indices), desc=f"predict {getattr(dataset, 'name', '')}".strip(), unit="img",
                   leave=False, disable=None)  # None: no carriage-return flood in redirected logs
    with _ModeGuard(model), torch.inference_mode():
        for batch in batches:
            # load_image, not dataset[i]: evaluation must never see the training augmentation.
            images = [dataset.load_image(i).to(device, non_blocking=True) for i in batch]
            outputs = model(images)
            ids = [int(dataset.records[i].image_id) for i in batch]
            for i, out, image_id in zip(batch, outputs, ids):
                local.append((i, outputs_to_coco([out], [image_id], dataset.category_ids)))
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    if gather:
        return gather_detections(local)
    return [det for _, dets in local for det in dets]


def score_detections(
    coco_gt: dict[str, Any],
    detections: Detections,
    metric: str = "coco",
    *,
    use_07_metric: bool = False,
    plus_one: bool = False,
    check: bool = True,
) -> EvalResult:
    """Score COCO-format detections: COCO's numbers always, VOC mAP too with ``metric="voc"``."""
    if metric not in METRICS:
        raise EvalInputError(f"metric {metric!r} is not one of {list(METRICS)}")
    coco = coco_evaluate(coco_gt, detections, check=check)
    metrics = dict(coco.stats)
    per_class = coco.per_class()
    voc = None
    if metric == "voc":
        voc = voc_evaluate(coco_gt, detections, use_07_metric=use_07_metric, plus_one=plus_one, check=check)
        metrics["mAP50"] = voc.map
        for row, vrow in zip(per_class, voc.per_class()):
            row["AP50"] = vrow["AP50"]
    else:
        metrics["mAP50"] = metrics["AP50"]
    return EvalResult(metrics=metrics, per_class=per_class, detections=detections, metric=metric, coco=coco,
                      voc=voc, coco_gt=coco_gt)


def score_images(
    model: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    dataset: DetectionDataset,
    indices: Sequence[int],
    coco_gt: dict[str, Any] | None = None,
) -> float:
    """COCO mAP@0.5 of ``model`` on the images of ``dataset`` at ``indices`` alone (a subset scored against its
    own ground truth; ``coco_gt``, the whole set's ``to_coco_dict``, saves rebuilding it on repeated calls).

    Example:
        >>> from detdistill.data import SyntheticShapes
        >>> ds = SyntheticShapes("val", num_images=3, seed=0)
        >>> def oracle(images, _t=[ds.get_target(1)]):   # image 1's ground truth, whatever it is shown
        ...     return [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
        ...             for t in _t]
        >>> score_images(oracle, ds, [1])
        1.0
    """
    gt = coco_gt if coco_gt is not None else to_coco_dict(dataset)
    ids = {int(dataset.records[i].image_id) for i in indices}
    subset = {**gt, "images": [im for im in gt["images"] if im["id"] in ids],
              "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
    detections = predict_dataset(model, dataset, batch_size=1, progress=False, indices=indices)
    return float(score_detections(subset, detections, "coco", check=False).metrics["mAP50"])


def evaluate_model(
    model: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    dataset: DetectionDataset,
    metric: str = "coco",
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = False,
    use_07_metric: bool = False,
    plus_one: bool = False,
) -> EvalResult:
    """Predict on ``dataset`` and score: the one call for validation during training and distillation.

    ``metric="coco"``: COCO's 12 numbers, ``mAP50`` = AP50. ``metric="voc"``: the same plus VOC
    mAP@0.5 as ``mAP50`` (``use_07_metric`` for the 11-point definition, ``plus_one`` for the devkit's
    pixel convention). The model comes back in the train/eval mode it had. Under ``torch.distributed``
    the ranks share the prediction and every rank returns rank 0's scores.

    Example:
        >>> from detdistill.data import SyntheticShapes
        >>> ds = SyntheticShapes("val", num_images=2, seed=0)
        >>> def oracle(images, _ds=ds):   # returns the ground truth, in order
        ...     t = [_ds.get_target(i) for i in range(len(images))]
        ...     return [{"boxes": x["boxes"], "scores": torch.ones(len(x["boxes"])), "labels": x["labels"]}
        ...             for x in t]
        >>> evaluate_model(oracle, ds, batch_size=2).metrics["mAP50"]
        1.0
    """
    if metric not in METRICS:
        raise EvalInputError(f"metric {metric!r} is not one of {list(METRICS)}")
    start = time.perf_counter()
    detections = predict_dataset(model, dataset, batch_size=batch_size, device=device, progress=progress)
    predicted = time.perf_counter()
    rank, world = _dist_info()
    result: EvalResult | None = None
    if rank == 0:
        result = score_detections(to_coco_dict(dataset), detections, metric, use_07_metric=use_07_metric,
                                  plus_one=plus_one, check=False)
    if world > 1:
        box = [result.metrics if result else None, result.per_class if result else None]
        dist.broadcast_object_list(box, src=0)
        if result is None:
            result = EvalResult(metrics=box[0], per_class=box[1], detections=detections, metric=metric)
    assert result is not None
    result.seconds = {"predict": predicted - start, "score": time.perf_counter() - predicted}
    return result
