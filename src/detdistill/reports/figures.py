"""Figures of the demo report: speed-accuracy scatter, prediction grid, teacher soft labels."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..data.base import DetectionDataset  # noqa: E402


def _save(fig, path: str | Path) -> Path:  # noqa: ANN001
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def speed_accuracy_scatter(rows: Sequence[dict], path: str | Path, metric: str = "mAP50") -> Path:
    """Images/s (x, log) against accuracy (y), one labelled point per model; marker area ~ parameters."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    biggest = max(r["params"] for r in rows)
    speeds = [r["images_per_s"] for r in rows]
    middle = (min(speeds) * max(speeds)) ** 0.5
    # Students of one size sit almost on top of each other: alternate labels below/above in accuracy order and
    # put them on the side of the point that faces the middle of the plot, so none is clipped or overlapped.
    for rank, r in enumerate(sorted(rows, key=lambda row: row[metric])):
        ax.scatter(r["images_per_s"], r[metric], s=40 + 400 * r["params"] / biggest, alpha=0.7)
        right_side = r["images_per_s"] > middle
        ax.annotate(f"{r['name']} ({r['params'] / 1e6:.2f} M, {r[metric]:.3f})", (r["images_per_s"], r[metric]),
                    textcoords="offset points", xytext=(-8 if right_side else 8, -12 if rank % 2 == 0 else 6),
                    ha="right" if right_side else "left", fontsize=8)
    ax.margins(x=0.15, y=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("CPU images/s (batch 1)")
    ax.set_ylabel(metric)
    ax.set_title("speed vs accuracy")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _draw(ax, image: torch.Tensor, boxes, labels, scores, names: Sequence[str], title: str) -> None:  # noqa: ANN001
    cmap = plt.get_cmap("tab10")
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.axis("off")
    ax.set_title(title, fontsize=8)
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        x1, y1, x2, y2 = box
        color = cmap((label - 1) % 10)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.2))
        text = names[label - 1] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        ax.text(x1, y1, text, fontsize=5, color="white", bbox={"facecolor": color, "pad": 0.5, "edgecolor": "none"})


@torch.no_grad()
def prediction_grid(models: dict[str, nn.Module], dataset: DetectionDataset, indices: Sequence[int],
                    path: str | Path, score_threshold: float = 0.5) -> Path:
    """Rows: images; columns: ground truth, then each model's detections above ``score_threshold``."""
    cols = 1 + len(models)
    fig, axes = plt.subplots(len(indices), cols, figsize=(2.6 * cols, 2.6 * len(indices)), squeeze=False)
    names = dataset.class_names
    for row, idx in enumerate(indices):
        image, target = dataset.load_image(idx), dataset.get_target(idx)
        _draw(axes[row, 0], image, target["boxes"], target["labels"], None, names, "ground truth")
        for col, (name, model) in enumerate(models.items(), start=1):
            was = model.training
            model.eval()
            out = model([image])[0]
            model.train(was)
            keep = out["scores"] >= score_threshold
            _draw(axes[row, col], image, out["boxes"][keep], out["labels"][keep], out["scores"][keep], names, name)
    return _save(fig, path)


@torch.no_grad()
def teacher_soft_labels(teacher: nn.Module, image: torch.Tensor, boxes: torch.Tensor, true_labels: Sequence[int],
                        class_names: Sequence[str], temperature: float = 1.0) -> torch.Tensor:
    """The teacher's class distribution softmax(z/T) on given ground-truth boxes (rows: boxes; col 0 background)."""
    teacher.eval()
    images, targets = teacher.transform([image], [{"boxes": boxes, "labels": torch.as_tensor(true_labels)}])
    features = teacher.backbone(images.tensors)
    heads = teacher.roi_heads
    pooled = heads.box_roi_pool(features, [targets[0]["boxes"]], images.image_sizes)
    logits, _ = heads.box_predictor(heads.box_head(pooled))
    return torch.softmax(logits / temperature, dim=1)


def soft_label_figure(probabilities: torch.Tensor, crops: Sequence[torch.Tensor], true_names: Sequence[str],
                      class_names: Sequence[str], path: str | Path) -> Path:
    """One row per object: its crop, and the teacher's probabilities as bars (what one-hot labels do not say)."""
    n = len(crops)
    fig, axes = plt.subplots(n, 2, figsize=(7.5, 2.0 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
    labels = ["background", *class_names]
    for row in range(n):
        axes[row, 0].imshow(crops[row].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[row, 0].axis("off")
        axes[row, 0].set_title(f"truth: {true_names[row]}", fontsize=8)
        probs = probabilities[row].tolist()
        colors = ["tab:red" if labels[i] == true_names[row] else "tab:gray" for i in range(len(labels))]
        axes[row, 1].barh(range(len(labels)), probs, color=colors)
        axes[row, 1].set_yticks(range(len(labels)), labels, fontsize=7)
        axes[row, 1].set_xlim(0, 1)
        axes[row, 1].invert_yaxis()
        for i, p in enumerate(probs):
            axes[row, 1].text(min(p + 0.01, 0.9), i, f"{p:.2f}", va="center", fontsize=6)
    fig.suptitle("teacher's soft labels on a look-alike pair (T = 1)", fontsize=9)
    return _save(fig, path)
