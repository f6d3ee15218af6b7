"""Pictures of samples with their boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: reports are written to files
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..data.base import DetectionDataset  # noqa: E402


def draw_samples(
    dataset: DetectionDataset, indices: Sequence[int], path: str | Path, columns: int = 4, title: str | None = None
) -> Path:
    """A grid of images with their ground-truth boxes and class names, saved as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (len(indices) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax in axes.flat:
        ax.axis("off")
    for ax, idx in zip(axes.flat, indices):
        image = dataset.load_image(idx)
        target = dataset.get_target(idx)
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x1, y1, x2, y2 = box
            color = cmap((label - 1) % 10)
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5))
            ax.text(x1, y1, dataset.class_names[label - 1], color="white", fontsize=7,
                    bbox={"facecolor": color, "pad": 1, "edgecolor": "none"})
        ax.set_title(f"image {int(target['image_id'])}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def synthetic_preview(out_dir: str | Path, seed: int = 0) -> tuple[dict, Path]:
    """Summaries of the three synthetic splits and a picture of eight training samples."""
    from ..data.synthetic import SyntheticShapes

    summary = {split: SyntheticShapes(split, seed=seed).summary() for split in ("train", "val", "test")}
    torch.manual_seed(seed)
    picture = draw_samples(SyntheticShapes("train", num_images=8, seed=seed), range(8),
                           Path(out_dir) / "synthetic_samples.png", title="synthetic shapes (train)")
    return summary, picture
