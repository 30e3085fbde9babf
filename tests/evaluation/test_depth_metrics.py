"""Depth metrics: LSQ alignment against numpy, the MiDaS aligned depth with its cap, δ>1.25, AbsRel, WHDR.

The hand example used below: pred disparity [[1, 0], [0, -1]], gt depth [[1, 2], [4, 0]], mask
[[1, 1], [1, 0]]. On the mask gt disparity is (1, 0.5, 0.25) and pred (1, 0, 0): mean pred 1/3, mean
gt 7/12, cov = 15/36, var = 24/36, so scale = 5/8 and shift = 7/12 - 5/24 = 3/8. Aligned disparity:
[[1, 3/8], [3/8, -1/4]].
- depth_cap 0: clamp at 1 / max gt depth = 1/4, depth [[1, 8/3], [8/3, 4]]; on the mask the ratios
  are 1, 4/3, 3/2: δ>1.25 = 2/3 = 66.67 %, AbsRel = (0 + 1/3 + 1/3) / 3 = 2/9.
- depth_cap 2: clamp at 1/2, depth [[1, 2], [2, 2]]; ratios 1, 1, 2: δ = 33.33 %, AbsRel = 0.5 / 3 = 1/6.
"""

import math

import numpy as np
import pytest
import torch

from recon_trainer.evaluation.depth_metrics import (
    abs_rel,
    align_scale_shift,
    aligned_depth_from_disparity,
    aligned_depth_from_gt_disparity,
    delta_bad_percent,
    whdr_percent,
)

PRED = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
GT_DEPTH = torch.tensor([[1.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
MASK = torch.tensor([[True, True], [True, False]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_align_scale_shift_equals_numpy_lstsq(seed):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.rand(3, 5, 7, generator=generator)
    target = 3 * pred - 1 + 0.3 * torch.randn(3, 5, 7, generator=generator)
    mask = torch.rand(3, 5, 7, generator=generator) > 0.4
    scale, shift = align_scale_shift(pred, target, mask)
    assert scale.shape == shift.shape == (3,) and scale.dtype == torch.float32
    for n in range(3):
        p, t = pred[n][mask[n]].double().numpy(), target[n][mask[n]].double().numpy()
        expected, *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), t, rcond=None)
        assert [scale[n].item(), shift[n].item()] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)


def test_align_scale_shift_recovers_an_exact_affine_map_and_the_hand_example():
    pred = torch.linspace(0.1, 2.0, 12).reshape(1, 3, 4)
    scale, shift = align_scale_shift(pred, 2.5 * pred + 0.75, torch.ones_like(pred, dtype=torch.bool))
    assert (scale.item(), shift.item()) == pytest.approx((2.5, 0.75), rel=1e-6)
    scale, shift = align_scale_shift(PRED[None], torch.where(MASK, 1 / GT_DEPTH, 0)[None], MASK[None])
    assert (scale.item(), shift.item()) == pytest.approx((5 / 8, 3 / 8), rel=1e-12)


def test_align_scale_shift_degenerate_systems():
    target = torch.tensor([[2.0, 4.0, 9.0], [5.0, 7.0, 1.0], [1.0, 2.0, 3.0]])
    pred = torch.tensor([[3.0, 3.0, 8.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, False], [False, True, False], [False, False, False]])
    scale, shift = align_scale_shift(pred, target, mask)
    # constant pred on the mask: mean target 3; one valid pixel: that target; no valid pixel: 0
    assert scale.tolist() == [0.0, 0.0, 0.0]
    assert shift.tolist() == [3.0, 7.0, 0.0]


def test_aligned_depth_hand_example_with_and_without_cap():
    depth = aligned_depth_from_disparity(PRED, GT_DEPTH, MASK, depth_cap=0.0)
    assert depth.flatten().tolist() == pytest.approx([1.0, 8 / 3, 8 / 3, 4.0])
    depth_capped = aligned_depth_from_disparity(PRED, GT_DEPTH, MASK, depth_cap=2.0)
    assert depth_capped.flatten().tolist() == pytest.approx([1.0, 2.0, 2.0, 2.0])
    assert delta_bad_percent(depth, GT_DEPTH, MASK) == pytest.approx(200 / 3)
    assert abs_rel(depth, GT_DEPTH, MASK) == pytest.approx(2 / 9)
    assert delta_bad_percent(depth_capped, GT_DEPTH, MASK) == pytest.approx(100 / 3)
    assert abs_rel(depth_capped, GT_DEPTH, MASK) == pytest.approx(1 / 6)


def test_aligned_depth_from_gt_disparity_matches_the_depth_version():
    gt_disparity = torch.where(MASK, 1 / GT_DEPTH, 0)
    for cap in (0.0, 2.0):
        expected = aligned_depth_from_disparity(PRED, GT_DEPTH, MASK, cap)
        # the mask is implied by gt_disparity > 0 as well
        got = aligned_depth_from_gt_disparity(PRED, gt_disparity, torch.ones_like(MASK), cap)
        assert torch.allclose(got, expected)


def test_aligned_depth_without_valid_pixels_needs_a_cap():
    empty = torch.zeros_like(MASK)
    depth = aligned_depth_from_disparity(PRED, GT_DEPTH, empty, 4.0)  # scale 0, shift 0: clamped at 1/4
    assert depth.flatten().tolist() == [4.0, 4.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="no valid pixel"):
        aligned_depth_from_disparity(PRED, GT_DEPTH, empty, 0.0)


def test_delta_threshold_is_strict_and_abs_rel_by_hand():
    depth = torch.tensor([[1.25, 1.0], [0.5, 9.0]])
    gt = torch.ones(2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    # ratios 1.25 (not above), 1, 2 (bad); the unmasked 9 is ignored
    assert delta_bad_percent(depth, gt, mask) == pytest.approx(100 / 3)
    assert delta_bad_percent(depth, gt, mask, threshold=1.1) == pytest.approx(200 / 3)
    assert abs_rel(depth, gt, mask) == pytest.approx((0.25 + 0 + 0.5) / 3)
    assert math.isnan(delta_bad_percent(depth, gt, torch.zeros_like(mask)))


def test_whdr_three_pairs_with_a_tie():
    pred = torch.tensor([[3.0, 1.0], [2.0, 2.0]])
    pairs = torch.tensor(
        [
            [0, 0, 0, 1, -1],  # A (3) closer than B (1): larger disparity at A, right
            [0, 1, 1, 0, 1],  # A (1) farther than B (2): right
            [1, 0, 1, 1, -1],  # tie 2 vs 2: wrong
        ]
    )
    assert whdr_percent(pred, pairs) == pytest.approx(100 / 3)
    assert whdr_percent(pred, pairs[:2]) == 0.0
    assert whdr_percent(-pred, pairs[:2]) == 100.0
    assert math.isnan(whdr_percent(pred, torch.zeros(0, 5, dtype=torch.int64)))
    with pytest.raises(ValueError, match="must be -1 or \\+1"):
        whdr_percent(pred, torch.tensor([[0, 0, 0, 1, 0]]))
    with pytest.raises(ValueError, match="outside the 2x2"):
        whdr_percent(pred, torch.tensor([[0, 0, 2, 1, 1]]))
