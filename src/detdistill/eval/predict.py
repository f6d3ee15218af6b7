"""Detections on plain image files: boxes drawn into PNGs and a self-contained COCO JSON.

What ``detdistill predict`` runs. The JSON (``detections.json``) is a COCO object: ``images`` (ids 1..N in
the order the files were given, a folder's files sorted by name; or the dataset's own ids when predicting on
a dataset, ``predict --data``), ``categories`` (the checkpoint's source ids and names) and
``annotations`` carrying a ``score`` each, so ``detdistill evaluate --detections`` reads it directly, and
``skipped``: the files that could not be decoded, each with its reason, and ``repaired``: truncated files
decoded as far as they go (``on_bad_image="repair"``, the rule of :mod:`detdistill.data.image_check`).

The output folder is complete or untouched: everything is written into a hidden ``.<name>.partial-<pid>``
folder beside it and moved into place at the end, so a stop (``on_bad_image="stop"``, Ctrl-C, a crash)
never leaves drawn PNGs without their ``detections.json``. Predicting again into the same folder
(``--overwrite``) replaces the earlier prediction: its drawn PNGs (listed in its ``detections.json``) that the
new one does not write are removed, so no stale image is left beside the new detections.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes

from ..data.base import DatasetError, load_rgb_image
from ..utils import atomic_write_text
from .coco import EvalInputError
from .inference import _ModeGuard, _model_device, outputs_to_coco

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ON_BAD_IMAGE_CHOICES = ("repair", "skip", "stop")
_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#469990", "#9a6324", "#800000", "#000075"]


def collect_images(sources: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted by name; not recursive).

    Missing paths, folders without images and non-image files raise errors naming the path.
    """
    paths: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{src}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif src.is_file():
            if src.suffix.lower() not in IMAGE_SUFFIXES:
                raise EvalInputError(f"{src}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
            paths.append(src)
        else:
            raise FileNotFoundError(f"{src}: no such image file or folder")
    if not paths:
        raise EvalInputError("no images given")
    return paths


def configure_detector(model: Any, *, score_threshold: float | None = None, nms: float | None = None,
                       size: int | None = None) -> Any:
    """Set a torchvision ``FasterRCNN``'s inference knobs in place and return it.

    ``score_threshold`` → ``roi_heads.score_thresh``; ``nms`` → ``roi_heads.nms_thresh`` (per-class NMS
    IoU); ``size`` → ``transform.min_size = (size,)`` and ``transform.max_size = size``, so the longer image
    side is resized to ``size``.
    """
    for name, value in (("score_threshold", score_threshold), ("nms", nms)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise EvalInputError(f"{name} must be in [0, 1], got {value}")
    if size is not None and size <= 0:
        raise EvalInputError(f"size must be a positive number of pixels, got {size}")
    if score_threshold is not None:
        model.roi_heads.score_thresh = float(score_threshold)
    if nms is not None:
        model.roi_heads.nms_thresh = float(nms)
    if size is not None:
        model.transform.min_size = (int(size),)
        model.transform.max_size = int(size)
    return model


def draw_detections(image: torch.Tensor, detections: Sequence[dict[str, Any]], names: dict[int, str],
                    colors: dict[int, str]) -> torch.Tensor:
    """The image (float C×H×W in [0, 1]) as uint8 with each detection's box, class name and score drawn."""
    img = F.to_dtype(image, torch.uint8, scale=True)
    if not detections:
        return img
    boxes = torch.tensor([[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]
                          for d in detections], dtype=torch.float32)
    labels = [f"{names[d['category_id']]} {d['score']:.2f}" for d in detections]
    return draw_bounding_boxes(img, boxes, labels=labels, colors=[colors[d["category_id"]] for d in detections],
                               width=2)


def predict_images(
    model: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]],
    images: Sequence[str | Path],
    out_dir: str | Path,
    class_names: Sequence[str],
    category_ids: Sequence[int] | None = None,
    *,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    progress: bool = True,
    draw: bool = True,
    image_ids: Sequence[int] | None = None,
    load_image: Callable[[int], torch.Tensor] | None = None,
    on_bad_image: str = "skip",
) -> dict[str, Any]:
    """Run ``model`` on image files in batches; write ``out_dir/detections.json`` and one PNG per image.

    ``image_ids`` numbers the images (default 1..N in the given order); ``load_image(i)`` decodes image ``i``
    (default: the file, as RGB in [0, 1]). An image that cannot be decoded is listed in the result's
    ``skipped`` (``on_bad_image="skip"``) or stops the run before anything reaches ``out_dir`` (``"stop"``);
    ``"repair"`` decodes a truncated file as far as it goes (listed in ``repaired``) and skips the rest.
    Returns the COCO object written. Drawn PNGs are named after the input (``<stem>.png``; a repeated stem
    gets its image id as a prefix). Boxes are in the original image's pixels.

    Example::

        model = configure_detector(load_detector("best.pt"), score_threshold=0.5, nms=0.5)
        ckpt = read_checkpoint("best.pt")
        doc = predict_images(model, collect_images(["photos/"]), "out/", ckpt["class_names"],
                             ckpt["category_ids"])
    """
    if batch_size <= 0:
        raise EvalInputError(f"batch_size must be positive, got {batch_size}")
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise DatasetError(f"--on-bad-image: value {on_bad_image!r}; choose one of {list(ON_BAD_IMAGE_CHOICES)}")
    ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    if len(ids) != len(class_names):
        raise EvalInputError(f"{len(ids)} category ids for {len(class_names)} class names")
    out_dir = Path(out_dir)
    names = {cid: str(n) for cid, n in zip(ids, class_names)}
    colors = {cid: _PALETTE[k % len(_PALETTE)] for k, cid in enumerate(ids)}
    device = torch.device(device) if device is not None else _model_device(model)
    paths = [Path(p) for p in images]
    numbers = list(range(1, len(paths) + 1)) if image_ids is None else [int(i) for i in image_ids]
    if len(numbers) != len(paths) or len(set(numbers)) != len(numbers):
        raise EvalInputError(f"image_ids: {len(numbers)} ids ({len(set(numbers))} distinct) for {len(paths)} images")
    doc: dict[str, Any] = {"images": [], "annotations": [],
                           "categories": [{"id": int(c), "name": names[c]} for c in ids], "skipped": [],
                           "repaired": []}
    used_stems: set[str] = set()
    if load_image is None and on_bad_image == "stop":
        from ..data.image_check import verdict

        # Every file checked before the model runs; every bad one named at once.
        bad = [message for status, _, _, message in map(verdict, paths) if status != "ok"]
        if bad:
            raise DatasetError(f"{len(bad)} of {len(paths)} images cannot be decoded: {'; '.join(bad)} (nothing was "
                               "written; --on-bad-image skip predicts on the other images and lists the skipped ones)")

    def decode(k: int) -> torch.Tensor | None:
        if load_image is not None:
            return _decoded(lambda: load_image(k), on_bad_image, doc, paths[k], numbers[k])
        return _decoded(lambda: _file_tensor(paths[k], numbers[k], on_bad_image, doc), on_bad_image, doc, paths[k],
                        numbers[k])

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _predict_batches(model, paths, numbers, decode, staging, doc, ids, names, colors, used_stems,
                         batch_size=batch_size, device=device, progress=progress, draw=draw)
        if paths and len(doc["skipped"]) == len(paths):
            raise DatasetError(f"no image could be decoded ({len(paths)} skipped, e.g. "
                               f"{doc['skipped'][0]['reason']}); nothing was written")
        atomic_write_text(json.dumps(doc), staging / "detections.json")
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return doc


def _file_tensor(path: Path, image_id: int, on_bad_image: str, doc: dict[str, Any]) -> torch.Tensor:
    """The file as a float tensor; under ``repair`` a truncated file is decoded as far as it goes and listed."""
    try:
        img = load_rgb_image(path)
    except DatasetError as exc:
        if on_bad_image != "repair" or "truncated" not in str(exc):
            raise
        img = load_rgb_image(path, allow_truncated=True)
        doc["repaired"].append({"file_name": str(path), "id": image_id, "reason": str(exc)})
    return F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True)


def _decoded(fn: Callable[[], Any], on_bad_image: str, doc: dict[str, Any], path: Path, image_id: int | None) -> Any:
    """``fn()``; a :class:`DatasetError` (undecodable file) is listed in ``doc["skipped"]`` or re-raised."""
    try:
        return fn()
    except DatasetError as exc:
        if on_bad_image == "stop":
            raise DatasetError(f"{exc} (nothing was written; --on-bad-image skip predicts on the other images and "
                               "lists the skipped ones)") from exc
        doc["skipped"].append({"file_name": str(path), "id": image_id, "reason": str(exc)})
        return None


def _remove_dead_partials(out_dir: Path) -> None:
    """Remove staging folders that killed runs (SIGKILL: no cleanup ran) left beside ``out_dir``."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """The staged folder becomes ``out_dir``: renamed when ``out_dir`` is absent or empty, else file by file
    (``--overwrite`` into a folder with other files), ``detections.json`` last."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    earlier = _drawn_by(out_dir / "detections.json")
    staged = sorted(staging.iterdir(), key=lambda p: p.name == "detections.json")
    for item in staged:
        os.replace(item, out_dir / item.name)
    # The earlier prediction's drawn images the new one did not replace would sit beside the new
    # detections.json as if they were its own.
    for name in sorted(earlier - {p.name for p in staged}):
        (out_dir / name).unlink(missing_ok=True)


def _drawn_by(detections: Path) -> set[str]:
    """The PNG names an earlier ``detections.json`` lists as drawn (nothing when absent or unreadable)."""
    try:
        doc = json.loads(detections.read_text(encoding="utf-8"))
        return {Path(str(img["drawn"])).name for img in doc.get("images", []) if isinstance(img, dict) and
                img.get("drawn")}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def _predict_batches(model: Any, paths: list[Path], numbers: list[int], decode: Callable[[int], Any],
                     out_dir: Path, doc: dict[str, Any], ids: list[int], names: dict[int, str],
                     colors: dict[int, str], used_stems: set[str], *, batch_size: int, device: torch.device,
                     progress: bool, draw: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=None)  # None: off when not a terminal
    with _ModeGuard(model), torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            decoded = [(k, decode(k)) for k in range(start, min(start + batch_size, len(paths)))]
            good = [(k, t) for k, t in decoded if t is not None]
            tensors = [t for _, t in good]
            outputs = model([t.to(device) for t in tensors]) if tensors else []
            for (k, tensor), out in zip(good, outputs):
                path, image_id = paths[k], numbers[k]
                dets = outputs_to_coco([out], [image_id], ids)
                entry: dict[str, Any] = {"id": image_id, "file_name": str(path), "height": int(tensor.shape[1]),
                                         "width": int(tensor.shape[2])}
                if draw:
                    stem = path.stem if path.stem not in used_stems else f"{image_id:05d}_{path.stem}"
                    used_stems.add(stem)
                    drawn = draw_detections(tensor, dets, names, colors)
                    target = out_dir / f"{stem}.png"
                    F.to_pil_image(drawn).save(target)
                    entry["drawn"] = target.name
                doc["images"].append(entry)
                for det in dets:
                    w, h = det["bbox"][2], det["bbox"][3]
                    doc["annotations"].append(dict(det, id=len(doc["annotations"]) + 1, area=w * h, iscrowd=0))
            if bar is not None:
                bar.update(len(decoded))
    if bar is not None:
        bar.close()
