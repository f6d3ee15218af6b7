"""The library side of ``detdistill evaluate`` and ``detdistill predict`` (the CLI only parses arguments).

``-1.0`` in any printed or written metric means "undefined" (COCOeval's convention: no ground truth in
that area range or class).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..utils import atomic_write_text
from .analysis import format_table, write_analysis
from .coco import COCO_KEYS, read_eval_files
from .inference import EvalResult, evaluate_model, score_detections
from .coco import EvalInputError


def evaluate_files(
    gt_path: str | Path,
    detections_path: str | Path,
    metric: str = "coco",
    *,
    use_07_metric: bool = False,
    plus_one: bool = False,
) -> EvalResult:
    """Score a COCO results file (or a ``detdistill predict`` JSON) against a COCO ground-truth file.

    Errors (missing or malformed file, unknown image or category, non-finite box) name the file and entry.

    Example::

        result = evaluate_files("instances_val.json", "detections.json")
        result.metrics["AP"], result.metrics["AP50"]
    """
    coco_gt, detections = read_eval_files(gt_path, detections_path)
    return score_detections(coco_gt, detections, metric, use_07_metric=use_07_metric, plus_one=plus_one,
                            check=False)


def load_inference_model(path: str | Path, *, device: str | None = None, min_score: float | None = None,
                         threads: int | None = None) -> tuple[Any, list[str], list[int]]:
    """A detector callable and its class names and category ids, from a checkpoint file or an exported artifact
    folder (:func:`detdistill.deploy.load_artifact`): the one loader behind ``evaluate`` and ``predict``, so the
    accuracy of the file that ships is measured through the same evaluator as the checkpoint's.

    ``min_score`` sets a checkpoint's ``roi_heads.score_thresh``; an artifact keeps detections scoring at least
    that, and refuses a value below the threshold it was exported with.
    """
    from ..deploy import is_artifact, load_artifact

    if is_artifact(path):
        if device not in (None, "cpu"):
            raise EvalInputError(f"{path}: an exported artifact runs on the CPU runtime it was built for; drop "
                                 f"--device {device}")
        model = load_artifact(path, threads=threads, min_score=min_score)
        return model, model.class_names, model.category_ids
    from ..models import load_detector, read_checkpoint

    ckpt = read_checkpoint(path)
    model = load_detector(path, map_location=device or "cpu")
    if min_score is not None:
        from .predict import configure_detector

        configure_detector(model, score_threshold=min_score)
    return model, list(ckpt["class_names"]), list(ckpt["category_ids"])


def _kind(path: str | Path) -> str:
    from ..deploy import is_artifact

    return "artifact" if is_artifact(path) else "checkpoint"


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: Any,
    metric: str = "coco",
    *,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    use_07_metric: bool = False,
    plus_one: bool = False,
    min_score: float | None = None,
) -> EvalResult:
    """Load a detector from its checkpoint (or an exported artifact folder) alone and evaluate it on ``dataset``
    (a ``DetectionDataset``).

    The model's class names must equal the dataset's (same order): otherwise labels would be scored
    as the wrong classes. ``min_score`` overrides the model's ``roi_heads.score_thresh`` (AP wants a low one,
    e.g. 0.01, with up to 100 detections per image).
    """
    model, class_names, _ = load_inference_model(checkpoint, device=device, min_score=min_score)
    if list(class_names) != list(dataset.class_names):
        raise EvalInputError(f"{checkpoint}: {_kind(checkpoint)} classes {class_names} differ from the dataset's "
                             f"{dataset.class_names} ({getattr(dataset, 'name', 'dataset')})")
    return evaluate_model(model, dataset, metric, batch_size=batch_size, device=device, progress=progress,
                          use_07_metric=use_07_metric, plus_one=plus_one)


def headline_metrics(result: EvalResult) -> dict[str, float]:
    """What ``--json-out`` writes: COCO's 9 keys (:data:`COCO_KEYS`) for ``coco``, ``{"mAP50"}`` for ``voc``."""
    if result.metric == "voc":
        return {"mAP50": result.metrics["mAP50"]}
    return {k: result.metrics[k] for k in COCO_KEYS}


def format_result(result: EvalResult) -> str:
    """Headline metrics (one per line) and the per-class table, as ``evaluate`` prints them."""
    lines = []
    if result.metric == "voc":
        definition = "11-point (VOC2007)" if result.voc.use_07_metric else "area (VOC2010+)"
        pixels = ", +1 pixel" if result.voc.plus_one else ""
        lines.append(f"mAP50  {result.metrics['mAP50']:.4f}   (VOC mAP@0.5, {definition}{pixels})")
        rows = [{"name": r["name"], "num_gt": r["num_gt"], "AP50": r["AP50"]} for r in result.per_class]
    else:
        lines += [f"{k:<6} {result.metrics[k]:.4f}" if result.metrics[k] != -1.0 else f"{k:<6} -1 (no ground truth)"
                  for k in COCO_KEYS]
        rows = result.per_class
    lines.append("")
    lines.append(format_table(rows))
    return "\n".join(lines)


def write_outputs(result: EvalResult, *, json_out: str | Path | None = None, plots: str | Path | None = None,
                  save_detections: str | Path | None = None, save_gt: str | Path | None = None,
                  score_threshold: float = 0.5) -> list[Path]:
    """Write what ``evaluate``'s options ask for; plots (PR curves, confusion matrix) come after scoring."""
    written: list[Path] = []
    if json_out is not None:
        written.append(atomic_write_text(json.dumps(headline_metrics(result), indent=2) + "\n", json_out))
    if save_detections is not None:
        written.append(atomic_write_text(json.dumps(result.detections), save_detections))
    if save_gt is not None and result.coco_gt is not None:
        written.append(atomic_write_text(json.dumps(result.coco_gt), save_gt))
    if plots is not None and result.coco is not None and result.coco_gt is not None:
        out = write_analysis(result.coco_gt, result.detections, result.coco, plots,
                             score_threshold=score_threshold, per_class=result.per_class)
        written += [Path(plots) / "per_class.json", *out["pr_curves"], out["confusion_png"]]
    return written


def predict_checkpoint(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    score_threshold: float = 0.5,
    nms: float = 0.5,
    size: int | None = None,
    batch_size: int = 4,
    device: str | None = None,
    progress: bool = True,
    on_bad_image: str = "skip",
) -> dict[str, Any]:
    """``detdistill predict``: detector and class names from the checkpoint (or an exported artifact folder)
    alone; PNGs + detections.json.

    ``images`` is a list of files and folders (numbered 1..N in that order), or a ``DetectionDataset``: then
    each image keeps the dataset's own id and file name, so ``evaluate --gt`` on that dataset's ground truth
    scores the detections against the right images. ``on_bad_image``: see :func:`.predict.predict_images`.
    """
    from ..data.base import DetectionDataset
    from ..deploy import is_artifact
    from .predict import collect_images, configure_detector, predict_images

    image_ids = load_image = None
    model, class_names, category_ids = load_inference_model(checkpoint, device=device)
    if isinstance(images, DetectionDataset):
        dataset = images
        paths = [dataset.image_path(i) for i in range(len(dataset))]
        image_ids = [int(r.image_id) for r in dataset.records]
        load_image = dataset.load_image
        if list(class_names) != list(dataset.class_names):
            raise EvalInputError(f"{checkpoint}: {_kind(checkpoint)} classes {class_names} differ from the dataset's "
                                 f"{dataset.class_names} ({dataset.name}); its category ids would not match")
    else:
        paths = collect_images(images)
    if is_artifact(checkpoint):
        model = configure_artifact(model, score_threshold=score_threshold, nms=nms, size=size)
    else:
        model = configure_detector(model, score_threshold=score_threshold, nms=nms, size=size)
    return predict_images(model, paths, out_dir, class_names, category_ids,
                          batch_size=batch_size, device=device, progress=progress, image_ids=image_ids,
                          load_image=load_image, on_bad_image=on_bad_image)


def configure_artifact(model: Any, *, score_threshold: float | None = None, nms: float | None = None,
                       size: int | None = None) -> Any:
    """``predict``'s knobs on an artifact: what was fixed at export can only be kept (NMS, input size) or, for the
    score threshold, raised; anything else is refused naming the export flag that changes it."""
    m = model.manifest
    where = model.folder
    if size is not None:
        raise EvalInputError(f"{where}: --size {size}: an artifact's input is fixed at export (input "
                             f"{m.size_text}); re-export with --input-size")
    if nms is not None and abs(nms - m.nms_thresh) > 1e-9:
        raise EvalInputError(f"{where}: --nms {nms}: the artifact was exported with NMS IoU {m.nms_thresh}, "
                             f"which is part of its graph; re-export from a checkpoint with that NMS")
    if score_threshold is not None:
        if not 0.0 <= score_threshold <= 1.0:
            raise EvalInputError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if score_threshold < m.score_thresh:
            raise EvalInputError(f"{where}: --score-threshold {score_threshold} is below the {m.score_thresh} the "
                                 f"artifact was exported with; re-export with --min-score {score_threshold}")
        model.min_score = float(score_threshold)
    return model
