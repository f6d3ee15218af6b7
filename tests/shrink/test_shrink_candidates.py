"""Candidate generation: deterministic for a teacher, every zoo member pairs with it, low-rank rows carry ratios."""

from __future__ import annotations

import pytest

from detdistill.models import describe_pairing, load_detector
from detdistill.shrink.candidates import FAMILIES, TEST_TIERS, build_candidate, generate_candidates

TIERS = (TEST_TIERS[0], TEST_TIERS[-1])  # full and lean: fewer FLOP counts, same checks


@pytest.fixture(scope="module")
def generated(teacher_path, tiny_family_module):  # noqa: ANN001, ANN201
    return generate_candidates(load_detector(teacher_path), families=[tiny_family_module], lowrank_ratios=(2.0,),
                               tiers=TIERS, log=lambda line: None)


def _rows(cands):  # noqa: ANN001, ANN202
    return [(c.id, c.kind, c.params, round(c.gflops, 9), c.compression, c.overrides) for c in cands]


def test_generation_is_deterministic_for_a_teacher(teacher_path, tiny_family, generated) -> None:  # noqa: ANN001
    first = generated
    second = generate_candidates(load_detector(teacher_path), families=[tiny_family], lowrank_ratios=(2.0,),
                                 tiers=TIERS, log=lambda line: None)
    assert _rows(first) == _rows(second)
    # 1 width x 1 FPN x 2 heads x 2 test tiers, + 1 low-rank ratio x 2 tiers
    assert len(first) == 6
    assert len({c.id for c in first}) == len(first)
    # A narrower head is smaller; fewer test-time proposals cost fewer FLOPs at the same size.
    by_id = {c.id: c for c in first}
    assert by_id["cpu-w025-fpn16-head32-full"].params < by_id["cpu-w025-fpn16-head64-full"].params
    assert by_id["cpu-w025-fpn16-head32-lean"].gflops < by_id["cpu-w025-fpn16-head32-full"].gflops
    assert by_id["cpu-w025-fpn16-head32-lean"].params == by_id["cpu-w025-fpn16-head32-full"].params


def test_zoo_members_pair_with_the_teacher_and_other_strides_are_left_out(teacher_path) -> None:  # noqa: ANN001
    teacher = load_detector(teacher_path)
    lines: list[str] = []
    mobilenet = [f for f in FAMILIES if f.name == "mobilenet_v2"]
    assert generate_candidates(teacher, families=mobilenet, lowrank_ratios=(), log=lines.append) == []
    assert any("does not pair" in line and "strides" in line for line in lines)
    assert any("family mobilenet_v2 left out" in line for line in lines)


def test_lowrank_candidates_record_ratio_and_knobs(teacher_path, generated) -> None:  # noqa: ANN001
    teacher = load_detector(teacher_path)
    cands = generated
    low = [c for c in cands if c.kind == "lowrank"]
    assert {c.id for c in low} == {"lowrank-2x-full", "lowrank-2x-lean"}
    teacher_params = sum(p.numel() for p in teacher.parameters())
    for c in low:
        assert c.compression >= 2.0
        assert abs(teacher_params / c.params - c.compression) < 1e-6
    lean = next(c for c in low if c.id.endswith("lean"))
    model = build_candidate(lean, teacher)
    assert model.rpn._post_nms_top_n["testing"] == lean.overrides["rpn_post_nms_top_n_test"] < \
        teacher.rpn._post_nms_top_n["testing"]
    assert model.detdistill_spec["kwargs"]["box_detections_per_img"] == lean.overrides["box_detections_per_img"]
    assert describe_pairing(teacher, model).pairs
    zoo = next(c for c in cands if c.kind == "zoo")
    assert describe_pairing(teacher, build_candidate(zoo, teacher)).pairs
