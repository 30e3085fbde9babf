"""Raysamplers: the NDC pixel grid, rays through pixels, mask sampling and depth sampling."""
import pytest
import torch

from recon_trainer.config import get_default_args, registry
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.ndc_grid import ndc_pixel_centers
from recon_trainer.rendering.raysampler import MIN_NEAR, AdaptiveRaySampler, NearFarRaySampler, RaySamplerBase

from .helpers import turned_cameras

TRAINING, EVALUATION = EvaluationMode.TRAINING, EvaluationMode.EVALUATION


def near_far_sampler(**kwargs) -> NearFarRaySampler:
    args = {
        "image_width": 6,
        "image_height": 4,
        "n_pts_per_ray_training": 8,
        "n_pts_per_ray_evaluation": 8,
        "min_depth": 1.0,
    }
    args.update(kwargs)
    return NearFarRaySampler(**args)


def test_registered_with_reference_defaults():
    assert {"AdaptiveRaySampler", "NearFarRaySampler"} <= {c.__name__ for c in registry.get_all(RaySamplerBase)}
    args = get_default_args(AdaptiveRaySampler)
    assert (args.image_width, args.image_height) == (400, 400)
    assert (args.sampling_mode_training, args.sampling_mode_evaluation) == ("mask_sample", "full_grid")
    assert (args.n_pts_per_ray_training, args.n_pts_per_ray_evaluation) == (64, 64)
    assert (args.n_rays_per_image_sampled_from_mask, args.n_rays_total_training) == (1024, None)
    assert (args.stratified_point_sampling_training, args.stratified_point_sampling_evaluation) == (True, False)
    assert args.scene_extent == 8.0 and list(args.scene_center) == [0.0, 0.0, 0.0]
    assert args.unit_directions is True and args.per_camera_near_far is False
    near_far = get_default_args(NearFarRaySampler)
    assert (near_far.min_depth, near_far.max_depth) == (0.1, 8.0)
    AdaptiveRaySampler(**args)  # builds from its own config


def test_square_grid_corners():
    grid = ndc_pixel_centers(4, 4)
    assert grid.shape == (4, 4, 2)
    # pixel size 2 / 4 = 0.5 NDC, centres half a pixel in; +x left, +y up
    assert grid[0, 0].tolist() == [0.75, 0.75]
    assert grid[0, 3].tolist() == [-0.75, 0.75]
    assert grid[3, 0].tolist() == [0.75, -0.75]
    assert grid[3, 3].tolist() == [-0.75, -0.75]


def test_non_square_grid_corners():
    wide = ndc_pixel_centers(2, 4)  # H = 2, W = 4: x spans [-2, 2], y [-1, 1], pixel size 1
    torch.testing.assert_close(wide[0, :, 0], torch.tensor([1.5, 0.5, -0.5, -1.5]))
    torch.testing.assert_close(wide[:, 0, 1], torch.tensor([0.5, -0.5]))
    tall = ndc_pixel_centers(4, 2)  # H = 4, W = 2: y spans [-2, 2]
    torch.testing.assert_close(tall[:, 0, 1], torch.tensor([1.5, 0.5, -0.5, -1.5]))
    torch.testing.assert_close(tall[0, :, 0], torch.tensor([0.5, -0.5]))


def test_grid_pixel_centres_in_pixel_coordinates():
    h, w = 3, 5
    pixels = turned_cameras()[0].ndc_to_pixel(ndc_pixel_centers(h, w), (h, w))
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    torch.testing.assert_close(pixels, torch.stack([cols, rows], dim=-1).float() + 0.5)


@pytest.mark.parametrize("unit_directions", [True, False])
@pytest.mark.parametrize("mode", [TRAINING, EVALUATION])
def test_rays_pass_through_their_pixels(mode, unit_directions):
    cams = turned_cameras()
    sampler = near_far_sampler(n_rays_per_image_sampled_from_mask=10, unit_directions=unit_directions)
    bundle = sampler(cams, mode)
    spatial = (4, 6) if mode == EVALUATION else (10,)
    assert bundle.origins.shape == (2, *spatial, 3) and bundle.directions.shape == (2, *spatial, 3)
    assert bundle.lengths.shape == (2, *spatial, 8) and bundle.xys.shape == (2, *spatial, 2)
    torch.testing.assert_close(
        bundle.origins, cams.get_camera_center()[:, None].expand(2, bundle.n_rays_per_image, 3).reshape(2, *spatial, 3)
    )
    points = bundle.ray_points().reshape(2, -1, 3)
    projected = cams.transform_points_ndc(points).reshape(2, *spatial, 8, 3)
    torch.testing.assert_close(
        projected[..., :2], bundle.xys[..., None, :].expand(2, *spatial, 8, 2), atol=1e-5, rtol=0
    )
    if unit_directions:  # lengths are distances from the camera centre
        distances = (bundle.ray_points() - bundle.origins[..., None, :]).norm(dim=-1)
        torch.testing.assert_close(distances, bundle.lengths, atol=1e-5, rtol=0)
        assert (projected[..., 2] < bundle.lengths - 1e-3).all()  # off-axis rays: the view depth is shorter
    else:  # lengths are view depths
        torch.testing.assert_close(projected[..., 2], bundle.lengths, atol=1e-5, rtol=0)


def test_full_grid_xys_are_the_ndc_grid():
    bundle = near_far_sampler()(turned_cameras(), EVALUATION)
    torch.testing.assert_close(bundle.xys, ndc_pixel_centers(4, 6).expand(2, 4, 6, 2))


def _pixel_of(xys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., 2) NDC pixel centres to (...,) flat pixel indices of an H x W image."""
    pixels = turned_cameras()[0].ndc_to_pixel(xys, (h, w)).floor().long()
    return pixels[..., 1] * w + pixels[..., 0]


def test_mask_sampling_never_picks_zero_mask_pixels():
    torch.manual_seed(0)
    h, w = 4, 6
    mask = torch.zeros(2, 1, h, w)
    mask[0, 0, 1:3, 2:5] = 1.0
    mask[1, 0, 0, :] = torch.linspace(0.1, 1.0, w)
    sampler = near_far_sampler(n_rays_per_image_sampled_from_mask=5)
    for scale in (1, 2):  # the mask at the sampler's resolution, and at twice it
        full = torch.nn.functional.interpolate(mask, scale_factor=scale, mode="nearest")
        for _ in range(20):
            bundle = sampler(turned_cameras(), TRAINING, mask=full)
            picked = _pixel_of(bundle.xys, h, w)
            assert (mask.reshape(2, -1).gather(1, picked) > 0).all()
            assert all(len(set(row.tolist())) == 5 for row in picked)  # without replacement


def test_mask_sampling_is_proportional_to_the_mask():
    torch.manual_seed(0)
    mask = torch.zeros(1, 1, 4, 6)
    mask[0, 0, 0, 0], mask[0, 0, 3, 5] = 3.0, 1.0  # fewer positive pixels than rays: with replacement
    sampler = near_far_sampler(n_rays_per_image_sampled_from_mask=4000)
    picked = _pixel_of(sampler(turned_cameras()[0], TRAINING, mask=mask).xys, 4, 6)
    assert set(picked.unique().tolist()) == {0, 23}
    assert abs((picked == 0).float().mean().item() - 0.75) < 0.03


def test_an_empty_mask_samples_uniformly_and_no_mask_too():
    sampler = near_far_sampler(n_rays_per_image_sampled_from_mask=24)
    for mask in (torch.zeros(1, 1, 4, 6), None):
        picked = _pixel_of(sampler(turned_cameras()[0], TRAINING, mask=mask).xys, 4, 6)
        assert sorted(picked[0].tolist()) == list(range(24))  # all pixels, each once


def test_total_rays_are_split_over_the_batch():
    sampler = near_far_sampler(n_rays_per_image_sampled_from_mask=None, n_rays_total_training=10)
    assert sampler(turned_cameras(), TRAINING).xys.shape == (2, 5, 2)


def test_lengths_deterministic_and_stratified():
    torch.manual_seed(0)
    sampler = near_far_sampler(max_depth=3.0, n_rays_per_image_sampled_from_mask=7)
    cams = turned_cameras()
    evaluation = sampler(cams, EVALUATION).lengths
    torch.testing.assert_close(evaluation, torch.linspace(1.0, 3.0, 8).expand(2, 4, 6, 8))
    torch.testing.assert_close(sampler(cams, EVALUATION).lengths, evaluation)
    first, second = sampler(cams, TRAINING).lengths, sampler(cams, TRAINING).lengths
    assert not torch.equal(first, second)
    edges = torch.linspace(1.0, 3.0, 8)
    mids = 0.5 * (edges[1:] + edges[:-1])
    lower, upper = torch.cat([edges[:1], mids]), torch.cat([mids, edges[-1:]])
    for lengths in (first, second):
        assert ((lengths >= lower) & (lengths <= upper)).all()  # each within its own bin
    # the switches swap the behaviour
    flipped = near_far_sampler(
        max_depth=3.0,
        stratified_point_sampling_training=False,
        stratified_point_sampling_evaluation=True,
        sampling_mode_training="full_grid",
    )
    torch.testing.assert_close(flipped(cams, TRAINING).lengths, evaluation)
    assert not torch.equal(flipped(cams, EVALUATION).lengths, evaluation)


def test_adaptive_near_far_from_the_scene_centre():
    cams = turned_cameras()
    distance = (cams.get_camera_center() - torch.tensor([0.5, 0.0, 0.0])).norm(dim=-1)
    assert abs(distance[0] - distance[1]) > 0.1
    args = {"image_width": 3, "image_height": 2, "n_pts_per_ray_evaluation": 5, "scene_extent": 2.0}
    per_camera = AdaptiveRaySampler(scene_center=(0.5, 0.0, 0.0), per_camera_near_far=True, **args)
    lengths = per_camera(cams, EVALUATION).lengths
    torch.testing.assert_close(lengths[:, 0, 0, 0], distance - 2.0)
    torch.testing.assert_close(lengths[:, 0, 0, -1], distance + 2.0)
    torch.manual_seed(0)
    stratified = per_camera(cams, TRAINING, mask=None).lengths
    assert (stratified >= (distance - 2.0)[:, None, None]).all() and (
        stratified <= (distance + 2.0)[:, None, None]
    ).all()
    # the default, as Implicitron: every camera of the batch takes the first camera's near and far
    first = AdaptiveRaySampler(scene_center=(0.5, 0.0, 0.0), **args)(cams, EVALUATION).lengths
    torch.testing.assert_close(first[:, 0, 0, 0], (distance[0] - 2.0).expand(2))
    torch.testing.assert_close(first[:, 0, 0, -1], (distance[0] + 2.0).expand(2))
    # a camera inside the scene: its distance is raised to extent + MIN_NEAR (near MIN_NEAR, far 2 extent + MIN_NEAR)
    inside = AdaptiveRaySampler(image_width=3, image_height=2, n_pts_per_ray_evaluation=5, scene_extent=10.0)
    near, far = inside.near_far(cams)
    torch.testing.assert_close(near, torch.full((2,), MIN_NEAR), atol=1e-6, rtol=0)
    torch.testing.assert_close(far, torch.full((2,), 20.0 + MIN_NEAR))


def test_directions_reach_depth_one_or_have_unit_length():
    cams = turned_cameras()
    bundle = near_far_sampler(unit_directions=False)(cams, EVALUATION)
    ends = (bundle.origins + bundle.directions).reshape(2, -1, 3)
    torch.testing.assert_close(cams.transform_points_ndc(ends)[..., 2], torch.ones(2, 24))
    unit = near_far_sampler()(cams, EVALUATION)  # the default, Implicitron's
    torch.testing.assert_close(unit.directions.norm(dim=-1), torch.ones(2, 4, 6))
    torch.testing.assert_close(unit.directions, torch.nn.functional.normalize(bundle.directions, dim=-1))
    torch.testing.assert_close(unit.lengths, bundle.lengths)  # the same near and far, in another unit


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampling_mode_training": "grid"}, "bad value 'grid' for 'NearFarRaySampler.sampling_mode_training'"),
        ({"n_rays_total_training": 100}, "exactly one of n_rays_per_image_sampled_from_mask"),
        ({"n_rays_per_image_sampled_from_mask": None}, "exactly one of n_rays_per_image_sampled_from_mask"),
        ({"min_depth": 2.0, "max_depth": 1.0}, "min_depth <= max_depth"),
        ({"n_pts_per_ray_training": -1}, "n_pts_per_ray_training=-1"),
    ],
)
def test_bad_settings_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        near_far_sampler(**kwargs)


def test_zero_points_per_ray_gives_rays_without_points():
    bundle = near_far_sampler(n_pts_per_ray_training=0)(turned_cameras(), TRAINING)
    assert bundle.lengths.shape[-1] == 0 and bundle.origins.shape[-1] == 3


def test_a_bad_scene_extent_is_reported():
    with pytest.raises(ValueError, match="scene_extent=0"):
        AdaptiveRaySampler(scene_extent=0.0)


def test_a_bad_mask_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(B=2, 1, H, W\)"):
        near_far_sampler()(turned_cameras(), TRAINING, mask=torch.ones(2, 4, 6))
