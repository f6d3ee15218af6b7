"""build_detector, the registry, every entry's forward/backward, the no-download guarantee, weights paths."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from detdistill.models import (build_detector, build_from_spec, checkpoint_payload, get_entry, list_models,
                               load_detector, resolve_weights, save_detector)
from detdistill.models.weights import WeightsError, check_and_load

ALL = [
    "cpu_base", "cpu_small", "cpu_tiny", "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
    "mobilenet_v2_050_fpn", "mobilenet_v2_050_fpn_s8", "mobilenet_v2_fpn", "mobilenet_v2_fpn_s8", "resnet18_fpn",
    "resnet34_fpn",
]
# Small enough that a ResNet-50 step takes a fraction of a second on one core.
TINY = dict(min_size=64, max_size=64, box_batch_size_per_image=16, rpn_batch_size_per_image=32,
            rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20, rpn_pre_nms_top_n_test=50,
            rpn_post_nms_top_n_test=20)
DISK_ROUND_TRIP = {"cpu_base", "cpu_small", "cpu_tiny", "mobilenet_v2_050_fpn"}
TARGET = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}


def test_list_models_is_the_zoo():
    assert list_models() == ALL
    assert list_models("cpu") == ["cpu_base", "cpu_small", "cpu_tiny"]


@pytest.fixture()
def no_network(tmp_path, monkeypatch):
    """Any socket connect, URL open or hub download fails the test; the hub cache must stay empty."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    yield
    torch.hub.set_dir(old_hub)
    assert not hub.exists() or list(hub.rglob("*")) == []


@pytest.mark.parametrize("name", ALL)
def test_entry_builds_offline_and_trains(name, tmp_path, no_network):
    torch.manual_seed(0)
    model = build_detector(name, 3, **TINY)
    assert type(model) is FasterRCNN
    assert model.detdistill_spec == {"name": name, "num_classes": 3, "kwargs": TINY, "lowrank": None,
                                     "pretrained": False}
    json.dumps(model.detdistill_spec)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    model.train()
    losses = model([torch.rand(3, 64, 64)], [TARGET])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    # From scratch every parameter trains (torchvision's resnet_fpn_backbone would freeze conv1/layer1).
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert all(p.requires_grad for p in model.parameters())
    assert frozen == [] or name.startswith("fasterrcnn")  # torchvision heads may skip unused branches



# GPU-scale round trips rebuild 16-43 M parameter models: marked slow (`-m "not slow"` skips them).
ROUND_TRIP = [n if n in DISK_ROUND_TRIP else pytest.param(n, marks=pytest.mark.slow) for n in ALL]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_entry_round_trips_through_a_checkpoint(name, tmp_path):
    torch.manual_seed(0)
    model = build_detector(name, 3, **TINY)
    if name in DISK_ROUND_TRIP:
        path = save_detector(tmp_path / "m.pt", model, ["a", "b"], category_ids=[5, 9], metadata={"run": "t"})
        loaded = load_detector(path)
    else:
        # Same code path as load_detector minus the disk: writing 170 MB files would dominate the suite.
        payload = checkpoint_payload(model, ["a", "b"])
        loaded = build_from_spec(payload["model_spec"])
        check_and_load(loaded, payload["state_dict"], "payload")
        loaded.eval()
    assert loaded.detdistill_spec == model.detdistill_spec and not loaded.training
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    model.eval()
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        a, b = model([image])[0], loaded([image])[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_scratch_resnet_uses_batchnorm_and_pretrained_freezes(tmp_path):
    scratch = build_detector("resnet18_fpn", 3)
    body = scratch.backbone.body
    assert any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert body.conv1.weight.requires_grad and body.layer1[0].conv1.weight.requires_grad

    state = torchvision.models.resnet18().state_dict()  # an "ImageNet" file with the classifier, as shipped
    torch.save(state, tmp_path / "r18.pt")
    pre = build_detector("resnet18_fpn", 3, backbone_weights=tmp_path / "r18.pt")
    pbody = pre.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in pbody.modules())
    assert torch.equal(pbody.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    assert torch.equal(pbody.bn1.running_var, state["bn1.running_var"])
    # torchvision's default for trained backbones: layer2-4 train, conv1/layer1 stay frozen.
    assert not pbody.conv1.weight.requires_grad and not pbody.layer1[0].conv1.weight.requires_grad
    assert pbody.layer2[0].conv1.weight.requires_grad
    assert pre.detdistill_spec["pretrained"] is True


def test_unknown_name_and_override_are_clear_errors():
    with pytest.raises(ValueError, match=r"'cpu_smal' is not registered; did you mean cpu_small"):
        build_detector("cpu_smal", 3)
    with pytest.raises(ValueError, match=r"does not take override\(s\) widht"):
        build_detector("cpu_small", 3, widht=[8])
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        build_detector("cpu_small", 1)
    with pytest.raises(ValueError, match="'anchor_sizes' has 2 levels but the backbone has 3"):
        build_detector("cpu_small", 3, anchor_sizes=[[16], [32]])


def test_overrides_reach_the_torchvision_parts():
    m = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 5, min_size=96, max_size=128,
                       box_detections_per_img=7, rpn_pre_nms_top_n_train=11, box_score_thresh=0.3,
                       anchor_sizes=[[16, 32]] * 3, aspect_ratios=[1.0])
    assert m.transform.min_size == (96,) and m.transform.max_size == 128
    assert m.roi_heads.detections_per_img == 7 and m.roi_heads.score_thresh == 0.3
    assert m.rpn._pre_nms_top_n["training"] == 11
    assert m.rpn.anchor_generator.sizes == ((16, 32),) * 3
    # 2 anchors per location instead of torchvision's 15: the RPN head is rebuilt to match.
    assert m.rpn.head.cls_logits.out_channels == 2
    cpu = build_detector("cpu_small", 3, widths=[8, 8, 8], fpn_channels=16, representation_size=32)
    assert cpu.backbone.out_channels == 16 and cpu.roi_heads.box_head.fc7.out_features == 32


def test_named_weights_resolve_without_download():
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, FasterRCNN_ResNet50_FPN_Weights

    assert resolve_weights("fasterrcnn_resnet50_fpn", "DEFAULT") is FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    assert resolve_weights("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1") \
        is FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    with pytest.raises(ValueError, match="weights 'COCO_V9' are not known .* DEFAULT, COCO_V1"):
        resolve_weights("fasterrcnn_resnet50_fpn", "COCO_V9")
    with pytest.raises(ValueError, match="'cpu_small' has no named weights"):
        build_detector("cpu_small", 3, weights="DEFAULT")


def test_local_91_class_weights_replace_only_the_predictor(tmp_path, caplog):
    torch.manual_seed(1)
    coco = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "coco.pth"
    torch.save(coco.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="detdistill.models"):
        m = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 4, weights=str(path))
    assert "replaced box predictor: 91 → 4 classes" in caplog.text
    assert m.roi_heads.box_predictor.cls_score.out_features == 4
    ref = coco.state_dict()
    for k, v in m.state_dict().items():
        if not k.startswith("roi_heads.box_predictor") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, ref[k]), k
    # Trained weights: BatchNorm is frozen as torchvision does for its pretrained detectors.
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.backbone.body.modules())
    assert m.detdistill_spec["num_classes"] == 4 and m.detdistill_spec["pretrained"]
    same = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 91, weights=path)
    assert torch.equal(same.roi_heads.box_predictor.cls_score.weight, ref["roi_heads.box_predictor.cls_score.weight"])


def test_local_weights_mismatch_lists_keys(tmp_path):
    state = build_detector("cpu_tiny", 3).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["rpn.head.conv.0.0.weight"]
    state["roi_heads.box_head.fc6.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as err:
        build_detector("cpu_tiny", 3, weights=tmp_path / "bad.pt")
    msg = str(err.value)
    assert str(tmp_path / "bad.pt") in msg
    assert "missing keys: rpn.head.conv.0.0.weight" in msg and "unexpected keys: extra.weight" in msg
    assert "roi_heads.box_head.fc6.weight: file (2, 2) vs" in msg
    with pytest.raises(FileNotFoundError, match="nope.pt: checkpoint file not found"):
        build_detector("cpu_tiny", 3, weights=tmp_path / "nope.pt")


def test_detdistill_checkpoint_works_as_weights(tmp_path):
    src = build_detector("cpu_tiny", 5)
    path = save_detector(tmp_path / "c.pt", src, list("abcd"))
    m = build_detector("cpu_tiny", 3, weights=path)
    assert torch.equal(m.backbone.fpn.layer_blocks[0][0].weight, src.backbone.fpn.layer_blocks[0][0].weight)
    assert m.roi_heads.box_predictor.cls_score.out_features == 3


def test_entry_metadata():
    assert get_entry("fasterrcnn_resnet50_fpn").torchvision_builder == "fasterrcnn_resnet50_fpn"
    assert get_entry("cpu_small").torchvision_builder is None
