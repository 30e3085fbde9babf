"""View pooling: projection and validity, target-view exclusion, and parity with loop references."""

import math

import pytest
import torch

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.models.view_pooling.feature_aggregator import (
    AngleWeightedIdentityFeatureAggregator,
    AngleWeightedReductionFeatureAggregator,
    IdentityFeatureAggregator,
    ReductionFeatureAggregator,
)
from recon_trainer.models.view_pooling.view_pooler import ViewPooler
from recon_trainer.models.view_pooling.view_sampler import ViewSampler


def ring_cameras(n: int, distance: float = 3.0):
    angles = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    eye = torch.stack([distance * angles.sin(), 0.4 * torch.ones(n), distance * angles.cos()], dim=-1)
    return look_at_cameras(eye, torch.zeros(n, 3), torch.tensor([[0.0, 1.0, 0.0]] * n), 1.5)


def test_sampler_reads_the_pixel_a_point_projects_to_and_flags_invalid_points():
    cameras = ring_cameras(2)
    h, w = 6, 8
    feature = torch.arange(2 * h * w, dtype=torch.float32).reshape(2, 1, h, w)
    # Points at known NDC positions and depths in camera 0, one behind it and one outside the image.
    xy_depth = torch.tensor([[[0.5, 0.25, 2.0], [-1.2, -0.9, 3.0], [0.0, 0.0, -1.0], [1.5, 0.0, 2.0]]])
    pts = cameras[0].unproject_points(xy_depth)  # (1, 4, 3) world
    sampled, mask = ViewSampler(sampling_mode="nearest")(pts=pts, camera=cameras, feats={"f": feature})
    assert sampled["f"].shape == (1, 2, 4, 1) and mask.shape == (1, 2, 4, 1)
    assert mask[0, 0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # x in [-4/3, 4/3] and y in [-1, 1]; behind
    # Pixel (column, row) of NDC (x, y): W/2 - x * H/2, H/2 - y * H/2 (the short side is H).
    for i, (x, y) in enumerate([(0.5, 0.25), (-1.2, -0.9)]):
        col, row = int(w / 2 - x * h / 2), int(h / 2 - y * h / 2)
        assert sampled["f"][0, 0, i, 0] == feature[0, 0, row, col]


def test_masked_sampling_multiplies_the_mask_by_the_source_foreground():
    cameras = ring_cameras(3)
    pts = torch.randn(2, 5, 3) * 0.3
    feats = {"f": torch.rand(3, 4, 8, 8)}
    fg = torch.zeros(3, 1, 8, 8)
    fg[1] = 1.0
    _, plain = ViewSampler()(pts=pts, camera=cameras, feats=feats, masks=fg)
    _, masked = ViewSampler(masked_sampling=True)(pts=pts, camera=cameras, feats=feats, masks=fg)
    assert torch.all(plain == 1.0)  # near the origin every camera sees the points
    assert torch.all(masked[:, 1] == 1.0) and torch.all(masked[:, [0, 2]] == 0.0)


def reference_angle_weight(point, target_centre, source_centre, gamma, min_weight):
    """The weight of one source for one point, from the angle between the two rays (plain Python)."""
    a = [p - c for p, c in zip(point, target_centre)]
    b = [p - c for p, c in zip(point, source_centre)]
    cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return min(max(((1 + cos) / 2) ** gamma, min_weight), 1.0)


def reference_reduction(values, weights, function):
    """One reduction of per-view values (lists over views of lists over channels) with per-view weights."""
    total = sum(weights)
    channels = range(len(values[0]))
    if function == "MAX":
        seen = [v for v, w in zip(values, weights) if w > 0]
        return [max(v[c] for v in seen) if seen else 0.0 for c in channels]
    mean = [sum(w * v[c] for v, w in zip(values, weights)) / max(total, 1e-8) for c in channels]
    if function == "AVG":
        return mean
    var = [sum(w * (v[c] - mean[c]) ** 2 for v, w in zip(values, weights)) / max(total, 1e-8) for c in channels]
    std = [math.sqrt(max(x, 1e-8)) for x in var]
    return std if function == "STD" else [sum(std) / len(std)]


def reference_pool(feats, masks, pts, cameras, exclude, angle, functions, gamma=1.0, min_weight=0.1):
    """Loops over targets, points and views: (T, P, D) for reductions, (T, P, N, C) when functions is None."""
    centres = cameras.get_camera_center().tolist()
    t, n, p = masks.shape[:3]
    out = []
    for ti in range(t):
        rows = []
        for pi in range(p):
            values, weights = [], []
            for ni in range(n):
                own = exclude and ni == ti
                values.append([0.0] * feats.shape[-1] if own else feats[ti, ni, pi].tolist())
                weight = 0.0 if own else masks[ti, ni, pi, 0].item()
                if angle:
                    weight *= reference_angle_weight(pts[ti, pi].tolist(), centres[ti], centres[ni], gamma, min_weight)
                weights.append(weight)
            if functions is None:
                rows.append([[w * x for x in v] for v, w in zip(values, weights)])
            else:
                rows.append([x for f in functions for x in reference_reduction(values, weights, f)])
        out.append(rows)
    return torch.tensor(out)


def random_samples(t=2, n=4, p=5, channels=(3, 2), seed=0):
    torch.manual_seed(seed)
    feats = {f"f{i}": torch.randn(t, n, p, c) for i, c in enumerate(channels)}
    masks = (torch.rand(t, n, p, 1) > 0.3).float()
    masks[0, :, 0] = 0.0  # a point no view sees
    pts = torch.randn(t, p, 3) * 0.5
    return feats, masks, pts, ring_cameras(n)


@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize(
    "aggregator_class, angle",
    [(ReductionFeatureAggregator, False), (AngleWeightedReductionFeatureAggregator, True)],
)
def test_reductions_match_the_loop_reference(aggregator_class, angle, exclude):
    feats, masks, pts, cameras = random_samples()
    functions = ("AVG", "MAX", "STD", "STD_AVG")
    aggregator = aggregator_class(
        reduction_functions=functions, exclude_target_view=exclude, exclude_target_view_mask_features=exclude
    )
    out = aggregator(feats_sampled=feats, masks_sampled=masks, pts=pts, camera=cameras)
    concatenated = torch.cat(list(feats.values()), dim=-1)
    expected = reference_pool(concatenated, masks, pts, cameras, exclude, angle, functions)
    assert out.shape == (2, 5, aggregator.get_aggregated_feature_dim(5)) == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "aggregator_class, angle",
    [(IdentityFeatureAggregator, False), (AngleWeightedIdentityFeatureAggregator, True)],
)
def test_identity_aggregators_match_the_loop_reference_and_zero_the_target_view(aggregator_class, angle):
    feats, masks, pts, cameras = random_samples()
    aggregator = aggregator_class()
    out = aggregator(feats_sampled=feats, masks_sampled=masks, pts=pts, camera=cameras)
    expected = reference_pool(torch.cat(list(feats.values()), -1), masks, pts, cameras, True, angle, None)
    assert out.shape == (2, 5, 4, 5) and aggregator.get_aggregated_feature_dim(5) == 5
    assert torch.allclose(out, expected, atol=1e-6)
    for target in range(2):
        assert torch.all(out[target, :, target] == 0.0)


def test_angle_weights_by_hand():
    # Target camera 0 and source camera 1 opposite each other: the rays to the origin are antiparallel.
    feats, masks, pts, cameras = random_samples(t=1, n=2, p=1)
    pts = torch.zeros(1, 1, 3)
    masks = torch.ones(1, 2, 1, 1)
    ones = {"f": torch.ones(1, 2, 1, 1)}
    kwargs = dict(exclude_target_view=False, exclude_target_view_mask_features=False)
    aggregator = AngleWeightedIdentityFeatureAggregator(**kwargs)
    out = aggregator(feats_sampled=ones, masks_sampled=masks, pts=pts, camera=cameras)
    assert out[0, 0, :, 0].tolist() == pytest.approx([1.0, 0.1])  # cos 0 -> 1; cos pi -> 0, clamped to 0.1
    gamma0 = AngleWeightedIdentityFeatureAggregator(weight_by_ray_angle_gamma=0.0, **kwargs)
    assert torch.all(gamma0(feats_sampled=ones, masks_sampled=masks, pts=pts, camera=cameras) == 1.0)


def test_excluding_the_target_view_makes_the_output_independent_of_its_features():
    feats, masks, pts, cameras = random_samples()
    changed = {name: f.clone() for name, f in feats.items()}
    for target in range(2):
        for f in changed.values():
            f[target, target] += 100.0
    aggregator = AngleWeightedReductionFeatureAggregator(reduction_functions=("AVG", "MAX", "STD"))
    a = aggregator(feats_sampled=feats, masks_sampled=masks, pts=pts, camera=cameras)
    b = aggregator(feats_sampled=changed, masks_sampled=masks, pts=pts, camera=cameras)
    assert torch.allclose(a, b)


def test_dict_output_without_concatenation():
    feats, masks, pts, cameras = random_samples()
    out = ReductionFeatureAggregator(concatenate_output=False)(
        feats_sampled=feats, masks_sampled=masks, pts=pts, camera=cameras
    )
    assert set(out) == {"f0", "f1"} and out["f0"].shape == (2, 5, 6) and out["f1"].shape == (2, 5, 4)


def test_bad_aggregator_fields_are_config_errors():
    with pytest.raises(ConfigError, match=r"bad value 'MEDIAN' for 'ReductionFeatureAggregator.reduction_functions\[1\]'"):
        ReductionFeatureAggregator(reduction_functions=("AVG", "MEDIAN"))
    with pytest.raises(ConfigError, match="weight_by_ray_angle_gamma"):
        AngleWeightedReductionFeatureAggregator(weight_by_ray_angle_gamma=-1.0)
    with pytest.raises(ConfigError, match="concatenate_output"):
        args = get_default_args(ViewPooler)
        args.feature_aggregator_AngleWeightedReductionFeatureAggregator_args.concatenate_output = False
        ViewPooler(**args)


@pytest.mark.parametrize(
    "aggregator, per_view",
    [("AngleWeightedReductionFeatureAggregator", False), ("IdentityFeatureAggregator", True)],
)
def test_view_pooler_keeps_the_spatial_shape_of_the_points(aggregator, per_view):
    cameras = ring_cameras(3)
    feats = {"a": torch.rand(3, 4, 8, 8), "b": torch.rand(3, 2, 4, 4)}
    pooler = ViewPooler(feature_aggregator_class_type=aggregator)
    pts = torch.randn(2, 5, 7, 3) * 0.3  # (T, R, P, 3)
    out = pooler(pts=pts, camera=cameras, feats=feats)
    d = pooler.get_aggregated_feature_dim(6)
    assert out.shape == ((2, 5, 7, 3, d) if per_view else (2, 5, 7, d))
    assert get_default_args(ViewPooler).feature_aggregator_class_type == "AngleWeightedReductionFeatureAggregator"
