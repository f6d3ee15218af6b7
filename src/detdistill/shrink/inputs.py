"""Every input of a search checked in one place, before anything is read, timed, trained or written.

Each refusal is one line naming the flag (as the CLI spells it) and the value given, and says what to give
instead. :func:`check_inputs` returns the values as the search uses them (seeds as tuples, the target as a
:class:`~detdistill.shrink.front.Target`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import DetDistillError
from .front import Target, TargetError


class ShrinkInputError(DetDistillError):
    """A flag of ``detdistill shrink`` (or a keyword of :func:`~detdistill.shrink.search`) out of range."""


@dataclass(frozen=True)
class ShrinkInputs:
    """The checked inputs. ``final_steps`` None: the config's ``train.max_steps``."""

    teacher: Path
    out: Path
    target: Target
    threads: int
    budget_steps: int
    candidates: int
    finalists: int
    final_steps: int | None
    seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    timing_images: int
    holdout_fraction: float
    holdout_seed: int


def _whole(flag: str, value: Any, minimum: int, hint: str = "") -> int:
    """``value`` as an int >= ``minimum``; bools, floats and strings are refused (``--seeds 2.5`` is no count).

    >>> _whole("--threads", 2, 1)
    2
    >>> _whole("--final-steps", 0, 1, " (leave it out for the config's train.max_steps)")
    Traceback (most recent call last):
    ...
    detdistill.shrink.inputs.ShrinkInputError: shrink: --final-steps 0: give a whole number >= 1 (leave it out for the config's train.max_steps)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ShrinkInputError(f"shrink: {flag} {value!r}: give a whole number >= {minimum}{hint}")
    return int(value)


def _seeds(flag: str, value: int | Sequence[int]) -> tuple[int, ...]:
    """A count N (seeds 0..N-1, as the CLI gives them) or explicit seeds, distinct and >= 0."""
    if not isinstance(value, (list, tuple, range)):
        return tuple(range(_whole(flag, value, 1, " (how many seeds: 0..N-1)")))
    seeds = tuple(value)
    if not seeds:
        raise ShrinkInputError(f"shrink: {flag} {list(seeds)}: give one seed or more")
    for s in seeds:
        _whole(flag, s, 0, f" for every seed (got {list(seeds)})")
    if len(set(seeds)) != len(seeds):
        raise ShrinkInputError(f"shrink: {flag} {list(seeds)}: a seed is repeated; runs pair by seed")
    return tuple(int(s) for s in seeds)


def _target(speed_up: Any, ms: Any, margin: Any) -> Target:
    for flag, value in (("--target-speedup", speed_up), ("--target-ms", ms), ("--target-margin", margin)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ShrinkInputError(f"shrink: {flag} {value!r}: give a finite number")
    try:
        return Target(speed_up, ms, margin)
    except TargetError as exc:
        raise ShrinkInputError(str(exc)) from exc


def check_inputs(*, teacher: str | Path, out: str | Path, target_speedup: float | None, target_ms: float | None,
                 target_margin: float, threads: Any, budget_steps: Any, candidates: Any, finalists: Any,
                 final_steps: Any, seeds: int | Sequence[int], final_seeds: int | Sequence[int] | None,
                 timing_images: Any, holdout_fraction: Any, holdout_seed: Any) -> ShrinkInputs:
    """Every flag's type and range, the teacher file and the run folder; nothing is written.

    >>> check_inputs(teacher=__file__, out="/nonexistent/s", target_speedup=None, target_ms=float("inf"),
    ...              target_margin=0.05, threads=1, budget_steps=30, candidates=8, finalists=2, final_steps=None,
    ...              seeds=1, final_seeds=None, timing_images=20, holdout_fraction=0.2, holdout_seed=0)
    Traceback (most recent call last):
    ...
    detdistill.shrink.inputs.ShrinkInputError: shrink: --target-ms inf: give a finite number
    """
    target = _target(target_speedup, target_ms, target_margin)
    checked = dict(
        threads=_whole("--threads", threads, 1),
        budget_steps=_whole("--budget-steps", budget_steps, 1, " (steps of the finalists' short runs)"),
        candidates=_whole("--candidates", candidates, 1, " (candidates in the first rung)"),
        finalists=_whole("--finalists", finalists, 1, " (candidates trained at --budget-steps)"),
        final_steps=None if final_steps is None else _whole(
            "--final-steps", final_steps, 1, " (leave it out for the config's train.max_steps)"),
        timing_images=_whole("--timing-images", timing_images, 1),
        holdout_seed=_whole("--holdout-seed", holdout_seed, 0))
    seed_tuple = _seeds("--seeds", seeds)
    final_tuple = seed_tuple if final_seeds is None else _seeds("--final-seeds", final_seeds)
    if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, numbers.Real) \
            or not 0.0 < holdout_fraction < 1.0:
        raise ShrinkInputError(f"shrink: --holdout-fraction {holdout_fraction!r}: give a share in (0, 1)")
    teacher_path, out_path = Path(teacher), Path(out)
    if not teacher_path.is_file():
        raise ShrinkInputError(f"shrink: --teacher {teacher_path}: not a file; pass a trained teacher checkpoint")
    if out_path.exists() and not out_path.is_dir():
        raise ShrinkInputError(f"shrink: --out {out_path}: a file, not a folder; choose a run folder")
    return ShrinkInputs(teacher_path, out_path, target, seeds=seed_tuple, final_seeds=final_tuple,
                        holdout_fraction=float(holdout_fraction), **checked)
