"""Object-region imitation: the ground-truth-box mask at a level's stride and the fg/bg-normalised loss."""

import math

import pytest
import torch

from detdistill.distill.terms import FeaturePair, TermContext, get_term
from detdistill.distill.terms.hint_gt import HintGTConfig, hint_gt_loss
from detdistill.distill.terms.masks import box_cells, gt_box_mask, masked_imitation


def ref_mask(boxes, stride, h, w):
    """Cell (r, c) is in a box when the pixel square [c·s, (c+1)·s) × [r·s, (r+1)·s) overlaps it."""
    out = [[0.0] * w for _ in range(h)]
    for x1, y1, x2, y2 in boxes:
        for r in range(h):
            for c in range(w):
                if c * stride < x2 and (c + 1) * stride > x1 and r * stride < y2 and (r + 1) * stride > y1:
                    out[r][c] = 1.0
    return out


def ref_fg_bg(s, t, m, w_fg, w_bg):
    fg = bg = n_fg = n_bg = 0.0
    for n in range(len(s)):
        for h in range(len(s[n][0])):
            for w in range(len(s[n][0][0])):
                d = sum((s[n][c][h][w] - t[n][c][h][w]) ** 2 for c in range(len(s[n])))
                if m[n][h][w]:
                    fg, n_fg = fg + d, n_fg + 1
                else:
                    bg, n_bg = bg + d, n_bg + 1
    return w_fg * fg / (2 * max(n_fg, 1)) + w_bg * bg / (2 * max(n_bg, 1))


def test_box_mask_by_hand_and_against_the_overlap_loop():
    # Box x 4..12, y 4..20 at stride 8: columns 0-1 (pixels 0-16), rows 0-2 (pixels 0-24).
    assert box_cells(torch.tensor([4.0, 4.0, 12.0, 20.0]), 8, 4, 4) == (0, 3, 0, 2)
    mask = gt_box_mask([torch.tensor([[4.0, 4.0, 12.0, 20.0]])], 8, 4, 4)
    assert mask[0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    g = torch.Generator().manual_seed(0)
    for stride, size in ((8, 20), (16, 10), (32, 5)):
        xy = torch.rand(5, 2, generator=g) * 140
        wh = torch.rand(5, 2, generator=g) * 50 + 3
        boxes = torch.cat([xy, (xy + wh).clamp(max=160)], dim=1)
        got = gt_box_mask([boxes], stride, size, size)[0].tolist()
        assert got == ref_mask(boxes.tolist(), stride, size, size), stride


def test_fg_bg_loss_hand_value():
    # Locations: d = 1 (inside the box) and d = 4 (outside); fg = 1/2, bg = 4/2.
    s = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]], requires_grad=True)
    t = torch.zeros(1, 2, 1, 2)
    m = torch.tensor([[[1.0, 0.0]]])
    assert float(hint_gt_loss(s, t, m, 0.01, 0.1)) == pytest.approx(0.01 * 0.5 + 0.1 * 2.0)
    assert float(hint_gt_loss(s, t, m, 0.01, 0.0)) == pytest.approx(0.005)
    assert float(masked_imitation(s, t, torch.zeros(1, 1, 2))) == 0.0  # empty mask: zero, not NaN


def test_fg_bg_loss_against_the_loop_and_gradient_only_where_weighted():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    m = (torch.rand(2, 4, 5, generator=g) > 0.6).double()
    got = hint_gt_loss(s, t, m, 3.0, 12.0)
    assert float(got) == pytest.approx(ref_fg_bg(s.tolist(), t.tolist(), m.tolist(), 3.0, 12.0), rel=1e-12)
    hint_gt_loss(s, t, m, 1.0, 0.0).backward()
    outside = (m == 0)[:, None].expand_as(s)
    assert torch.all(s.grad[outside] == 0) and torch.any(s.grad[~outside] != 0)


def test_term_averages_the_levels_each_at_its_own_stride():
    g = torch.Generator().manual_seed(2)
    boxes = [torch.tensor([[10.0, 20.0, 60.0, 50.0]]), torch.tensor([[0.0, 0.0, 30.0, 30.0], [70.0, 60.0, 90.0, 80.0]])]
    pairs = []
    for stride, size in ((8, 12), (16, 6)):
        s, t = torch.randn(2, 4, size, size, generator=g), torch.randn(2, 4, size, size, generator=g)
        pairs.append(FeaturePair("t", "s", stride, s, t))
    cfg = HintGTConfig(weight=0.01, bg_weight=0.5)
    got = get_term("hint_gt").compute(TermContext(features=pairs, gt_boxes=boxes), cfg, None)
    want = []
    for p in pairs:
        size = p.adapted.shape[-1]
        m = [ref_mask(b.tolist(), p.stride, size, size) for b in boxes]
        want.append(ref_fg_bg(p.adapted.tolist(), p.teacher.tolist(), m, 0.01, 0.5))
    assert float(got) == pytest.approx(sum(want) / 2, rel=1e-5)
    assert math.isfinite(float(got))
