"""Plots a person would rather look at than read: training curves, speed-accuracy scatter."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..utils import atomic_output  # noqa: E402
from ..errors import DetDistillError


def save_figure(fig, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:  # noqa: ANN001
    """``fig.savefig`` through a temp file + rename, so a crash never leaves a torn PNG."""
    if tight:
        fig.tight_layout()
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            fig.savefig(fh, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(metrics_path: str | Path, out_path: str | Path, title: str | None = None) -> Path:
    """One panel per loss term (train) and one per validation metric, against the step, titled in words."""
    from .terms import describe_key, plotted_keys

    records = read_jsonl(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    loss_keys = [k for k in plotted_keys({k for r in train for k in r if isinstance(r[k], (int, float))})
                 if k != "grad_norm"]
    val_keys = sorted({k for r in val for k in r if k.startswith("val/") and isinstance(r[k], (int, float))})
    val_keys = [k for k in val_keys if k in ("val/mAP50", "val/AP", "val/loss")] or val_keys[:2]
    panels = loss_keys + val_keys
    if not panels:
        raise DetDistillError(f"{metrics_path}: no loss or validation records to plot")
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, key in zip(axes.flat, panels):
        ax.axis("on")
        src = train if key in loss_keys else val
        pts = [(r["step"], r[key]) for r in src if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if src is val else None)
        ax.set_title(describe_key(key)[1], fontsize=8, wrap=True)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_path)
