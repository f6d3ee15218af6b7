"""Successive halving: many candidates briefly, the better half longer, the finalists at the budget.

Parameters do not rank students of different families (a MobileNetV2 student and a CPU-family one of the same
size learn differently, and a low-rank one starts from the teacher's weights), so the search ranks them by
what they score on validation after being distilled. The first rung takes ``--candidates`` students spread
over the families, nearest the target line first (the largest each family can afford); every rung trains
its candidates from scratch for twice the steps of the one before and keeps the better half (rounded up),
until ``--finalists`` remain, trained for ``--budget-steps``; the best of those is the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .front import Row, Target, feasible


@dataclass(frozen=True)
class Rung:
    """Rung ``index``: ``size`` candidates trained ``steps`` steps each; the best ``keep`` go on."""

    index: int
    steps: int
    size: int
    keep: int


def halving_schedule(candidates: int, budget_steps: int, finalists: int) -> list[Rung]:
    """The rungs for ``candidates`` in the first rung, halved (rounding up) until at most ``finalists`` remain;
    the last rung trains ``budget_steps``, each earlier one half the steps of the next (at least 1).

    >>> [(r.size, r.steps, r.keep) for r in halving_schedule(8, 300, 2)]
    [(8, 75, 4), (4, 150, 2), (2, 300, 1)]
    >>> [(r.size, r.steps, r.keep) for r in halving_schedule(2, 300, 3)]
    [(2, 300, 1)]
    """
    sizes = [candidates]
    while sizes[-1] > finalists:
        sizes.append(max(finalists, math.ceil(sizes[-1] / 2)))
    last = len(sizes) - 1
    return [Rung(k, max(1, budget_steps // 2 ** (last - k)), size, sizes[k + 1] if k < last else 1)
            for k, size in enumerate(sizes)]


def rank_key(score: dict[str, float], params: int, cid: str) -> tuple:
    """Better validation mAP@0.5, then AP; ties go to the smaller candidate, then by id (never by a timing,
    which a rerun would measure anew)."""
    return (-round(score.get("mAP50", 0.0), 6), -round(score.get("AP", 0.0), 6), params, cid)


def cut(scores: dict[str, dict[str, float]], params: dict[str, int], keep: int) -> list[str]:
    """The ``keep`` best candidates of a rung, best first.

    >>> cut({"a": {"mAP50": 0.5}, "b": {"mAP50": 0.7}, "c": {"mAP50": 0.5, "AP": 0.2}}, {"a": 1, "b": 2, "c": 3}, 2)
    ['b', 'c']
    """
    return sorted(scores, key=lambda cid: rank_key(scores[cid], params[cid], cid))[:keep]


def successive_halving(rungs: Sequence[Rung], first: Sequence[str], params: dict[str, int],
                       score: Callable[[str, int], dict[str, float]]) -> list[dict[str, Any]]:
    """Run the rungs: ``score(candidate, steps)`` (mean validation metrics after that many steps) for every
    candidate that entered a rung, :func:`cut` to the rung's ``keep``. Returns one record per rung:
    ``index``, ``steps``, ``entered``, ``scores``, ``kept`` (best first); the last rung's first is the choice.

    >>> table = {("a", 1): 0.9, ("b", 1): 0.5, ("c", 1): 0.6, ("d", 1): 0.1, ("a", 2): 0.4, ("c", 2): 0.7}
    >>> out = successive_halving(halving_schedule(4, 2, 2), ["a", "b", "c", "d"], dict.fromkeys("abcd", 1),
    ...                          lambda cid, steps: {"mAP50": table[cid, steps]})
    >>> [(r["steps"], r["kept"]) for r in out]
    [(1, ['a', 'c']), (2, ['c'])]
    """
    records: list[dict[str, Any]] = []
    entered = list(first)
    for rung in rungs:
        scores = {cid: score(cid, rung.steps) for cid in entered}
        kept = cut(scores, params, rung.keep)
        records.append({"index": rung.index, "steps": rung.steps, "entered": entered, "scores": scores,
                        "kept": kept})
        entered = kept
    return records


def first_rung(rows: Sequence[Row], target: Target, k: int, threads: int = 1) -> list[Row]:
    """The ``k`` candidates of the first rung: those the target admits, taken from each family in turn (low-rank
    compressions count as one), in each family nearest the target line first, one test-time tier of an
    architecture before the next tier of any. :class:`~detdistill.shrink.front.TargetUnreachable` when none
    is admitted.

    >>> rows = [Row("a1-full", 30, 3.3, 9, family="a", arch="a1"), Row("a1-lean", 20, 5.0, 9, family="a", arch="a1"),
    ...         Row("a2-full", 25, 4.0, 5, family="a", arch="a2"), Row("b1-full", 32, 3.1, 7, family="b", arch="b1"),
    ...         Row("c1-full", 40, 2.5, 8, family="c", arch="c1")]
    >>> [r.id for r in first_rung(rows, Target(speed_up=3), 4)]
    ['b1-full', 'a1-full', 'a2-full', 'a1-lean']
    """
    ok = feasible(rows, target, threads)
    families: dict[str, list[Row]] = {}
    for r in sorted(ok, key=lambda r: (r.speed_up, r.id)):  # nearest the line first
        families.setdefault(r.family or r.kind, []).append(r)
    order: dict[str, list[Row]] = {}
    for fam, members in families.items():
        seen: set[str] = set()
        first = [r for r in members if not (r.arch in seen or seen.add(r.arch))]  # type: ignore[func-returns-value]
        order[fam] = first + [r for r in members if r not in first]
    queues = sorted(order.values(), key=lambda q: (q[0].speed_up, q[0].id))
    picked: list[Row] = []
    while len(picked) < k and any(queues):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    return picked
