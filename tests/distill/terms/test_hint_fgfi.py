"""FGFI's anchor mask (IoU > ψ × each box's best anchor IoU) and its imitation term."""

import pytest
import torch

from detdistill.distill.terms import FeaturePair, TermContext, get_term
from detdistill.distill.terms.hint_fgfi import HintFGFIConfig
from detdistill.distill.terms.masks import fgfi_mask


def ref_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def ref_fgfi(anchors, boxes, psi):
    """anchors: H×W×A lists of boxes; plain loops."""
    h, w, a = len(anchors), len(anchors[0]), len(anchors[0][0])
    out = [[0.0] * w for _ in range(h)]
    for box in boxes:
        best = max(ref_iou(box, anchors[r][c][k]) for r in range(h) for c in range(w) for k in range(a))
        for r in range(h):
            for c in range(w):
                if any(ref_iou(box, anchors[r][c][k]) > psi * best for k in range(a)):
                    out[r][c] = 1.0
    return out


def grid_anchors(h, w, stride, sizes):
    rows = []
    for r in range(h):
        row = []
        for c in range(w):
            cx, cy = stride * c + stride / 2, stride * r + stride / 2
            row.append([[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2] for s in sizes])
        rows.append(row)
    return torch.tensor(rows)


def test_fgfi_mask_by_hand():
    # 16-px anchors on a 2x2 grid at stride 8; the box is the top-left anchor (best IoU 1). Its neighbours
    # overlap it by 1/3, the diagonal one by 1/7: ψ = 0.5 keeps only the box's own location, ψ = 0.3 three.
    anchors = grid_anchors(2, 2, 8, [16])
    box = [anchors[0, 0, 0].tolist()]
    assert fgfi_mask([anchors], [torch.tensor(box)], 0.5)[0].tolist() == [[1, 0], [0, 0]]
    assert fgfi_mask([anchors], [torch.tensor(box)], 0.3)[0].tolist() == [[1, 1], [1, 0]]
    assert fgfi_mask([anchors], [torch.zeros(0, 4)], 0.5).sum() == 0  # no boxes: nothing imitated


def test_fgfi_mask_against_the_loop_with_several_anchors_and_boxes():
    g = torch.Generator().manual_seed(0)
    anchors = grid_anchors(6, 7, 16, [16, 32, 64])
    for _ in range(3):
        xy = torch.rand(4, 2, generator=g) * 80
        boxes = torch.cat([xy, xy + torch.rand(4, 2, generator=g) * 40 + 4], dim=1)
        got = fgfi_mask([anchors], [boxes], 0.5)[0].tolist()
        assert got == ref_fgfi(anchors.tolist(), boxes.tolist(), 0.5)


def test_term_imitates_only_the_masked_locations_with_fgfi_normalisation():
    anchors = grid_anchors(2, 2, 8, [16])
    box = torch.tensor([anchors[0, 0, 0].tolist()])
    s = torch.zeros(1, 2, 2, 2, requires_grad=True)
    t = torch.ones(1, 2, 2, 2)
    ctx = TermContext(features=[FeaturePair("t", "s", 8, s, t, anchors=[anchors])], gt_boxes=[box])
    loss = get_term("hint_fgfi").compute(ctx, HintFGFIConfig(weight=0.01, psi=0.5), None)
    # One imitated location, channel-summed distance 2: 0.01 · 2 / (2 · 1).
    assert float(loss) == pytest.approx(0.01)
    loss.backward()
    assert s.grad[0, :, 0, 0].abs().sum() > 0 and s.grad[0, :, 1:, :].abs().sum() == 0
