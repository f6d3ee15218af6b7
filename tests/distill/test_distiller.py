import copy

import pytest
import torch

from detdistill.config import DistillConfig
from detdistill.errors import DetDistillError
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.distill.distiller import Distiller, PairingError
from detdistill.models import build_detector

ALL_OFF = DistillConfig(recipe="chen2017", rpn_soft=False, rcn_soft=False, rpn_bounded=False, rcn_bounded=False,
                        hint=False)
SIZE = 96


def _models(teacher="cpu_base", student="cpu_tiny", **student_overrides):
    torch.manual_seed(0)
    kw = {"min_size": SIZE, "max_size": SIZE}
    t = build_detector(teacher, 7, **kw)
    s = build_detector(student, 7, **{**kw, **student_overrides})
    return t, s


def _batch(n=2):
    ds = SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=40))
    images, targets = zip(*[ds[i] for i in range(n)])
    return list(images), list(targets)


def test_all_terms_off_equals_plain_student_training_loss_and_step():
    teacher, student = _models()
    twin = copy.deepcopy(student)
    distiller = Distiller(teacher, student, ALL_OFF).train()
    twin.train()
    images, targets = _batch()
    torch.manual_seed(123)
    got = distiller(images, targets)
    torch.manual_seed(123)
    want = twin(images, targets)
    assert set(got) == set(want)
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-6, rtol=0), key
    for module, losses in ((student, got), (twin, want)):
        opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    for (name, a), b in zip(student.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name


def test_teacher_pools_exactly_the_students_sampled_rois():
    teacher, student = _models()
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017")).train()
    seen = {}
    h1 = teacher.roi_heads.box_roi_pool.register_forward_hook(lambda m, a, o: seen.__setitem__("t", a[1]))
    h2 = student.roi_heads.box_roi_pool.register_forward_hook(lambda m, a, o: seen.__setitem__("s", a[1]))
    images, targets = _batch()
    distiller(images, targets)
    h1.remove(), h2.remove()
    assert len(seen["t"]) == len(seen["s"]) == 2
    for t_boxes, s_boxes in zip(seen["t"], seen["s"]):
        assert torch.equal(t_boxes, s_boxes)
    # torchvision adds the ground-truth boxes to the sampled proposals; they are among the pooled RoIs.
    gt = distiller.student.transform(images, targets)[1][0]["boxes"]
    assert all((seen["s"][0] == box).all(dim=1).any() for box in gt)


def test_combined_losses_follow_the_paper_weights():
    cfg = DistillConfig(recipe="chen2017", mu=0.3, nu=0.7, gamma=0.25, lambda_reg=2.0)
    teacher, student = _models()
    distiller = Distiller(teacher, student, cfg).train()
    losses = {k: v.item() for k, v in distiller(*_batch()).items()}
    st = distiller.stats
    assert (losses["loss_objectness"]) == pytest.approx(0.3 * st["rpn_hard_cls"] + 0.7 * st["rpn_soft"], rel=1e-5)
    assert (losses["loss_classifier"]) == pytest.approx(0.3 * st["rcn_hard_cls"] + 0.7 * st["rcn_soft"], rel=1e-5)
    assert (losses["loss_box_reg"]) == pytest.approx(2.0 * (st["rcn_smooth_l1"] + 0.7 * st["rcn_bounded"]),
                                                          rel=1e-5)
    assert (losses["loss_rpn_box_reg"]) == pytest.approx(
        2.0 * (st["rpn_smooth_l1"] + 0.7 * st["rpn_bounded"]), rel=1e-5)
    assert (losses["loss_hint"]) == pytest.approx(0.25 * st["hint"], rel=1e-5)
    assert 0.0 <= st["rcn_bound_active"] <= 1.0 and 0.0 <= st["rpn_bound_active"] <= 1.0


def test_teacher_is_frozen_unsaved_and_stays_in_eval_mode():
    teacher, student = _models()
    before = copy.deepcopy(teacher.state_dict())
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017"))
    distiller.train()
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert student.training
    losses = distiller(*_batch())
    sum(losses.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert any(p.grad is not None for p in distiller.adapters.parameters())
    # Neither the teacher's weights nor its BatchNorm statistics moved; none of them is saved or optimised.
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(k.startswith(("student.", "adapters.")) for k in distiller.state_dict())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in distiller.parameters()}


def test_eval_mode_returns_the_students_detections():
    teacher, student = _models()
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017")).eval()
    images, _ = _batch(1)
    with torch.no_grad():
        out = distiller(images)
        ref = student.eval()(images)
    assert torch.equal(out[0]["boxes"], ref[0]["boxes"])


def test_rpn_terms_refused_when_anchors_differ_and_accepted_when_off():
    teacher, _ = _models()
    student = build_detector("cpu_tiny", 7, min_size=SIZE, max_size=SIZE,
                             anchor_sizes=((20,), (40,), (80,)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    with pytest.raises(PairingError, match=r"anchor sizes.*distill\.terms\.rpn_soft\.enabled=false distill\.terms\.rpn_bounded\.enabled=false"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017"))
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017", rpn_soft=False, rpn_bounded=False)).train()
    losses = distiller(*_batch())
    assert set(losses) == set(Distiller.LOSS_KEYS)


def test_checks_before_step_one_name_the_problem():
    teacher, _ = _models()
    other_classes = build_detector("cpu_tiny", 4, min_size=SIZE, max_size=SIZE)
    with pytest.raises(PairingError, match="teacher scores 7 classes and the student 4"):
        Distiller(teacher, other_classes, DistillConfig(recipe="chen2017"))
    other_size = build_detector("cpu_tiny", 7, min_size=128, max_size=128)
    with pytest.raises(PairingError, match="min_size"):
        Distiller(teacher, other_size, DistillConfig(recipe="chen2017"))
    _, student = _models()
    with pytest.raises(PairingError, match="hint level '0' .*stride 8.* guided level '1' .*stride 16"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017", hint_levels=["0"], guided_levels=["1"]))
    with pytest.raises(PairingError, match="teacher has no level 'p9'"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017", hint_levels=["p9"], guided_levels=["0"]))
    # An unknown level is named even when the lists' lengths differ as well.
    with pytest.raises(PairingError, match="distill.hint_levels: teacher has no level 'p9'"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017", hint_levels=["p9"]))
    with pytest.raises(PairingError, match="distill.adaptation"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017", adaptation=False))


def test_hint_pairs_levels_by_measured_stride_and_sizes_adapters():
    teacher, student = _models()
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017"))
    pairs = {(p.teacher_level, p.student_level, p.stride) for p in distiller.plan.hint_pairs}
    assert pairs == {("0", "0", 8), ("1", "1", 16), ("pool", "pool", 32)}
    for p in distiller.plan.hint_pairs:
        conv = distiller.adapters[p.student_level]
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (p.student_channels, p.teacher_channels, (1, 1))
        assert p.adapter_params == p.student_channels * p.teacher_channels + p.teacher_channels
    assert "stride 8" in str(distiller.plan) and "anchor check: on" in str(distiller.plan)


def test_levels_sharing_a_stride_pair_once_with_the_deepest_and_say_so():
    # torchvision's MobileNetV3-FPN returns two stride-32 levels ('0', '1'); one adapter, one pair per stride.
    teacher, _ = _models()
    student = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 7, min_size=SIZE, max_size=SIZE)
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017", rpn_soft=False, rpn_bounded=False))
    assert [(p.teacher_level, p.student_level, p.stride) for p in distiller.plan.hint_pairs] == [("pool", "1", 32)]
    assert list(distiller.adapters) == ["1"]
    assert any("student levels ['0'] share a stride" in note for note in distiller.plan.notes)


def _hint_grads(adapter_init):
    teacher, student = _models()
    cfg = DistillConfig(recipe="chen2017", rpn_soft=False, rcn_soft=False, rpn_bounded=False, rcn_bounded=False, hint=True,
                        adapter_init=adapter_init)
    distiller = Distiller(teacher, student, cfg).train()
    images, targets = _batch()
    distiller(images, targets)["loss_hint"].backward()
    fpn_grad = sum(float(p.grad.abs().sum()) for p in student.backbone.fpn.parameters() if p.grad is not None)
    adapter_grad = sum(float(p.grad.abs().sum()) for p in distiller.adapters.parameters())
    return distiller, fpn_grad, adapter_grad


def test_zero_initialised_adapter_learns_before_it_guides_the_student():
    distiller, fpn_grad, adapter_grad = _hint_grads("zero")
    assert all(float(p.detach().abs().sum()) == 0.0 for p in distiller.adapters.parameters())
    # d/dV ||A V - Z||^2 = 2 A^T (A V - Z) vanishes at A = 0; d/dA = 2 (A V - Z) V^T does not.
    assert fpn_grad == 0.0 and adapter_grad > 0.0
    _, fpn_grad_random, _ = _hint_grads("kaiming")
    assert fpn_grad_random > 0.0


def test_unknown_adapter_init_is_refused_by_name():
    teacher, student = _models()
    # A choice outside the declared Literal is a config error (typed_config.check_ranges), named by key.
    with pytest.raises(DetDistillError, match="'distill.adapter_init': unknown value 'xavier'"):
        Distiller(teacher, student, DistillConfig(recipe="chen2017", adapter_init="xavier"))


def _losses(cfg):
    teacher, student = _models()
    torch.manual_seed(1)
    return Distiller(teacher, student, cfg).train()(*_batch())


def test_lambda_reg_scales_a_box_loss_only_where_its_bounded_term_joins_it():
    plain, scaled = _losses(DistillConfig(recipe="none")), _losses(DistillConfig(recipe="none", lambda_reg=3.0))
    assert {k: v.item() for k, v in plain.items()} == pytest.approx({k: v.item() for k, v in scaled.items()})
    on = DistillConfig(recipe="none", rcn_bounded=True)
    joined, joined_scaled = _losses(on), _losses(DistillConfig(recipe="none", rcn_bounded=True, lambda_reg=3.0))
    assert joined_scaled["loss_box_reg"].item() == pytest.approx(3.0 * joined["loss_box_reg"].item(), rel=1e-5)
    assert joined_scaled["loss_rpn_box_reg"].item() == pytest.approx(joined["loss_rpn_box_reg"].item(), rel=1e-6)


def test_a_soft_terms_weight_is_its_share_of_the_classification_loss():
    hard = _losses(DistillConfig(recipe="none"))["loss_classifier"].item()
    half = _losses(DistillConfig(recipe="none", rcn_soft=True))["loss_classifier"].item()  # w = 0.5
    cfg = DistillConfig(recipe="none", rcn_soft=True)
    cfg.terms.rcn_soft.weight = 0.8
    weighted = _losses(cfg)["loss_classifier"].item()
    soft = 2 * half - hard  # 0.5 hard + 0.5 soft = half
    assert weighted == pytest.approx(0.2 * hard + 0.8 * soft, rel=1e-4)
