"""MoGe's evaluation metrics: parity with the original compute_metrics, hand-computed cases.

The fixture tests/fixtures/moge/metrics.pt holds four prediction / ground-truth pairs and MoGe's own
flattened metrics (tools/parity/make_moge_metric_fixtures.py).
"""
import math
import os

import pytest
import torch

from recon_trainer_plugins.moge import metrics
from recon_trainer_plugins.moge.geometry import depth_to_points, intrinsics_from_focal_center

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "moge", "metrics.pt")
ATOL = 1e-5


def load_cases():
    return torch.load(FIXTURE, weights_only=True)["cases"]


def test_matches_the_original_on_every_key():
    cases = load_cases()
    assert [case["name"] for case in cases] == ["v1_segments", "v2_sharp", "affine_sharp", "disparity_only"]
    for case in cases:
        gt = dict(case["gt"])
        gt.setdefault("points", torch.zeros(*gt["depth"].shape, 3))  # not read without point predictions
        ours = metrics.flatten_metrics(metrics.compute_metrics(case["pred"], gt))
        assert sorted(ours) == sorted(case["metrics"]), case["name"]
        for key, expected in case["metrics"].items():
            assert ours[key] == pytest.approx(expected, abs=ATOL), f"{case['name']}: {key}"


def test_fixture_covers_every_metric_kind():
    keys = {key for case in load_cases() for key in case["metrics"]}
    kinds = {key.split("/")[0] for key in keys}
    assert kinds == {"depth_metric", "depth_scale_invariant", "depth_affine_invariant", "disparity_affine_invariant",
                     "points_metric", "points_scale_invariant", "points_affine_invariant", "local_points", "fov_x",
                     "boundary"}


def test_rel_and_delta_by_hand():
    gt = torch.tensor([1.0, 2.0, 4.0, 5.0])
    pred = torch.tensor([1.1, 2.0, 2.0, -1.0])
    # |err|/gt = 0.1, 0, 0.5, 1.2; ratios 1.1 (in), 1 (in), 2 (out), negative (in, as MoGe counts it)
    assert metrics.rel_depth(pred, gt) == pytest.approx((0.1 + 0 + 0.5 + 1.2) / 4, rel=1e-5)
    assert metrics.delta1_depth(pred, gt) == pytest.approx(0.75)

    gt_points = torch.tensor([[0.0, 0.0, 2.0], [3.0, 0.0, 4.0]])
    pred_points = torch.tensor([[0.0, 0.4, 2.0], [3.0, 0.0, 6.0]])
    # errors 0.4 and 2 against norms 2 and 5 (pred norms ~2.04, 6.71): rel (0.2 + 0.4) / 2; only the
    # first is within 0.25 min(norms)
    assert metrics.rel_point(pred_points, gt_points) == pytest.approx(0.3, rel=1e-5)
    assert metrics.delta1_point(pred_points, gt_points) == pytest.approx(0.5)
    diameter = torch.tensor(4.0)
    assert metrics.rel_point_local(pred_points, gt_points, diameter) == pytest.approx((0.4 + 2) / 8)
    assert metrics.delta1_point_local(pred_points, gt_points, diameter) == pytest.approx(0.5)


def step_image(column: int, height: int = 8, width: int = 10) -> torch.Tensor:
    """Depth 1 left of `column`, 2 from it on."""
    depth = torch.ones(height, width)
    depth[:, column:] = 2.0
    return depth


def test_boundary_f1_by_hand():
    gt, mask = step_image(4), torch.ones(8, 10, dtype=torch.bool)
    for radius in metrics.BOUNDARY_RADII:
        assert metrics.boundary_f1(gt, gt, mask, radius) == pytest.approx(1.0)
        assert metrics.boundary_f1(torch.ones(8, 10), gt, mask, radius) == 0.0  # no predicted edge
    # Radius 1: the GT edges are the pairs (p in col 3, q its right neighbour); the prediction's step is
    # one column to the right, its edges have p in col 4: no overlap.
    assert metrics.boundary_f1(step_image(5), gt, mask, 1) == 0.0
    # Radius 2 (neighbours within distance 2): a GT edge pair needs p in col <= 3, q in col >= 4 with
    # |dq| <= 2: per interior row (4 rows), p col 2 -> q col 4 (dy 0); p col 3 -> q col 4 (dy -1, 0, 1)
    # and q col 5 (dy 0): 5 pairs per row. The prediction (step at col 5) adds p col 3 -> q col 5 (dy 0)
    # and p col 4 -> q col 5 (3), 6 (1): 5 per row; shared: p col 3 -> q col 5: 1 per row.
    tp, g, p = 4, 20, 20
    f1 = 2 * (tp / g) * (tp / p) / (tp / g + tp / p)
    assert metrics.boundary_f1(step_image(5), gt, mask, 2) == pytest.approx(f1)
    # A ratio of 1.1 is an edge for the thresholds below 0.1 only (0.05, 0.0722, 0.0944; weights = thresholds).
    weak = torch.ones(8, 10)
    weak[:, 4:] = 1.1
    expected = sum(metrics.BOUNDARY_THRESHOLDS[:3]) / sum(metrics.BOUNDARY_THRESHOLDS)
    assert metrics.boundary_f1(weak, gt, mask, 1) == pytest.approx(expected)
    # Invalid pixels are never compared: masking out the step's right side leaves no edge.
    mask[:, 4:] = False
    assert metrics.boundary_f1(gt, gt, mask, 1) == 0.0


def perfect_scene():
    """A 24 x 32 scene (wall plus box, sky in the top 14 rows, a NaN pixel): depth, GT depth, intrinsics,
    segmentation."""
    height, width = 24, 32
    depth = torch.linspace(3.0, 5.0, height)[:, None].repeat(1, width)
    depth[16:22, 4:12] = 1.5
    segmentation = torch.ones(height, width, dtype=torch.long)
    segmentation[16:22, 4:12] = 2
    gt_depth = depth.clone()
    gt_depth[:14] = math.inf  # few valid pixels keep the alignments quick
    gt_depth[16, 20] = math.nan
    intrinsics = intrinsics_from_focal_center(0.8, 1.0, 0.5, 0.5)
    return depth, gt_depth, intrinsics, segmentation


def test_perfect_prediction_scores_perfectly_under_every_alignment():
    depth, gt_depth, intrinsics, segmentation = perfect_scene()
    points = depth_to_points(depth, intrinsics)
    gt = {"depth": gt_depth, "depth_mask": torch.isfinite(gt_depth), "points": depth_to_points(gt_depth, intrinsics),
          "intrinsics": intrinsics, "is_metric": True, "has_sharp_boundary": True,
          "segmentation_mask": segmentation, "segmentation_labels": {"wall": 1, "box": 2}}
    shift = torch.tensor([0.2, -0.1, 0.5])
    pred = {
        "points_metric": points, "points_scale_invariant": 3 * points, "points_affine_invariant": 0.5 * points + shift,
        "depth_metric": depth, "depth_scale_invariant": 2 * depth, "depth_affine_invariant": 2 * depth + 1,
        "disparity_affine_invariant": 0.5 / depth + 0.25, "intrinsics": intrinsics,
    }
    result = metrics.compute_metrics(pred, gt)
    assert set(result) == {"depth_metric", "depth_scale_invariant", "depth_affine_invariant",
                           "disparity_affine_invariant", "points_metric", "points_scale_invariant",
                           "points_affine_invariant", "local_points", "fov_x", "boundary"}
    for kind, values in result.items():
        if kind == "fov_x":
            assert values["mae"] == pytest.approx(0.0, abs=1e-5) and values["deviation"] == pytest.approx(0.0, abs=1e-5)
        elif kind == "boundary":
            assert all(value == pytest.approx(1.0) for value in values.values())
        else:
            assert values["rel"] == pytest.approx(0.0, abs=1e-5), kind
            assert values["delta1"] == 1.0, kind


def test_kinds_follow_the_predictions_and_the_ground_truth():
    depth, gt_depth, intrinsics, segmentation = perfect_scene()
    gt = {"depth": gt_depth, "depth_mask": torch.isfinite(gt_depth), "points": depth_to_points(gt_depth, intrinsics),
          "intrinsics": intrinsics, "is_metric": False, "has_sharp_boundary": False}
    pred = {"points_metric": depth_to_points(depth, intrinsics), "depth_metric": depth}
    # metric kinds need metric ground truth; no segmentation: no local points; no intrinsics: no FOV
    assert set(metrics.compute_metrics(pred, gt)) == {
        "depth_scale_invariant", "depth_affine_invariant", "disparity_affine_invariant",
        "points_scale_invariant", "points_affine_invariant"}
    assert set(metrics.compute_metrics({"disparity_affine_invariant": 1 / depth}, gt)) == {"disparity_affine_invariant"}
    # a segment with fewer than 10 subsampled pixels (one pixel: 64/24 x 64/32 samples) is skipped; none
    # left gives an empty dict
    gt.update(segmentation_mask=torch.zeros_like(segmentation), segmentation_labels={"speck": 3})
    gt["segmentation_mask"][18, 20] = 3
    assert metrics.compute_metrics(pred, gt)["local_points"] == {}


def test_mean_of_dicts_skips_missing_and_nan():
    rows = [{"a": {"x": 1.0, "y": math.nan}}, {"a": {"x": 3.0}, "b": {"z": 2.0}}]
    assert metrics.mean_of_dicts(rows) == {"a": {"x": 2.0, "y": pytest.approx(math.nan, nan_ok=True)}, "b": {"z": 2.0}}
    assert metrics.mean_of_dicts([]) == {}
