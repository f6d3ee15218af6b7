"""Measured strides and the teacher/student pairing report."""

from __future__ import annotations

from detdistill.models import build_detector, describe_pairing, feature_strides
from detdistill.models.cpu_family import MOBILENET_V2_PAIRING


def test_strides_are_measured_not_read_from_keys():
    assert feature_strides(build_detector("cpu_small", 3)) == {"0": 8, "1": 16, "pool": 32}
    assert feature_strides(build_detector("mobilenet_v2_fpn", 3)) == {"0": 16, "1": 32, "pool": 64}
    # Key '0' is stride 32 in torchvision's MobileNetV3-FPN (both returned blocks are stride 32).
    assert feature_strides(build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3)) == \
        {"0": 32, "1": 32, "pool": 64}
    assert feature_strides(build_detector("cpu_tiny", 3, strides=[4, 16]), (96, 128)) == \
        {"0": 4, "1": 16, "pool": 32}
    # Sizes that no stride divides: 800 px gives a 13-pixel pool map (800 / 13 = 61.5), still stride 64.
    assert feature_strides(build_detector("mobilenet_v2_fpn", 3), (800, 800)) == {"0": 16, "1": 32, "pool": 64}
    assert feature_strides(build_detector("cpu_small", 3), (100, 75)) == {"0": 8, "1": 16, "pool": 32}


def test_cpu_members_pair_by_default():
    report = describe_pairing(build_detector("cpu_base", 7), build_detector("cpu_tiny", 7))
    assert report.pairs
    assert report.level_pairs == {"0": "0", "1": "1", "pool": "pool"}
    assert [(lv.stride, lv.channels) for lv in report.teacher_levels] == [(8, 128), (16, 128), (32, 128)]
    assert [(lv.stride, lv.channels) for lv in report.student_levels] == [(8, 32), (16, 32), (32, 32)]
    assert report.anchor_sizes.teacher == {8: (16, 24), 16: (32, 48), 32: (64, 96)}
    assert "PAIR anchor by anchor" in str(report)


def test_cpu_student_pairs_with_mobilenet_v2_teacher_given_overrides():
    teacher = build_detector("mobilenet_v2_fpn", 4)
    assert not describe_pairing(teacher, build_detector("cpu_small", 4)).pairs
    report = describe_pairing(teacher, build_detector("cpu_small", 4, **MOBILENET_V2_PAIRING))
    assert report.pairs, str(report)
    assert report.strides.teacher == [16, 32, 64] == report.strides.student
    assert describe_pairing(teacher, build_detector("mobilenet_v2_050_fpn", 4)).pairs


def test_report_names_what_does_not_pair():
    report = describe_pairing(build_detector("cpu_base", 3), build_detector("cpu_tiny", 3, min_size=128,
                                                                            max_size=128, aspect_ratios=[1.0],
                                                                            strides=[8, 32]))
    failed = {c.name for c in report.checks() if not c.ok}
    assert failed == {"strides", "anchor sizes", "aspect ratios", "min_size", "max_size"}
    assert report.level_pairs == {"0": "0", "pool": "1"}  # the stride-32 levels pair by stride
    text = str(report)
    assert "min_size        (160)" in text and "NO" in text and "do NOT pair" in text


def test_stride8_student_pairs_its_shared_strides_with_the_stride16_teacher():
    import pytest

    from detdistill.distill.config import DistillConfig
    from detdistill.distill.distiller import Distiller
    from detdistill.errors import ModelError

    student = build_detector("mobilenet_v2_050_fpn_s8", 4)
    assert feature_strides(student) == {"0": 8, "1": 16, "2": 32, "pool": 64}
    assert [tuple(s) for s in student.rpn.anchor_generator.sizes] == [(16, 32), (32, 64), (64, 128), (192, 320)]
    teacher = build_detector("mobilenet_v2_fpn", 4)
    report = describe_pairing(teacher, student)
    assert not report.strides.ok  # the RPN terms need one anchor per anchor; the feature terms do not
    assert report.level_pairs == {"0": "1", "1": "2", "pool": "pool"}
    assert describe_pairing(build_detector("mobilenet_v2_fpn_s8", 4), student).pairs
    distiller = Distiller(teacher, student, DistillConfig(recipe="pkd"))
    assert [(p.teacher_level, p.student_level, p.stride) for p in distiller.plan.hint_pairs] == \
        [("0", "1", 16), ("1", "2", 32), ("pool", "pool", 64)]
    with pytest.raises(ModelError, match="'returned_layers' \\[2, 3, 4\\] gives 4 feature maps.*anchor_sizes"):
        build_detector("mobilenet_v2_050_fpn", 4, returned_layers=[2, 3, 4])
