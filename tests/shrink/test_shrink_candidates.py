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


def test_the_stride8_family_joins_where_objects_are_small_and_pairs_through_the_feature_terms() -> None:
    from detdistill.data.synthetic import SyntheticShapes
    from detdistill.distill.config import DistillConfig
    from detdistill.models import build_detector
    from detdistill.models.pairing import feature_levels
    from detdistill.shrink.candidates import Family, small_object_share

    teacher = build_detector("mobilenet_v2_fpn", 7, min_size=96, max_size=96)  # finest stride 16
    s8 = Family("mobilenet_v2_s8", "mobilenet_v2_050_fpn_s8", "width_mult", (0.35,), (32,), (128,),
                pairs="features", small_objects_only=True)
    lean = (TEST_TIERS[-1],)
    lines: list[str] = []
    assert generate_candidates(teacher, families=[s8], lowrank_ratios=(), tiers=lean, small_objects=False,
                               log=lines.append) == []
    assert any("family mobilenet_v2_s8 left out: the training data has few small objects" in x for x in lines)
    (cand,) = generate_candidates(teacher, families=[s8], lowrank_ratios=(), tiers=lean, small_objects=True,
                                  distill_config=DistillConfig(recipe="pkd"), log=lines.append)
    model = build_candidate(cand, teacher)
    assert min(lv.stride for lv in feature_levels(model)) == 8
    assert not describe_pairing(teacher, model).pairs  # not anchor by anchor: through the feature terms
    lines.clear()  # the RPN terms need anchors that match one to one: the family is left out, saying why
    assert generate_candidates(teacher, families=[s8], lowrank_ratios=(), tiers=lean, small_objects=True,
                               distill_config=DistillConfig(recipe="chen2017"), log=lines.append) == []
    assert any("the distillation terms refuse it" in x for x in lines)
    # at 96 px every synthetic box is under 3 x 16 px; at a 1600 px input none is
    data = SyntheticShapes("train", num_images=4)
    assert small_object_share(data, teacher) == 1.0
    assert small_object_share(data, build_detector("mobilenet_v2_fpn", 7, min_size=1600, max_size=1600)) == 0.0


def test_the_small_object_share_weighs_classes_as_map_does() -> None:
    """BCCD's case: a rare class made of small boxes brings the stride-8 family in, though few boxes are small."""
    from types import SimpleNamespace

    from detdistill.data.base import ImageRecord, RecordTable
    from detdistill.models import build_detector
    from detdistill.shrink.candidates import small_object_share

    teacher = build_detector("mobilenet_v2_fpn", 3, min_size=480, max_size=640)  # finest stride 16: small < 48 px
    large = [[0, 0, 100, 100]] * 9
    records = [ImageRecord(image_id=1, file_name="a.jpg", width=640, height=480,
                           boxes=large + [[0, 0, 20, 20]], labels=[1] * 9 + [2])]
    data = SimpleNamespace(records=RecordTable.from_records(records))
    assert small_object_share(data, teacher) == 0.5  # (0/9 + 1/1) / 2, where a box count says 1/10
