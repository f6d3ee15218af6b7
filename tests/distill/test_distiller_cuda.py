"""The Distiller on a CUDA device: exactness with every term off, AMP, channels_last, cross-architecture pairs.

CI has no GPU, so these skip there; run them on a GPU machine with ``pytest -m cuda``.
"""

import copy

import pytest
import torch

from detdistill.config import DistillConfig
from detdistill.data import SyntheticConfig, SyntheticShapes
from detdistill.distill.distiller import Distiller
from detdistill.models import build_detector

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]

ALL_OFF = DistillConfig(rpn_soft=False, rcn_soft=False, rpn_bounded=False, rcn_bounded=False, hint=False)
SIZE = 128


def _batch(n=2, device="cuda", size=SIZE):
    ds = SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=size, min_size=size // 8,
                                                                        max_size=size // 3))
    images, targets = zip(*[ds[i] for i in range(n)])
    images = [img.to(device) for img in images]
    return images, [{k: v.to(device) for k, v in t.items()} for t in targets]


def _pair(teacher="cpu_base", student="cpu_tiny", size=SIZE):
    torch.manual_seed(0)
    kw = {"min_size": size, "max_size": size}
    return build_detector(teacher, 7, **kw), build_detector(student, 7, **kw)


def test_all_terms_off_equals_plain_student_on_cuda():
    teacher, student = _pair()
    twin = copy.deepcopy(student).cuda().train()
    distiller = Distiller(teacher, student, ALL_OFF).cuda().train()
    images, targets = _batch()
    torch.manual_seed(5)
    got = distiller(images, targets)
    torch.manual_seed(5)
    want = twin(images, targets)
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, rtol=0), (key, got[key], want[key])


def test_amp_step_keeps_soft_losses_fp32_and_the_teacher_frozen():
    teacher, student = _pair()
    distiller = Distiller(teacher, student, DistillConfig()).cuda().train()
    distiller.to(memory_format=torch.channels_last)
    assert next(distiller.teacher.parameters()).is_cuda  # the unregistered teacher moves with .cuda()
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    params = [p for p in distiller.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    images, targets = _batch()
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            losses = distiller(images, targets)
        assert set(losses) >= {"loss_objectness", "loss_classifier", "loss_hint"}
        for key, value in losses.items():
            assert value.dtype == torch.float32 and torch.isfinite(value), (key, value)
        opt.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(opt)
        scaler.update()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.adapters.parameters())
    assert all(p.grad is None for p in distiller.teacher.parameters())
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not distiller.teacher.training


def test_r50_fpn_teaches_mobilenet_v3_fpn_with_rcn_and_hint_terms_under_amp():
    torch.manual_seed(0)
    kw = {"min_size": 256, "max_size": 256}
    teacher = build_detector("fasterrcnn_resnet50_fpn", 7, **kw)
    student = build_detector("fasterrcnn_mobilenet_v3_large_fpn", 7, **kw)
    cfg = DistillConfig(rpn_soft=False, rpn_bounded=False)
    distiller = Distiller(teacher, student, cfg).cuda().train()
    strides = sorted(p.stride for p in distiller.plan.hint_pairs)
    assert strides and all(s in (4, 8, 16, 32, 64) for s in strides)
    images, targets = _batch(size=256)
    with torch.autocast("cuda", dtype=torch.float16):
        losses = distiller(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert distiller.stats, "per-term diagnostics are logged"
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in distiller.adapters.parameters())
