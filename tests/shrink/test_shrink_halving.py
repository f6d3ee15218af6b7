"""Successive halving on fixed tables: the schedule, who is cut where, the first rung's spread over families
and nearness to the target line, and the rungs on the page of a search whose scores come from a table."""

from __future__ import annotations

import json

import pytest
from shrink_fakes import FakeTraining, _search

from detdistill.shrink import TargetUnreachable, halving_schedule, pipeline
from detdistill.shrink.candidates import TEST_TIERS
from detdistill.shrink.front import Row, Target
from detdistill.shrink.halving import first_rung, successive_halving


@pytest.mark.parametrize(("n", "budget", "finalists", "expected"), [
    (8, 300, 2, [(8, 75, 4), (4, 150, 2), (2, 300, 1)]),
    (9, 300, 2, [(9, 37, 5), (5, 75, 3), (3, 150, 2), (2, 300, 1)]),
    (5, 40, 1, [(5, 5, 3), (3, 10, 2), (2, 20, 1), (1, 40, 1)]),
    (1, 300, 2, [(1, 300, 1)]),
    (3, 300, 3, [(3, 300, 1)]),
    (8, 2, 2, [(8, 1, 4), (4, 1, 2), (2, 2, 1)]),  # a tiny budget: at least one step a run
])
def test_the_schedule_halves_to_the_finalists_and_ends_at_the_budget(n, budget, finalists, expected) -> None:  # noqa: ANN001
    assert [(r.size, r.steps, r.keep) for r in halving_schedule(n, budget, finalists)] == expected


# Validation mAP@0.5 of each candidate after so many steps. "late" starts behind and ends ahead; "flash" leads
# the first rung and fades; "slow" is cut at once. Ties ("tie_a" / "tie_b" at 75 steps) go to the smaller.
TABLE = {
    "late": {75: 0.38, 150: 0.55, 300: 0.80}, "flash": {75: 0.60, 150: 0.58, 300: 0.60},
    "steady": {75: 0.40, 150: 0.50, 300: 0.70}, "tie_a": {75: 0.35, 150: 0.40}, "tie_b": {75: 0.35},
    "slow": {75: 0.10}, "slower": {75: 0.05}, "slowest": {75: 0.01},
}
PARAMS = {"late": 5, "flash": 5, "steady": 5, "tie_a": 3, "tie_b": 4, "slow": 5, "slower": 5, "slowest": 5}


def test_halving_on_a_fixed_table_cuts_the_worse_half_at_each_rung() -> None:
    calls: list[tuple[str, int]] = []

    def score(cid: str, steps: int) -> dict[str, float]:
        calls.append((cid, steps))
        return {"mAP50": TABLE[cid][steps]}

    rungs = successive_halving(halving_schedule(8, 300, 2), list(TABLE), PARAMS, score)
    assert [(r["steps"], r["kept"]) for r in rungs] == [
        (75, ["flash", "steady", "late", "tie_a"]),  # tie_a (3 M) beats tie_b (4 M) at 0.35
        (150, ["flash", "late"]),
        (300, ["late"]),  # the late bloomer wins at the budget
    ]
    # every candidate is scored once per rung it entered, never after it was cut
    assert sorted(calls) == sorted([(c, 75) for c in TABLE] + [(c, 150) for c in ("flash", "steady", "tie_a", "late")]
                                   + [("flash", 300), ("late", 300)])


ROWS = [  # a 100 ms teacher; three families and the low-rank compressions
    Row("mnv2-w075-full", 30.0, 3.33, 900, "zoo", "mobilenet_v2", "mnv2-w075"),
    Row("mnv2-w075-lean", 24.0, 4.17, 900, "zoo", "mobilenet_v2", "mnv2-w075"),
    Row("mnv2-w050-full", 26.0, 3.85, 500, "zoo", "mobilenet_v2", "mnv2-w050"),
    Row("cpu-w075-lean", 11.0, 9.09, 2000, "zoo", "cpu", "cpu-w075"),  # much faster, more parameters
    Row("cpu-w050-lean", 9.0, 11.1, 1000, "zoo", "cpu", "cpu-w050"),
    Row("s8-w050-full", 31.0, 3.23, 600, "zoo", "mobilenet_v2_s8", "s8-w050"),
    Row("lowrank-2x-full", 55.0, 1.82, 5000, "lowrank", "lowrank", "lowrank-2x"),  # out of reach
]


def test_the_first_rung_spreads_over_families_nearest_the_target_line_first() -> None:
    picked = [r.id for r in first_rung(ROWS, Target(speed_up=3.0, margin=0.05), 5)]
    # families in order of their member nearest the line; in each, one tier of an architecture before another
    assert picked == ["s8-w050-full", "mnv2-w075-full", "cpu-w075-lean", "mnv2-w050-full", "cpu-w050-lean"]
    assert "lowrank-2x-full" not in picked
    with pytest.raises(TargetUnreachable, match="cpu-w050-lean"):
        first_rung(ROWS, Target(speed_up=20.0), 5)


def test_a_candidate_near_the_line_that_validates_better_beats_a_much_faster_one() -> None:
    first = [r.id for r in first_rung(ROWS, Target(speed_up=3.0, margin=0.05), 4)]
    params = {r.id: r.params for r in ROWS}
    better_near = {"s8-w050-full": 0.8, "mnv2-w075-full": 0.7, "cpu-w075-lean": 0.6, "mnv2-w050-full": 0.5}
    rungs = successive_halving(halving_schedule(4, 300, 2), first, params,
                               lambda cid, steps: {"mAP50": better_near[cid]})
    assert rungs[-1]["kept"][0] == "s8-w050-full"
    better_fast = {**better_near, "cpu-w075-lean": 0.9}
    rungs = successive_halving(halving_schedule(4, 300, 2), first, params,
                               lambda cid, steps: {"mAP50": better_fast[cid]})
    assert rungs[-1]["kept"][0] == "cpu-w075-lean"


class HeadScores:
    """Validation mAP@0.5 by box-head width and test-time detections: head 64 lean leads the first rung."""

    def __call__(self, model, dataset, threads) -> dict[str, float]:  # noqa: ANN001
        head = int(model.roi_heads.box_head.fc6.out_features)
        dets = int(model.roi_heads.detections_per_img)
        value = {32: 0.3, 64: 0.5, 128: 0.9}[head] + (0.1 if dets < 100 else 0.0)
        return {"mAP50": value, "AP": value / 2}


def test_the_page_shows_every_rung_with_who_was_cut_on_what_score(teacher_path, tiny_config, tiny_family, tmp_path,  # noqa: ANN001
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "train_run", FakeTraining())
    monkeypatch.setattr(pipeline, "_evaluate", HeadScores())
    result = _search(teacher_path, tiny_config, tmp_path, tiny_family, tiers=(TEST_TIERS[0], TEST_TIERS[-1]),
                     candidates=4, finalists=1, budget_steps=4, report=True)
    assert [(len(r["entered"]), r["steps"]) for r in result.rungs] == [(4, 1), (2, 2), (1, 4)]
    assert result.rungs[0]["kept"] == ["cpu-w025-fpn16-head64-lean", "cpu-w025-fpn16-head64-full"]
    assert result.chosen == "cpu-w025-fpn16-head64-lean"
    page = (tmp_path / "shrink.html").read_text()
    for cid in result.rungs[0]["entered"]:
        assert cid in page
    assert page.count("cut here") == 3 and "<b>chosen</b>" in page and "0.600" in page
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["kept"] for r in summary["rungs"]] == [r["kept"] for r in result.rungs]
