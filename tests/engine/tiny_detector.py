"""A tiny torchvision FasterRCNN for engine tests (seconds on CPU), independent of the model zoo."""

from __future__ import annotations

import time

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign


def tiny_detector(num_classes: int = 7, size: int = 64) -> FasterRCNN:
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 16
    return FasterRCNN(
        backbone, num_classes=num_classes, min_size=size, max_size=size,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 4, 2),
        box_head=None, representation_size=32,
        rpn_batch_size_per_image=32, box_batch_size_per_image=16,
        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
        rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
    )


class Slow(nn.Module):
    """Wraps a module and sleeps in every training forward (lets a test kill a run mid-way)."""

    def __init__(self, inner: nn.Module, seconds: float) -> None:
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        time.sleep(self.seconds)
        return self.inner(*args, **kwargs)
