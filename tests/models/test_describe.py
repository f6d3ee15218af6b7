"""describe(): parameter and FLOP counts checked against hand computation; latency fields sane."""

from __future__ import annotations

import torch
from torch import nn

from detdistill.models import build_detector
from detdistill.models.describe import count_flops, describe, describe_zoo, format_table


class _OneConv(nn.Module):
    """Takes a list of images like a detector; one 3x3 conv 3→8, stride 1, padding 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)

    def forward(self, images):
        return self.conv(images[0][None])


def test_flops_match_hand_count():
    # 2 FLOPs per multiply-add: 2 * Cout * H * W * Cin * k * k
    assert count_flops(_OneConv(), torch.rand(3, 10, 12)) == 2 * 8 * 10 * 12 * 3 * 3 * 3


def test_describe_counts_params_and_uses_model_input():
    model = build_detector("cpu_tiny", 7, min_size=128, max_size=128)
    d = describe(model, (100, 80), threads=1, runs=2, warmup=0)
    assert d.params == sum(p.numel() for p in model.parameters()) == d.trainable_params
    # scale = min(128/80, 128/100) = 1.28 -> 128x102, padded to multiples of 32
    assert d.model_input == (128, 128)
    assert d.gflops > 0 and 0 < d.latency_ms_median <= d.latency_ms_p90
    assert model.training  # restored


def test_wider_cpu_member_costs_more_and_table_lists_all():
    rows = describe_zoo(["cpu_tiny", "cpu_base"], image_size=(64, 64), runs=1, warmup=0, min_size=64, max_size=64)
    tiny, base = rows
    assert base.params > 4 * tiny.params and base.gflops > 4 * tiny.gflops
    table = format_table(rows)
    assert table.splitlines()[2].startswith(f"| cpu_tiny | {tiny.params / 1e6:.2f} M |")
    assert "cpu_base" in table
