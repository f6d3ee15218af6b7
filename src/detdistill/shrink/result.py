"""The typed result of :func:`detdistill.shrink.search` (its own module: the search and the report both read it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ShrinkResult:
    """What :func:`search` found: every candidate's row, the rungs, the choice and its final scores.

    ``candidates``: one dict per candidate (build recipe, params, GFLOPs, compression, timing, ``feasible``,
    ``front``, ``shortlisted`` — in the first rung —, ``last_rung`` and ``val_mAP50`` / ``val_AP`` there).
    ``shortlist``: the first rung's candidates.
    ``final``: ``{"distilled": {...}, "baseline": {...}}`` final metrics per seed and their mean, on the split
    ``final_split_role`` names.
    ``final_speed``: the trained chosen student against the teacher, timed side by side after training.
    """

    out_dir: Path
    target: str
    target_value: dict[str, float | None]
    threads: int
    teacher: dict[str, Any]
    candidates: list[dict[str, Any]]
    shortlist: list[str]
    chosen: str
    validation: dict[str, Any]
    final: dict[str, Any]
    final_speed: dict[str, Any]
    budget_steps: int
    final_steps: int
    seeds: list[int]
    final_seeds: list[int]
    checkpoint: Path
    page: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    rungs: list[dict[str, Any]] = field(default_factory=list)
    """Successive halving, rung by rung: ``index``, ``steps``, ``entered`` (ids), ``scores`` (mean validation
    metrics per id), ``kept`` (ids, best first; the last rung's first is the choice)."""
    final_split_role: str = "test"
    """``test``, or ``validation`` when the config has no test split (the final runs are then scored there)."""
    timer: str = "cpu_timer"
    scored_as: str = "torch fp32"
    """How every score was measured: ``torch fp32``, or the exported form (``openvino int8 ...``) when exporting
    changes the score, each candidate then quantised after its distillation (its eager score kept in score.json)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("out_dir", "checkpoint", "page"):
            out[key] = None if out[key] is None else str(out[key])
        return out

    def chosen_row(self) -> dict[str, Any]:
        return next(c for c in self.candidates if c["id"] == self.chosen)
