"""The target filter, the Pareto front over (latency, parameters) on a fixed table, and the refusal line."""

from __future__ import annotations

import pytest

from detdistill.errors import DetDistillError
from detdistill.shrink.front import Row, Target, TargetError, TargetUnreachable, feasible, pareto_front

# id, median ms, speed-up over a 100 ms teacher, parameters
TABLE = [
    Row("big", 50.0, 2.0, 900), Row("mid", 25.0, 4.0, 500), Row("mid_slow", 30.0, 100 / 30, 400),
    Row("small", 20.0, 5.0, 200), Row("tiny", 10.0, 10.0, 100), Row("tiny_fat_slow", 12.0, 100 / 12, 90),
    Row("twin", 25.0, 4.0, 500),
]


def test_front_on_a_fixed_table() -> None:
    # mid_slow: mid is faster and larger; tiny_fat_slow: tiny is faster and larger. mid and twin tie: both stay.
    assert [r.id for r in pareto_front(TABLE)] == ["tiny", "small", "mid", "twin", "big"]


def test_feasible_by_speedup_and_by_ms() -> None:
    assert {r.id for r in feasible(TABLE, Target(speed_up=4))} == {"mid", "small", "tiny", "tiny_fat_slow", "twin"}
    assert {r.id for r in feasible(TABLE, Target(ms=20))} == {"small", "tiny", "tiny_fat_slow"}


def test_unreachable_target_names_the_fastest_measured_figure() -> None:
    with pytest.raises(TargetUnreachable) as info:
        feasible(TABLE, Target(speed_up=20), threads=1)
    message = str(info.value)
    assert "\n" not in message
    assert "tiny" in message and "10.0 ms" in message and "10.00x" in message
    assert isinstance(info.value, DetDistillError)


def test_the_margin_admits_only_candidates_clear_of_the_line() -> None:
    # mid and twin sit exactly on 4x: met, but not admitted with a 5 % margin
    target = Target(speed_up=4, margin=0.05)
    assert target.met(4.0, 25.0) and not target.met(4.0, 25.0, with_margin=True)
    assert {r.id for r in feasible(TABLE, target)} == {"small", "tiny", "tiny_fat_slow"}
    assert {r.id for r in feasible(TABLE, Target(ms=20.5, margin=0.05))} == {"tiny", "tiny_fat_slow"}
    with pytest.raises(TargetUnreachable, match="with a 5 % margin"):
        feasible(TABLE, Target(speed_up=9.8, margin=0.05))


@pytest.mark.parametrize("kwargs", [{}, {"speed_up": 2, "ms": 3}, {"speed_up": 0}, {"ms": -1},
                                    {"speed_up": float("nan")}, {"ms": float("inf")}, {"speed_up": 2, "margin": -0.1},
                                    {"speed_up": 2, "margin": 1.0}])
def test_bad_targets_are_refused(kwargs) -> None:  # noqa: ANN001
    with pytest.raises(TargetError):
        Target(**kwargs)
