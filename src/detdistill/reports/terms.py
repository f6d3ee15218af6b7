"""Words for the logged training keys, and the panel group each belongs to (detection/distillation/diagnostics).

The distillation-term registry adds keys over time, so a key not listed here still gets a readable title
(from its name) and a group (from its prefix), never a bare ``kd/...`` on the page.
"""

from __future__ import annotations

GROUPS = ("detection", "distillation", "diagnostics")
GROUP_TITLES = {
    "detection": "Detection losses (against the ground truth)",
    "distillation": "Distillation losses (against the teacher)",
    "diagnostics": "Diagnostics",
}

TITLES: dict[str, tuple[str, str]] = {
    "loss": ("diagnostics", "total training loss (every term, weighted)"),
    "loss_objectness": ("detection", "RPN objectness loss"),
    "loss_rpn_box_reg": ("detection", "RPN box regression loss"),
    "loss_classifier": ("detection", "box classification loss"),
    "loss_box_reg": ("detection", "box regression loss"),
    "kd/rpn_hard_cls": ("detection", "RPN objectness, ground-truth part"),
    "kd/rpn_smooth_l1": ("detection", "RPN box regression, ground-truth part"),
    "kd/rcn_hard_cls": ("detection", "box classification, ground-truth part"),
    "kd/rcn_smooth_l1": ("detection", "box regression, ground-truth part"),
    "loss_hint": ("distillation", "hint loss (student features vs the teacher's)"),
    "kd/hint": ("distillation", "hint: distance of the adapted student features to the teacher's"),
    "kd/rpn_soft": ("distillation", "RPN objectness against the teacher's soft labels"),
    "kd/rcn_soft": ("distillation", "box classification against the teacher's soft labels"),
    "kd/rpn_bounded": ("distillation", "RPN box regression, teacher-bounded loss"),
    "kd/rcn_bounded": ("distillation", "box regression, teacher-bounded loss"),
    "kd/rpn_bound_active": ("diagnostics", "share of positive anchors where the teacher bound is active"),
    "kd/rcn_bound_active": ("diagnostics", "share of positive RoIs where the teacher bound is active"),
    "grad_norm": ("diagnostics", "gradient norm before clipping"),
    "lr": ("diagnostics", "learning rate"),
    "val/mAP50": ("validation", "validation mAP@0.5"),
    "val/AP": ("validation", "validation COCO AP@[.5:.95]"),
    "val/loss": ("validation", "validation loss"),
}

_WORDS = {"rpn": "RPN", "rcn": "box head", "kd": "distillation", "cls": "classification", "reg": "regression",
          "l1": "L1", "l2": "L2", "ce": "cross-entropy", "kl": "KL", "fg": "foreground", "bg": "background"}
_DIAGNOSTIC_HINTS = ("active", "share", "fraction", "ratio", "norm", "count", "rate", "weight")


def _words(key: str) -> str:
    name = key.split("/", 1)[-1].removeprefix("loss_")
    return " ".join(_WORDS.get(part, part) for part in name.split("_") if part)


def describe_key(key: str) -> tuple[str, str]:
    """``(group, title)`` of a logged key; unknown keys get a title built from their name."""
    if key in TITLES:
        return TITLES[key]
    if key.startswith("kd/") or key.startswith("loss_"):
        if any(hint in key for hint in _DIAGNOSTIC_HINTS):
            return "diagnostics", f"{_words(key)} ({key})"
        if key.startswith("loss_") and not key.startswith("loss_kd"):
            # torchvision's own terms are listed above; any other loss_* comes from a distillation term
            return "distillation", f"{_words(key)} loss ({key})"
        return "distillation", f"{_words(key)} ({key})"
    return "diagnostics", f"{_words(key)} ({key})"


def plotted_keys(record_keys: set[str]) -> list[str]:
    """The keys of train records worth a panel, in a stable order (known keys first, as listed above)."""
    keep = {k for k in record_keys if k.startswith(("loss", "kd/")) or k == "grad_norm"}
    known = [k for k in TITLES if k in keep]
    return known + sorted(keep - set(known))
