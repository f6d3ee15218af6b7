"""Figures of the demo report: validation curves, grouped loss panels, speed vs accuracy, predictions, soft labels.

Every figure is written atomically (a temp file renamed over the target), like checkpoints and tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from torch import nn  # noqa: E402

from ..data.base import DetectionDataset  # noqa: E402
from .plots import read_jsonl, save_figure  # noqa: E402
from .terms import GROUP_TITLES, describe_key, plotted_keys  # noqa: E402
from ..errors import DetDistillError

RUN_STYLE = {"teacher": {"color": "tab:gray", "linestyle": ":"}, "baseline": {"color": "tab:blue"},
             "distilled": {"color": "tab:orange"}}


def _style(name: str) -> dict:
    return RUN_STYLE.get(name, {})


def validation_curves(runs: Mapping[str, str | Path], path: str | Path, metric: str = "val/mAP50",
                      label: str = "validation mAP@0.5") -> Path:
    """Each run's validation ``metric`` against the step, all on one axes."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    plotted = 0
    for name, metrics_path in runs.items():
        pts = [(r["step"], r[metric]) for r in read_jsonl(metrics_path) if r.get("kind") == "val" and metric in r]
        if not pts:
            continue
        plotted += 1
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, label=f"{name} ({len(pts)} points)",
                **_style(name))
    if not plotted:
        plt.close(fig)
        raise DetDistillError(f"no '{metric}' validation records in {', '.join(map(str, runs.values()))}")
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(f"{label} during training (validation split)")
    return save_figure(fig, path)


def loss_panels(runs: Mapping[str, str | Path], path: str | Path, group: str, smooth: int = 5) -> Path | None:
    """One panel per logged key of ``group``, titled in words; each run that logged the key is a line."""
    records = {name: [r for r in read_jsonl(p) if r.get("kind") == "train"] for name, p in runs.items()}
    keys = plotted_keys({k for rs in records.values() for r in rs for k in r
                         if isinstance(r[k], (int, float)) and not isinstance(r[k], bool)})
    keys = [k for k in keys if describe_key(k)[0] == group]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        ax.axis("on")
        for name, rs in records.items():
            pts = [(r["step"], float(r[key])) for r in rs if key in r]
            if not pts:
                continue
            values = [p[1] for p in pts]
            # A running mean over a few logged points: single batches are noisy enough to hide the trend.
            smoothed = [sum(values[max(0, i - smooth + 1):i + 1]) / len(values[max(0, i - smooth + 1):i + 1])
                        for i in range(len(values))]
            ax.plot([p[0] for p in pts], smoothed, label=name, **_style(name))
        ax.set_title(describe_key(key)[1], fontsize=9, wrap=True)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(GROUP_TITLES.get(group, group), fontsize=11)
    return save_figure(fig, path)


def speed_accuracy_scatter(rows: Sequence[dict], path: str | Path, metric: str = "mAP50") -> Path:
    """Images/s (x, log) against accuracy (y), one labelled point per model; marker area ~ parameters."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    biggest = max(r["params"] for r in rows) or 1
    speeds = [r["images_per_s"] for r in rows]
    middle = (min(speeds) * max(speeds)) ** 0.5
    # Students of one size sit almost on top of each other: alternate labels below/above in accuracy order and
    # put them on the side of the point that faces the middle of the plot, so none is clipped or overlapped.
    for rank, r in enumerate(sorted(rows, key=lambda row: row[metric])):
        ax.scatter(r["images_per_s"], r[metric], s=40 + 400 * r["params"] / biggest, alpha=0.7,
                   color=_style(r["name"]).get("color"))
        right_side = r["images_per_s"] > middle
        ax.annotate(f"{r['name']} ({r['params'] / 1e6:.2f} M, {r[metric]:.3f})", (r["images_per_s"], r[metric]),
                    textcoords="offset points", xytext=(-8 if right_side else 8, -14 if rank % 2 == 0 else 8),
                    ha="right" if right_side else "left", fontsize=9)
    ax.margins(x=0.2, y=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("CPU images/s (batch 1)")
    ax.set_ylabel("mAP@0.5" if metric == "mAP50" else metric)
    ax.set_title("speed vs accuracy (test split)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _draw(ax, image: torch.Tensor, boxes, labels, scores, names: Sequence[str], title: str,  # noqa: ANN001
          truth=None) -> None:  # noqa: ANN001
    cmap = plt.get_cmap("tab10")
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize=12)
    if truth is not None:
        for x1, y1, x2, y2 in truth.tolist():
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                       linestyle="--", linewidth=1.2))
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        x1, y1, x2, y2 = box
        color = cmap((label - 1) % 10)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2))
        text = names[label - 1] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        ax.text(x1, max(y1 - 1, 0), text, fontsize=10, color="white", va="bottom",
                bbox={"facecolor": color, "alpha": 0.85, "pad": 1.5, "edgecolor": "none"})


@torch.no_grad()
def prediction_grid(models: Mapping[str, nn.Module], dataset: DetectionDataset, indices: Sequence[int],
                    path: str | Path, score_threshold: float = 0.5, panel_inches: float = 4.2) -> Path:
    """Rows: images; columns: each model's detections above ``score_threshold``, ground truth dashed white.

    Panels are ``panel_inches`` at 100 dpi, i.e. a 160-px image drawn at 2.6x, so labels stay readable when
    the page shows the figure at its width.
    """
    cols = len(models)
    fig, axes = plt.subplots(len(indices), cols, figsize=(panel_inches * cols, panel_inches * len(indices)),
                             squeeze=False)
    names = dataset.class_names
    for row, idx in enumerate(indices):
        image, target = dataset.load_image(idx), dataset.get_target(idx)
        for col, (name, model) in enumerate(models.items()):
            was = model.training
            model.eval()
            out = model([image])[0]
            model.train(was)
            keep = out["scores"] >= score_threshold
            _draw(axes[row, col], image, out["boxes"][keep], out["labels"][keep], out["scores"][keep], names,
                  f"{name}: {int(keep.sum())} detections" if row == 0 else f"{name}: {int(keep.sum())}",
                  truth=target["boxes"])
    handles = [Line2D([], [], color="black", linestyle="--", label="ground truth box (dashed)"),
               Line2D([], [], color="tab:blue", linewidth=2, label=f"detection: class and score >= {score_threshold}")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=11, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save_figure(fig, path, tight=False)


@torch.no_grad()
def teacher_soft_labels(teacher: nn.Module, image: torch.Tensor, boxes: torch.Tensor, true_labels: Sequence[int],
                        temperature: float = 1.0) -> torch.Tensor:
    """The teacher's class distribution softmax(z/T) on given ground-truth boxes (rows: boxes; col 0 background)."""
    teacher.eval()
    images, targets = teacher.transform([image], [{"boxes": boxes, "labels": torch.as_tensor(true_labels)}])
    features = teacher.backbone(images.tensors)
    heads = teacher.roi_heads
    pooled = heads.box_roi_pool(features, [targets[0]["boxes"]], images.image_sizes)
    logits, _ = heads.box_predictor(heads.box_head(pooled))
    return torch.softmax(logits / temperature, dim=1)


def pick_lookalike_examples(teacher: nn.Module, dataset: DetectionDataset, pairs: Sequence[tuple[str, str]],
                            max_images: int = 60) -> list[dict]:
    """Per look-alike pair, the ground-truth object where the teacher is right (its first choice, background
    included, is the true class) and its runner-up is the look-alike class, with the largest runner-up
    probability: what a one-hot label cannot say. When no object qualifies (a teacher trained briefly, as in
    the quick demo, mostly says background) the rule is relaxed to the object classes and ``strict`` is False.
    """
    names = list(dataset.class_names)
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    found: dict[tuple[bool, frozenset], dict] = {}
    for idx in range(min(len(dataset), max_images)):
        target = dataset.get_target(idx)
        if len(target["boxes"]) == 0:
            continue
        image = dataset.load_image(idx)
        probs = teacher_soft_labels(teacher, image, target["boxes"], target["labels"].tolist())
        for j, label in enumerate(target["labels"].tolist()):
            true_name = names[label - 1]
            if true_name not in partner:
                continue
            top2 = torch.topk(probs[j, 1:], 2).indices.tolist()
            if top2[0] != label - 1 or names[top2[1]] != partner[true_name]:
                continue
            strict = int(probs[j].argmax()) == label
            key = (strict, frozenset((true_name, partner[true_name])))
            runner_up = float(probs[j, 1 + top2[1]])
            if key not in found or runner_up > found[key]["runner_up"]:
                x1, y1, x2, y2 = (int(v) for v in target["boxes"][j].tolist())
                found[key] = {"index": idx, "object": j, "true": true_name, "lookalike": partner[true_name],
                              "runner_up": runner_up, "probs": probs[j].tolist(), "strict": strict,
                              "crop": image[:, y1:y2 + 1, x1:x2 + 1]}
    for strict in (True, False):
        chosen = [found[(strict, frozenset(p))] for p in pairs if (strict, frozenset(p)) in found]
        if chosen:
            return chosen
    return []


def soft_label_figure(examples: Sequence[dict], class_names: Sequence[str], path: str | Path) -> Path:
    """One row per example: its crop, and the teacher's probabilities as bars (true class, look-alike, others)."""
    if not examples:
        raise ValueError("soft_label_figure: no example where the teacher is right and its runner-up is the "
                         "look-alike class")
    n = len(examples)
    fig, axes = plt.subplots(n, 2, figsize=(9, 2.4 * n + 0.6), squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
    labels = ["background", *class_names]
    for row, ex in enumerate(examples):
        axes[row, 0].imshow(ex["crop"].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        axes[row, 0].axis("off")
        article = "an" if ex["true"][0] in "aeiou" else "a"
        axes[row, 0].set_title(f"{article} {ex['true']} (test image {ex['index']})", fontsize=10)
        probs = ex["probs"]
        colors = ["tab:green" if name == ex["true"] else "tab:orange" if name == ex["lookalike"] else "lightgray"
                  for name in labels]
        axes[row, 1].barh(range(len(labels)), probs, color=colors)
        axes[row, 1].set_yticks(range(len(labels)), labels, fontsize=9)
        axes[row, 1].set_xlim(0, 1.08)
        axes[row, 1].invert_yaxis()
        axes[row, 1].set_xlabel("teacher's probability (T = 1)", fontsize=9)
        for i, p in enumerate(probs):
            axes[row, 1].text(p + 0.01, i, f"{p:.3f}", va="center", fontsize=8)
    strict = all(ex.get("strict", True) for ex in examples)
    first = "the teacher's first choice" if strict else "the teacher's first object class"
    handles = [Patch(color="tab:green", label=f"true class ({first})"),
               Patch(color="tab:orange", label="its look-alike (the teacher's runner-up)"),
               Patch(color="lightgray", label="other classes")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    title = "What the teacher's soft labels say that a one-hot label does not"
    if not strict:
        title += "\n(this teacher is not yet sure of any object: it still ranks background first)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return save_figure(fig, path, tight=False)
