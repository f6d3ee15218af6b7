"""The Distiller on batches with unlabelled images: supervised losses and needs_labels terms on the labelled
images only (equal to a batch of those images alone), teacher-driven terms on all, pseudo-labels."""

import copy

import pytest
import torch

from detdistill.distill.config import DistillConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.distill.distiller import TEACHER_BOX_SCORE, Distiller
from detdistill.distill.terms import list_terms
from detdistill.models import build_detector

SIZE = 96
ALL_OFF = DistillConfig(recipe="chen2017", rpn_soft=False, rcn_soft=False, rpn_bounded=False, rcn_bounded=False,
                        hint=False)
HARD = ("rpn_hard_cls", "rpn_smooth_l1", "rcn_hard_cls", "rcn_smooth_l1")


def _models():
    torch.manual_seed(0)
    kw = {"min_size": SIZE, "max_size": SIZE}
    return build_detector("cpu_base", 7, **kw), build_detector("cpu_tiny", 7, **kw)


def _frozen_norm(module):
    """Batch-norm layers on their running statistics: in training mode they normalise with the whole batch's
    (unlabelled images included, as in any mixed batch), which would hide what the mask does."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return module


def _seed_as_if(images: int, seed: int) -> None:
    """Seed, then make the RNG draws the transform would make for ``images`` more images: in training mode
    it draws a size per image (one size configured, so the value is unused), before any sampling."""
    torch.manual_seed(seed)
    for _ in range(images):
        torch.empty(1).uniform_(0.0, 1.0)


def _batch(n=3):
    ds = SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=40))
    images, targets = zip(*[ds[i] for i in range(n)])
    return list(images), [dict(t) for t in targets]


def _unlabel(target):
    return {**target, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "labelled": torch.tensor(False)}


def test_needs_labels_marks_exactly_the_terms_that_compare_to_ground_truth():
    assert {s.name for s in list_terms() if s.needs_labels} == {"rpn_bounded", "rcn_bounded", "hint_gt"}


def test_supervised_losses_of_a_mixed_batch_are_those_of_its_labelled_images_alone():
    teacher, student = _models()
    twin = _frozen_norm(copy.deepcopy(student).train())
    distiller = _frozen_norm(Distiller(teacher, student, ALL_OFF).train())
    images, targets = _batch()
    mixed = [targets[0], _unlabel(targets[1]), targets[2]]
    torch.manual_seed(7)
    got = distiller(images, mixed)
    _seed_as_if(1, 7)
    want = twin([images[0], images[2]], [targets[0], targets[2]])  # the hand-built expectation
    assert set(got) == set(want)
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, rtol=1e-4), (key, got[key], want[key])
    # ... and they are not those of the whole batch (the unlabelled image would add background samples).
    torch.manual_seed(7)
    whole = copy.deepcopy(twin)(images, [targets[0], _unlabel(targets[1]) | {"labelled": torch.tensor(True)},
                                         targets[2]])
    assert not torch.allclose(whole["loss_rpn_box_reg"], want["loss_rpn_box_reg"], rtol=1e-3)
    assert not torch.allclose(whole["loss_box_reg"], want["loss_box_reg"], rtol=1e-3)
    # The gradient reaches the student only through the labelled images: equal steps.
    for module, losses in ((student, got), (twin, want)):
        module.zero_grad()
        sum(losses.values()).backward()
    for (name, a), b in zip(student.named_parameters(), twin.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4), name


def test_with_every_teacher_term_on_the_hard_parts_and_bounded_terms_still_see_only_labelled_images():
    cfg = DistillConfig(recipe="chen2017")
    teacher, student = _models()
    images, targets = _batch()
    d_mixed = _frozen_norm(Distiller(teacher, copy.deepcopy(student), cfg).train())
    d_alone = _frozen_norm(Distiller(teacher, copy.deepcopy(student), cfg).train())
    d_alone.adapters.load_state_dict(d_mixed.adapters.state_dict())
    pooled = {}
    hook = teacher.roi_heads.box_roi_pool.register_forward_hook(lambda m, a, o: pooled.update(rois=a[1]))
    torch.manual_seed(3)
    d_mixed(images, [targets[0], _unlabel(targets[1]), targets[2]])
    hook.remove()
    _seed_as_if(1, 3)
    d_alone([images[0], images[2]], [targets[0], targets[2]])
    for key in HARD + ("rpn_bounded", "rcn_bounded"):
        assert d_mixed.stats[key] == pytest.approx(d_alone.stats[key], rel=1e-5, abs=1e-7), key
    # The RCN soft term also sees the unlabelled image: both heads classify its student's top proposals.
    top = student.roi_heads.fg_bg_sampler.batch_size_per_image
    assert len(pooled["rois"]) == 3 and len(pooled["rois"][1]) == top
    assert d_mixed.stats["unlabelled_images"] == 1.0


def test_unlabelled_anchors_are_sampled_with_the_teacher_as_the_oracle():
    from detdistill.distill.terms import RPNSamples, TermContext

    teacher, student = _models()
    distiller = Distiller(teacher, student, DistillConfig(recipe="chen2017"))
    sampler = student.rpn.fg_bg_sampler
    per_image = 2000
    t_obj = torch.full((2 * per_image,), -3.0)
    t_obj[per_image + 10:per_image + 20] = torch.linspace(2.5, 5.0, 10)  # 10 confident anchors on image 1
    t_obj[per_image + 1000:per_image + 1000 + sampler.batch_size_per_image] = 2.0  # more positives than allowed
    ctx = TermContext(rpn=RPNSamples(torch.zeros(2 * per_image), torch.zeros(2 * per_image, 4), t_obj,
                                     torch.zeros(2 * per_image, 4), torch.tensor([0, 1, 2]), torch.tensor([0]),
                                     torch.zeros(2 * per_image, 4), 3))
    ctx.rpn = distiller.unlabelled.sample_anchors(ctx.rpn, [True, False], per_image, sampler)
    extra = ctx.rpn.sampled[3:]
    num_pos = int(sampler.batch_size_per_image * sampler.positive_fraction)
    assert ctx.rpn.num_sampled == 3 + sampler.batch_size_per_image == 3 + len(extra)
    assert bool((extra >= per_image).all()) and len(set(extra.tolist())) == len(extra)
    positives = extra[t_obj[extra] > 0]
    assert len(positives) == num_pos and set(range(per_image + 10, per_image + 20)) <= set(positives.tolist())
    assert torch.equal(ctx.rpn.positive, torch.tensor([0]))  # the bounded terms' positives stay labelled


def test_feature_terms_see_an_unlabelled_image_exactly_as_a_labelled_one():
    cfg = DistillConfig(recipe="pkd")
    teacher, student = _models()
    images, targets = _batch()
    distiller = Distiller(teacher, student, cfg).train()
    distiller(images, [targets[0], _unlabel(targets[1]), targets[2]])
    with_unlabelled = distiller.stats["pkd"]
    distiller(images, targets)
    assert distiller.stats["pkd"] == pytest.approx(with_unlabelled, rel=1e-6)
    distiller([images[0], images[2]], [targets[0], targets[2]])
    assert distiller.stats["pkd"] != pytest.approx(with_unlabelled, rel=1e-3)


def _fake_detections(box):
    def detect(image_list, t_feats, idx):  # noqa: ARG001
        return [{"boxes": torch.tensor([box, [0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([3, 1]),
                 "scores": torch.tensor([0.9, 0.01])} for _ in idx]
    return detect


def test_pseudo_labels_become_the_hard_targets_of_unlabelled_images():
    cfg = copy.deepcopy(ALL_OFF)
    cfg.pseudo_label_score = 0.5
    teacher, student = _models()
    twin = copy.deepcopy(student).train()
    distiller = Distiller(teacher, student, cfg).train()
    box = [10.0, 12.0, 50.0, 60.0]
    distiller.unlabelled.teacher_detections = _fake_detections(box)
    images, targets = _batch()
    torch.manual_seed(5)
    got = distiller(images, [targets[0], _unlabel(targets[1]), targets[2]])
    # Expected: the plain student with the teacher's confident box (class 3) as image 1's ground truth.
    pseudo = {**targets[1], "boxes": torch.tensor([box]), "labels": torch.tensor([3])}
    torch.manual_seed(5)
    want = twin(images, [targets[0], pseudo, targets[2]])
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, rtol=1e-4), (key, got[key], want[key])


def test_object_masks_come_from_the_teachers_boxes_on_unlabelled_images():
    cfg = DistillConfig(recipe="none")
    cfg.terms.fgd.enabled = True
    teacher, student = _models()
    distiller = Distiller(teacher, student, cfg).train()
    box = [8.0, 8.0, 40.0, 40.0]
    distiller.unlabelled.teacher_detections = _fake_detections(box)
    images, targets = _batch()
    distiller(images, [targets[0], _unlabel(targets[1]), targets[2]])
    got = distiller.stats["fgd"]
    assert distiller.stats["teacher_boxes_per_unlabelled"] == 1.0  # 0.9 >= TEACHER_BOX_SCORE > 0.01
    assert 0.01 < TEACHER_BOX_SCORE <= 0.9
    as_if_labelled = {**targets[1], "boxes": torch.tensor([box]), "labels": torch.tensor([3])}
    distiller(images, [targets[0], as_if_labelled, targets[2]])
    assert distiller.stats["fgd"] == pytest.approx(got, rel=1e-6)
    distiller(images, targets)
    assert distiller.stats["fgd"] != pytest.approx(got, rel=1e-4)


def test_plan_says_which_terms_see_the_unlabelled_images():
    teacher, student = _models()
    plan = Distiller(teacher, student, DistillConfig(recipe="chen2017")).plan
    lines = "\n".join(plan.unlabelled_lines(42))
    assert "unlabelled images: 42" in lines
    assert "terms on unlabelled images: rpn_soft, rcn_soft, hint" in lines
    assert "labelled images only: the student's supervised losses, rpn_bounded, rcn_bounded" in lines
    assert "pseudo-labels: off" in lines


def test_teacher_detections_on_an_unlabelled_image_are_the_teachers_own():
    teacher, student = _models()
    distiller = Distiller(teacher, student, DistillConfig(recipe="pkd")).train()
    images, targets = _batch()
    image_list, _ = student.transform(images, targets)
    features = distiller.teacher_source.teacher_outputs(image_list, targets, need_rpn=False).features
    got = distiller.unlabelled.teacher_detections(image_list, features, [1])[0]
    want = teacher([images[1]])[0]  # eval mode; the image is already at the model's size (scale 1)
    assert len(want["boxes"]) > 0
    for key in ("boxes", "labels", "scores"):
        assert torch.allclose(got[key].float(), want[key].float(), atol=1e-4), key
